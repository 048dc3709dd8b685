"""Losses for spike counts and calcium-derived responses."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_sysid")
class PoissonLoss(keras.losses.Loss):
    """Poisson negative log-likelihood, up to terms constant in the prediction.

    ``loss = sum over neurons of (y_pred - y_true * log(y_pred + eps))``, then
    averaged over the batch: the negative log-likelihood of one image's
    population response. Summing (not averaging) over neurons keeps each
    neuron's data term on the scale of its readout penalty, so penalty
    strengths do not depend on the population size. ``eps`` keeps the log
    finite where a rate is zero. Targets may be slightly negative (deconvolved
    responses); the loss stays well defined for them.

    Args:
        eps: Offset inside the log.

    Input shape:
        ``y_true`` and ``y_pred``: ``(batch, n_neurons)``.

    Output shape:
        A scalar (with the default reduction).

    Example:
        >>> model.compile(optimizer="adam", loss=PoissonLoss())
    """

    def __init__(self, eps: float = 1e-8, name: str = "poisson_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.eps = float(eps)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        return ops.sum(y_pred - y_true * ops.log(y_pred + self.eps), axis=-1)

    def get_config(self):
        config = super().get_config()
        config["eps"] = self.eps
        return config


def is_poisson_type(loss) -> bool:
    """Whether ``loss`` (as passed to ``compile``) is a Poisson likelihood, which needs non-negative mean responses."""
    if isinstance(loss, str):
        return loss.lower() == "poisson"
    return isinstance(loss, (PoissonLoss, keras.losses.Poisson)) or loss is keras.losses.poisson
