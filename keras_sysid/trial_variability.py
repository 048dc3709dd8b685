"""How much of the trial-to-trial variability of repeated images a model or the animal's state explains.

Repeats of one image evoke different responses: noise, and the animal's state
(pupil dilation, running, eye position). An image-only model can at best
predict each image's mean response; a model that also takes the state can
predict part of each trial's deviation from that mean. This is why such a
model's single-trial correlation can exceed the oracle correlation, which is
computed from image repeats alone.

Every function works on a tier's trials grouped by image, as positions into
the arrays given (:meth:`keras_sysid.data.Recording.repeat_positions`);
images shown once carry no trial-to-trial variability and are left out.
"""

from __future__ import annotations

import numpy as np

from keras_sysid import metrics


def repeat_deviations(values, groups) -> np.ndarray:
    """Each trial's deviation from the mean of its image's repeats.

    Args:
        values: ``(trials, ...)`` responses, predictions or state variables.
        groups: One array of trial positions per image.

    Returns:
        ``(repeated_trials, ...)`` deviations, float64, of the trials of every
        group with two or more repeats, group after group.
    """
    values = np.asarray(values, dtype="float64")
    blocks = [values[group] - values[group].mean(axis=0) for group in _repeated(groups)]
    return np.concatenate(blocks)


def _repeated(groups) -> list[np.ndarray]:
    repeated = [np.asarray(group) for group in groups if len(group) > 1]
    if not repeated:
        raise ValueError("No image was shown more than once: trial-to-trial variability needs repeats.")
    return repeated


def trial_variance_fraction(responses, groups) -> np.ndarray:
    """``(N,)`` share of each neuron's single-trial variance that lies between repeats of one image.

    Args:
        responses: ``(trials, N)`` responses.
        groups: One array of trial positions per image.
    """
    groups = _repeated(groups)
    responses = np.asarray(responses, dtype="float64")
    repeated = responses[np.concatenate(groups)]
    total = np.sum((repeated - repeated.mean(axis=0)) ** 2, axis=0)
    within = np.sum(repeat_deviations(responses, groups) ** 2, axis=0)
    return np.divide(within, total, out=np.zeros_like(total), where=total > 0)


def model_trial_correlation(responses, predictions, groups) -> np.ndarray:
    """``(N,)`` correlation, over repeated trials, of the responses' and predictions' deviations from their image means.

    Zero for a neuron whose predictions do not vary between repeats (any
    image-only model). Its square is the share of the neuron's trial-to-trial
    variance that the predicted deviations, scaled at best, explain.

    Args:
        responses: ``(trials, N)`` responses.
        predictions: ``(trials, N)`` a model's predictions of the same trials.
        groups: One array of trial positions per image.
    """
    responses, predictions = np.asarray(responses), np.asarray(predictions)
    if responses.shape != predictions.shape or responses.ndim != 2:
        raise ValueError(
            f"responses and predictions must have the same (trials, neurons) shape; got {responses.shape} and {predictions.shape}."
        )
    predicted = repeat_deviations(predictions, groups)
    # Repeats of one image predicted in different batches can differ in float rounding; that is no prediction.
    rounding = 1e-5 * np.max(np.abs(predictions), axis=0)
    predicted[:, np.max(np.abs(predicted), axis=0) <= rounding] = 0.0
    return metrics.correlation(repeat_deviations(responses, groups), predicted)


def linear_state_variance(responses, state, groups, folds: int = 5, seed: int = 0) -> np.ndarray:
    """``(N,)`` cross-validated share of trial-to-trial variance that a linear function of the state explains.

    Per neuron, the deviations of the responses from their image means are
    regressed by least squares on the state variables' deviations (with an
    intercept), on the repeats of all images but one fold's, and predicted on
    that fold's; ``1 - SSE / SS`` is pooled over the folds. Folds split images,
    never one image's repeats, so no image's mean is shared by fit and test.
    Around zero (or below) when the state carries no linear information.

    Args:
        responses: ``(trials, N)`` responses.
        state: ``(trials, K)`` state variables of the same trials (behaviour,
            pupil centre, ...).
        groups: One array of trial positions per image.
        folds: Number of folds of images (at least 2).
        seed: Seed of the images' assignment to folds.
    """
    state = np.asarray(state, dtype="float64")
    if state.ndim != 2 or len(state) != len(responses):
        raise ValueError(f"state must be (trials, variables) with {len(responses)} trials; got shape {state.shape}.")
    groups = _repeated(groups)
    if not 2 <= folds <= len(groups):
        raise ValueError(f"folds must be between 2 and the {len(groups)} repeated images; got {folds}.")
    fold_of_group = np.random.default_rng(seed).permutation(len(groups)) % folds
    fold = np.concatenate([np.full(len(group), fold_of_group[i]) for i, group in enumerate(groups)])
    targets = repeat_deviations(responses, groups)
    regressors = repeat_deviations(state, groups)
    regressors = np.concatenate([regressors, np.ones((len(regressors), 1))], axis=1)
    predicted = np.zeros_like(targets)
    for k in range(folds):
        train, held_out = fold != k, fold == k
        weights, *_ = np.linalg.lstsq(regressors[train], targets[train], rcond=None)
        predicted[held_out] = regressors[held_out] @ weights
    total = np.sum(targets**2, axis=0)
    residual = np.sum((targets - predicted) ** 2, axis=0)
    return np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0), 0.0)
