"""Scores of a model on repeated test trials (the numbers of Table 1 and Lurz et al.), and on a known truth.

All scores are per neuron first, then averaged over neurons:

- ``corr_single``: correlation of prediction and response over single trials.
- ``corr_avg``: correlation of prediction and the repeat-averaged response,
  over images.
- ``feve``: fraction of explainable variance explained (see
  :func:`keras_sysid.metrics.feve`), averaged over neurons with explainable
  variance.
- ``frac_oracle``: slope of ``corr_single`` against the jackknife oracle
  correlation across neurons, fitted through the origin (Lurz et al. 2021's
  "fraction of oracle").
- ``info_gain`` (when the train and validation tiers are at hand): normalized
  information gain against a Bayesian oracle, of the population (see
  :mod:`keras_sysid.information_gain`).

Exact definitions: docs/metrics.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_sysid import information_gain, metrics


@dataclasses.dataclass
class RepeatScores:
    """Per-neuron scores, ``(N,)`` each, and their summary."""

    corr_single: np.ndarray
    corr_avg: np.ndarray
    feve: np.ndarray
    oracle: np.ndarray
    n_trials: int
    n_images: int
    information: information_gain.InformationGain | None = None

    def summary(self) -> dict:
        """Averages over neurons, as plain floats and ints (JSON-ready)."""
        oracle_power = float(np.sum(self.oracle**2))
        return {
            "corr_single": float(np.mean(self.corr_single)),
            "corr_avg": float(np.mean(self.corr_avg)),
            "feve": float(np.nanmean(self.feve)),
            "frac_oracle": float(np.sum(self.corr_single * self.oracle) / oracle_power) if oracle_power > 0 else float("nan"),
            "oracle": float(np.mean(self.oracle)),
            "n_neurons": int(self.corr_single.shape[0]),
            "n_trials": int(self.n_trials),
            "n_images": int(self.n_images),
            **({} if self.information is None else {"info_gain": self.information.population()}),
        }


def _check_repeated(groups, where: str = "the trials given") -> None:
    """Refuses groups with no repeated image: every score here compares repeats."""
    if not groups:
        raise ValueError("No repeat groups given.")
    if not any(len(group) > 1 for group in groups):
        raise ValueError(
            f"No image of {where} was shown more than once: the oracle, FEVE and repeat-averaged correlation "
            "need repeats (score a tier with repeated images, e.g. test)."
        )


def score_repeats(responses, predictions, groups) -> RepeatScores:
    """Scores predictions of repeated trials.

    Args:
        responses: ``(trials, N)`` measured responses.
        predictions: ``(trials, N)`` predictions for the same trials.
        groups: One array of trial indices per image (its repeats), as from
            :meth:`keras_sysid.data.Recording.repeat_groups`.

    Returns:
        A :class:`RepeatScores`.
    """
    responses = np.asarray(responses, dtype="float64")
    predictions = np.asarray(predictions, dtype="float64")
    if responses.shape != predictions.shape or responses.ndim != 2:
        raise ValueError(
            f"responses and predictions must have the same (trials, neurons) shape; got {responses.shape} and {predictions.shape}."
        )
    _check_repeated(groups)
    blocks = [responses[group] for group in groups]
    # A model's prediction for an image does not depend on the repeat; average
    # anyway so that stochastic or behaviour-dependent models are scored fairly.
    image_predictions = np.stack([predictions[group].mean(axis=0) for group in groups])
    image_means = np.stack([block.mean(axis=0) for block in blocks])
    trials = np.concatenate(groups)
    return RepeatScores(
        corr_single=metrics.correlation(responses[trials], predictions[trials]),
        corr_avg=metrics.correlation(image_means, image_predictions),
        feve=metrics.feve(blocks, image_predictions),
        oracle=metrics.oracle_correlation(blocks),
        n_trials=int(len(trials)),
        n_images=len(groups),
    )


def evaluate_model(model, data, tier: str = "test", batch_size: int = 256, verbose: int = 0,
                   info_gain: bool = False) -> RepeatScores:
    """Predicts ``tier`` of a :class:`~keras_sysid.data.Recording` and scores it.

    Args:
        model: Maps ``(batch, H, W, 1)`` images in the data's units to
            ``(batch, N)`` responses in the data's units; a model whose
            ``input_names`` ask for more (behaviour, pupil centre) gets them
            from ``data`` (:meth:`~keras_sysid.data.Recording.model_inputs`),
            or a :class:`~keras_sysid.data.RecordingError` says the data lacks them.
        data: The data set; its neuron count must match the model's.
        tier: Tier with repeated presentations (default ``"test"``).
        batch_size: Prediction batch size.
        verbose: Keras' progress bar for the predictions (1) or silence (0).
        info_gain: Also score the normalized information gain
            (:func:`information_gain_of`), which needs the train and
            validation tiers and predicts the validation tier.

    Raises:
        ValueError: before predicting, when the neuron counts differ or the
            tier has no repeated image; with ``info_gain``, when the data lack
            a train or validation tier.
    """
    responses, predictions, groups = predict_tier(model, data, tier, batch_size, verbose)
    scores = score_repeats(responses, predictions, groups)
    if info_gain:
        scores.information = information_gain_of(model, data, responses, predictions, groups, batch_size)
    return scores


def information_gain_of(model, data, responses, predictions, groups,
                        batch_size: int = 256) -> information_gain.InformationGain:
    """Normalized information gain of ``model``'s predictions of a tier of ``data`` (from :func:`predict_tier`).

    The null is fitted to the train tier's responses, the spread around the
    model's mean to its predictions of the validation tier
    (:func:`keras_sysid.information_gain.information_gain`).

    Args:
        model: The model that made ``predictions``.
        data: A :class:`~keras_sysid.data.Recording` with train and validation tiers.
        responses: ``(trials, N)`` the scored tier's responses.
        predictions: ``(trials, N)`` the model's predictions of them.
        groups: One array of positions into them per image.
        batch_size: Prediction batch size (validation tier).

    Raises:
        ValueError: when ``data`` lacks a train or validation tier.
    """
    missing = [tier for tier in ("train", "validation") if not np.any(np.asarray(data.tiers) == tier)]
    if missing:
        raise ValueError(f"the information gain needs the train and validation tiers of {data.name!r}, which has no "
                         f"{' or '.join(missing)} trials.")
    validation_inputs = data.model_inputs("validation", getattr(model, "input_names", ("images",)))
    validation_predictions = model.predict(validation_inputs, batch_size=batch_size, verbose=0)
    return information_gain.information_gain(
        responses, predictions, groups, data.responses[data.indices("train")],
        (data.responses[data.indices("validation")], validation_predictions))


def predict_tier(model, data, tier: str = "test", batch_size: int = 256,
                 verbose: int = 0) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """A tier's responses, ``model``'s predictions of them and the trials grouped by image.

    Args and errors as :func:`evaluate_model`.

    Returns:
        ``(responses, predictions, groups)``: ``(trials, N)`` each, and one
        array of positions into them per image (its repeats).
    """
    n_model = getattr(model, "n_neurons", None)
    if n_model is not None and n_model != data.n_neurons:
        raise ValueError(f"The model predicts {n_model} neurons but the data {data.name!r} holds {data.n_neurons}.")
    selected = data.indices(tier)
    groups = data.repeat_positions(tier)
    _check_repeated(groups, f"the {tier!r} tier of {data.name!r}")
    inputs = data.model_inputs(tier, getattr(model, "input_names", ("images",)))
    predictions = model.predict(inputs, batch_size=batch_size, verbose=verbose)
    return data.responses[selected], predictions, groups



def scores_against_truth(model, split, batch_size: int = 256) -> dict:
    """Per-neuron scores of ``model`` on a synthetic split's noise-free rates.

    Args:
        model: A fitted model.
        split: A :class:`~keras_sysid.data.synthetic.Split` (``images`` and
            ``clean_responses``).
        batch_size: Prediction batch size.

    Returns:
        ``{"fev": (N,), "correlation": (N,)}``: fraction of the true rates'
        variance explained, and correlation with them.
    """
    prediction = model.predict(split.images, batch_size=batch_size, verbose=0)
    return {
        "fev": metrics.fev(split.clean_responses, prediction),
        "correlation": metrics.correlation(split.clean_responses, prediction),
    }


def retinotopy(rf_positions: np.ndarray, cortical_positions: np.ndarray) -> dict:
    """How well cortical position predicts learned RF position.

    Args:
        rf_positions: ``(N, 2)`` (row, column) in pixels.
        cortical_positions: ``(N, >=2)``; the first two columns (x, y on
            cortex) are used.

    Returns:
        ``r_row`` / ``r_column``: multiple correlation of each RF coordinate
        with the cortical (x, y) position (linear fit), and ``pearson``:
        ``{image axis: {cortical axis: r}}``.
    """
    rf = np.asarray(rf_positions, dtype="float64")
    cortex = np.asarray(cortical_positions, dtype="float64")[:, :2]
    design = np.column_stack([cortex, np.ones(len(cortex))])
    result = {"pearson": {}}
    for axis, label in enumerate(("row", "column")):
        fitted = design @ np.linalg.lstsq(design, rf[:, axis], rcond=None)[0]
        result[f"r_{label}"] = float(metrics.correlation(rf[:, axis:axis + 1], fitted[:, None])[0])
        result["pearson"][label] = {
            f"cortex_{name}": float(metrics.correlation(rf[:, axis:axis + 1], cortex[:, c:c + 1])[0])
            for c, name in enumerate("xy")
        }
    return result
