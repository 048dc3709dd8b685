"""How well a model predicts neurons: a streaming Keras metric and numpy references.

Conventions: arrays are ``(trials, neurons)``; functions return one value per
neuron, so callers choose how to average. A neuron whose responses (or
predictions) do not vary gets correlation 0, not NaN: it is predicted no better
than by a constant.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_sysid import validation


@keras.saving.register_keras_serializable(package="keras_sysid")
class PearsonCorrelation(keras.metrics.Metric):
    """Per-neuron Pearson correlation over all batches, averaged over neurons.

    Streams exact moments with Chan et al.'s pairwise update (batch means and
    centred sums merged into running ones), which stays accurate in float32
    where raw sums of squares would cancel.

    Args:
        n_neurons: Number of neurons (columns of ``y_true``).
        name: Metric name.

    Input shape:
        ``y_true``, ``y_pred``: ``(batch, n_neurons)``.

    Output shape:
        ``result()``: scalar mean over neurons; ``per_neuron()``: ``(n_neurons,)``.

    Example:
        >>> model.compile(optimizer="adam", loss=PoissonLoss(),
        ...               metrics=[PearsonCorrelation(n_neurons=100)])
    """

    def __init__(self, n_neurons: int, name: str = "correlation", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n_neurons = int(n_neurons)
        shape = (self.n_neurons,)
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")
        self.mean_true = self.add_variable(shape=shape, initializer="zeros", name="mean_true")
        self.mean_pred = self.add_variable(shape=shape, initializer="zeros", name="mean_pred")
        self.sq_dev_true = self.add_variable(shape=shape, initializer="zeros", name="sq_dev_true")
        self.sq_dev_pred = self.add_variable(shape=shape, initializer="zeros", name="sq_dev_pred")
        self.co_dev = self.add_variable(shape=shape, initializer="zeros", name="co_dev")

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError("PearsonCorrelation does not support sample_weight.")
        y_true = ops.cast(y_true, self.dtype)
        y_pred = ops.cast(y_pred, self.dtype)
        batch_count = ops.cast(ops.shape(y_true)[0], self.dtype)
        batch_mean_true = ops.mean(y_true, axis=0)
        batch_mean_pred = ops.mean(y_pred, axis=0)
        dev_true = y_true - batch_mean_true
        dev_pred = y_pred - batch_mean_pred
        total = self.count + batch_count
        # Weight of the cross term between old and new means; 0 on the first batch.
        cross_weight = self.count * batch_count / ops.maximum(total, 1.0)
        delta_true = batch_mean_true - self.mean_true
        delta_pred = batch_mean_pred - self.mean_pred
        self.sq_dev_true.assign_add(ops.sum(dev_true * dev_true, axis=0) + delta_true * delta_true * cross_weight)
        self.sq_dev_pred.assign_add(ops.sum(dev_pred * dev_pred, axis=0) + delta_pred * delta_pred * cross_weight)
        self.co_dev.assign_add(ops.sum(dev_true * dev_pred, axis=0) + delta_true * delta_pred * cross_weight)
        fraction_new = batch_count / ops.maximum(total, 1.0)
        self.mean_true.assign_add(delta_true * fraction_new)
        self.mean_pred.assign_add(delta_pred * fraction_new)
        self.count.assign(total)

    def per_neuron(self):
        """Correlation of each neuron, ``(n_neurons,)``; 0 where a variance is 0."""
        denominator = ops.sqrt(self.sq_dev_true * self.sq_dev_pred)
        safe = ops.where(denominator > 0, denominator, 1.0)
        return ops.where(denominator > 0, self.co_dev / safe, 0.0)

    def result(self):
        return ops.mean(self.per_neuron())

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))

    def get_config(self):
        config = super().get_config()
        config["n_neurons"] = self.n_neurons
        return config


def _pair(y_true, y_pred, name: str) -> tuple[np.ndarray, np.ndarray]:
    validation.check_responses(y_true, name=f"{name}: observed responses")
    y_true = np.asarray(y_true, dtype="float64")
    y_pred = np.asarray(y_pred, dtype="float64")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{name}: observed responses {y_true.shape} and predictions {y_pred.shape} differ in shape.")
    validation.check_responses(y_pred, name=f"{name}: predictions")
    return y_true, y_pred


def correlation(y_true, y_pred) -> np.ndarray:
    """Pearson correlation per neuron.

    Args:
        y_true: ``(trials, neurons)`` observed responses.
        y_pred: ``(trials, neurons)`` predictions.

    Returns:
        ``(neurons,)``; 0 for a neuron whose responses or predictions are constant.
    """
    y_true, y_pred = _pair(y_true, y_pred, "correlation")
    dev_true = y_true - y_true.mean(axis=0)
    dev_pred = y_pred - y_pred.mean(axis=0)
    denominator = np.sqrt((dev_true**2).sum(axis=0) * (dev_pred**2).sum(axis=0))
    covariance = (dev_true * dev_pred).sum(axis=0)
    return np.divide(covariance, denominator, out=np.zeros_like(covariance), where=denominator > 0)


def fev(truth, prediction) -> np.ndarray:
    """Fraction of explained variance against noise-free ground truth.

    ``1 - mean((truth - prediction)^2) / var(truth)`` per neuron.

    Args:
        truth: ``(trials, neurons)`` noise-free responses.
        prediction: ``(trials, neurons)``.

    Returns:
        ``(neurons,)``; 1 is perfect, 0 is as good as the mean, negative is worse.
    """
    truth, prediction = _pair(truth, prediction, "fev")
    variance = truth.var(axis=0)
    if np.any(variance == 0):
        raise ValueError(f"fev: {int(np.sum(variance == 0))} neurons have constant ground truth; FEV is undefined.")
    return 1.0 - ((truth - prediction) ** 2).mean(axis=0) / variance


def _repeat_blocks(repeated_responses: Sequence, name: str) -> list[np.ndarray]:
    blocks = [np.asarray(block, dtype="float64") for block in repeated_responses]
    if not blocks:
        raise ValueError(f"{name}: no images given.")
    n_neurons = blocks[0].shape[-1] if blocks[0].ndim == 2 else None
    for index, block in enumerate(blocks):
        if block.ndim != 2 or block.shape[1] != n_neurons or block.shape[0] == 0:
            raise ValueError(
                f"{name}: image {index} has responses of shape {block.shape}; "
                f"expected (repeats, {n_neurons}) with at least one repeat."
            )
        validation.check_responses(block, name=f"{name}: responses to image {index}")
    return blocks


def feve(repeated_responses: Sequence, predictions) -> np.ndarray:
    """Fraction of explainable variance explained, from repeated trials.

    ``1 - (MSE - noise_var) / (total_var - noise_var)`` per neuron, where
    ``noise_var`` is the mean over images of the across-repeat variance, and
    ``total_var`` the variance over all trials (both with ``ddof=1``).

    Args:
        repeated_responses: One ``(repeats_i, neurons)`` array per image.
        predictions: ``(images, neurons)`` prediction per image.

    Returns:
        ``(neurons,)``; NaN for neurons with no explainable variance.
    """
    blocks = _repeat_blocks(repeated_responses, "feve")
    predictions = np.asarray(predictions, dtype="float64")
    if predictions.shape != (len(blocks), blocks[0].shape[1]):
        raise ValueError(
            f"feve: predictions have shape {predictions.shape}; expected ({len(blocks)}, {blocks[0].shape[1]}), "
            "one row per image."
        )
    validation.check_responses(predictions, name="feve: predictions")
    noise_var = np.mean([block.var(axis=0, ddof=1) for block in blocks if block.shape[0] > 1], axis=0)
    total_var = np.vstack(blocks).var(axis=0, ddof=1)
    squared_error = np.vstack([(block - prediction) ** 2 for block, prediction in zip(blocks, predictions)])
    explainable = total_var - noise_var
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(explainable > 0, 1.0 - (squared_error.mean(axis=0) - noise_var) / explainable, np.nan)


def oracle_correlation(repeated_responses: Sequence) -> np.ndarray:
    """Leave-one-out (jackknife) oracle correlation per neuron.

    Each trial is correlated with the mean of the other repeats of its image:
    the best a stimulus-driven model can expect to reach on single trials.
    Images shown only once are skipped.

    Args:
        repeated_responses: One ``(repeats_i, neurons)`` array per image.

    Returns:
        ``(neurons,)``.
    """
    blocks = [block for block in _repeat_blocks(repeated_responses, "oracle_correlation") if block.shape[0] > 1]
    if not blocks:
        raise ValueError("oracle_correlation: no image was shown more than once.")
    trials = np.vstack(blocks)
    leave_one_out = np.vstack([(block.sum(axis=0) - block) / (block.shape[0] - 1) for block in blocks])
    return correlation(trials, leave_one_out)


def rf_distance(learned_positions, true_positions) -> np.ndarray:
    """Euclidean distance between learned and true RF centres, ``(neurons,)``.

    Args:
        learned_positions: ``(neurons, 2)`` (row, column) in pixels.
        true_positions: ``(neurons, 2)`` (row, column) in pixels.
    """
    learned = np.asarray(learned_positions, dtype="float64")
    true = np.asarray(true_positions, dtype="float64")
    if learned.shape != true.shape or learned.ndim != 2 or learned.shape[1] != 2:
        raise ValueError(f"rf_distance: positions must both be (neurons, 2); got {learned.shape} and {true.shape}.")
    return np.linalg.norm(learned - true, axis=1)
