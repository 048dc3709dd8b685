"""Losses for spike counts and calcium-derived responses."""

from __future__ import annotations

import keras
import numpy as np
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


@keras.saving.register_keras_serializable(package="keras_sysid")
class ZeroInflatedGammaLoss(keras.losses.Loss):
    """Zero-inflated gamma negative log-likelihood of calcium-derived responses, up to terms constant in the prediction.

    Each neuron's response is "no event" at or below its zero threshold
    ``loc``; above it, ``y - loc`` is gamma with shape ``k`` and mean ``m``.
    The model predicts the mean response ``mu``, which sets both the event
    probability, ``q = 1 - exp(-mu / c)`` (events arriving at the rate
    ``mu / c`` of events of a typical size ``c``), and ``m``, from
    ``mu = (1 - q) loc / 2 + q (loc + m)`` (at least ``loc``): the
    zero-inflated gamma family of :mod:`keras_sysid.information_gain`. The
    loss is the sum over neurons of

    - ``mu / c`` (``-log(1 - q)``) where ``y <= loc``: as in the Poisson loss,
      silence costs in proportion to the predicted mean;
    - ``-log(1 - exp(-mu / c)) + k (log m + (y - loc) / m)`` where ``y > loc``,

    averaged over the batch. ``loc``, ``c`` and ``k`` are fixed per neuron,
    estimated from the train responses (:meth:`from_responses`).

    Measured on mouse V1 (paper core, Gaussian readout, 11-minute fits on 2
    CPU cores, 2026-12-03) it fits worse than :class:`PoissonLoss`:
    validation correlation 0.211 against 0.257, so the fits keep the Poisson
    loss by default.

    Args:
        loc: ``(N,)`` zero thresholds, positive.
        event_size: ``(N,)`` typical event sizes ``c``, positive.
        shape: ``(N,)`` gamma shapes, positive.

    Input shape:
        ``y_true`` and ``y_pred`` (the predicted mean): ``(batch, N)``.

    Output shape:
        A scalar (with the default reduction).

    Raises:
        ValueError: parameters of different lengths, not finite, or ``loc``
            or ``shape`` not positive.

    Example:
        >>> loss = ZeroInflatedGammaLoss.from_responses(train_responses)
        >>> model.compile(optimizer="adam", loss=loss)
    """

    def __init__(self, loc, event_size, shape, name: str = "zero_inflated_gamma_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.loc, self.event_size, self.shape = ([float(v) for v in np.ravel(values)]
                                                 for values in (loc, event_size, shape))
        if not len(self.loc) == len(self.event_size) == len(self.shape) > 0:
            raise ValueError(f"ZeroInflatedGammaLoss: loc, event_size and shape must have one value per neuron each; "
                             f"got {len(self.loc)}, {len(self.event_size)} and {len(self.shape)}.")
        values = np.array([self.loc, self.event_size, self.shape])
        if not np.all(np.isfinite(values)) or not np.all(values > 0):
            raise ValueError("ZeroInflatedGammaLoss needs finite loc > 0, event_size > 0 and shape > 0 for every neuron.")

    @classmethod
    def from_responses(cls, train_responses, zero_threshold: float = 0.01, **kwargs) -> ZeroInflatedGammaLoss:
        """The loss with each neuron's parameters estimated from ``(trials, N)`` train responses.

        ``loc`` is ``zero_threshold`` times the neuron's standard deviation;
        ``k`` the maximum-likelihood gamma shape of its excesses over ``loc``
        (:func:`keras_sysid.information_gain.fit_marginal`); ``a`` makes a
        prediction of the neuron's mean response give its fraction ``q`` of
        trials above ``loc``: ``c = -mean / log(1 - q)``.
        """
        from keras_sysid.information_gain import fit_marginal

        marginal = fit_marginal(train_responses, zero_threshold)
        event_size = np.maximum(marginal.mean(), marginal.loc) / -np.log1p(-marginal.q)
        return cls(marginal.loc, event_size, marginal.shape, **kwargs)

    @property
    def n_neurons(self) -> int:
        """How many neurons the parameters are for."""
        return len(self.loc)

    def call(self, y_true, y_pred):
        dtype = keras.backend.standardize_dtype(y_pred.dtype)
        y_true = ops.cast(y_true, dtype)
        loc, event_size, shape = (ops.convert_to_tensor(np.asarray(v), dtype=dtype)
                                  for v in (self.loc, self.event_size, self.shape))
        # A mean at or below zero is read as a thousandth of the threshold (no event, almost surely).
        mean = ops.maximum(y_pred, 1e-3 * loc)
        rate = mean / event_size
        q = -ops.expm1(-rate)
        excess = ops.maximum((mean - (1 - q) * loc / 2) / q - loc, loc)
        above = ops.cast(y_true > loc, dtype)
        event = -ops.log(q) + shape * (ops.log(excess) + ops.maximum(y_true - loc, 0.0) / excess)
        return ops.sum(above * event + (1 - above) * rate, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(loc=self.loc, event_size=self.event_size, shape=self.shape)
        return config
