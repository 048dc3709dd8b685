"""Normalized information gain of a model against a Bayesian oracle (Lurz, Bashiri et al., ICLR 2023).

A likelihood score: how much better than an image-independent null the model
predicts each single trial's response, as a fraction of how much better the
image's other repeats predict it. Per neuron, with ``LL`` the mean log
density of the scored tier's single trials (nats per trial),

``info_gain = (LL_model - LL_null) / (LL_oracle - LL_null)``

and, over the population, the same ratio of the sums over neurons (a
neuron's own ratio is unstable where the image tells little about it). 0 is
the null's score, 1 the oracle's; a model may exceed 1, as the oracle learns
each image from a handful of repeats.

All three use one family, the zero-inflated gamma (ZIG) of calcium-derived
responses (Wei et al. 2020; the ZIG models of Lurz et al.): a response at or
below a neuron's zero threshold ``loc`` is "no event", with density
``(1 - q) / loc`` (uniform on ``[0, loc]``); above it, ``y - loc`` is gamma
with shape ``k`` and mean ``m``, weighted by ``q``. So
``E[y] = (1 - q) loc / 2 + q (loc + m)``. Per neuron:

- ``loc`` is ``zero_threshold`` times the neuron's train standard deviation
  (deconvolved responses sit at 1e-8 when silent; any small threshold splits
  them off);
- the **null** is the ZIG fitted to the neuron's train responses by maximum
  likelihood (``q`` the smoothed fraction above ``loc``; ``k`` and ``m`` the
  gamma fit of the excesses): the neuron's marginal distribution;
- the **model** predicts only a mean ``mu`` per trial, which sets the
  trial's ZIG through a :class:`MeanLink`: event probability
  ``q = sigmoid(a + b log mu)`` and ``m`` such that ``E[y] = mu``; ``a``,
  ``b`` and ``k`` are fitted by maximum likelihood on a calibration tier
  (validation) given the model's predictions there. A mean says nothing
  about the spread around it or how it splits into events and their size,
  so these are fitted where the model was not trained; a fixed ``q`` would
  score a good model below the null wherever silent trials follow weak
  images (as in calcium data: a model with FEVE 0.85 on a calcium-like
  simulation, events likelier after stronger drive, scored -0.5 with a
  fixed ``q`` and 1.15 with this link);
- the **oracle** predicts each trial from the other repeats of its image: the
  image's ``q`` has a Beta prior and its gamma rate ``k / m`` a gamma prior
  (both conjugate, ``k`` shared by the neuron's images), the five
  hyperparameters fitted by maximum marginal likelihood over the scored
  tier's images (empirical Bayes), and the trial scored under the posterior
  predictive given the image's other repeats.

The ``-log(loc)`` of the no-event trials is common to all three and cancels.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import optimize, special

# Smallest usable gamma shape and largest; a neuron with fewer than two excesses gets shape 1 (exponential).
_SHAPE_RANGE = (1e-2, 1e4)
# The empirical-Bayes fits sum every neuron's objective: stop at a relative change of 1e-8 of the sum (far
# below a thousandth of a nat per neuron on mouse V1), not at the default 2e-9, which took twice the steps there.
_SOLVER = {"ftol": 1e-8, "maxiter": 2000}


@dataclasses.dataclass(frozen=True)
class ZIGMarginal:
    """Per-neuron zero-inflated gamma parameters, ``(N,)`` each, in the responses' units.

    Attributes:
        loc: Zero threshold: a response at or below it is "no event".
        q: Probability of a response above ``loc``.
        shape: Gamma shape ``k`` of ``y - loc`` above the threshold.
        excess: Mean of ``y - loc`` above the threshold (the null's ``m``).
    """

    loc: np.ndarray
    q: np.ndarray
    shape: np.ndarray
    excess: np.ndarray

    def mean(self) -> np.ndarray:
        """``(N,)`` mean response of the distribution, ``(1 - q) loc / 2 + q (loc + excess)``."""
        return (1 - self.q) * self.loc / 2 + self.q * (self.loc + self.excess)


@dataclasses.dataclass
class InformationGain:
    """Per-neuron mean log densities of the scored trials (nats per trial), ``(N,)`` each, and their ratios."""

    ll_model: np.ndarray
    ll_null: np.ndarray
    ll_oracle: np.ndarray

    def per_neuron(self) -> np.ndarray:
        """``(N,)`` normalized information gain; NaN where the oracle is no better than the null."""
        span = self.ll_oracle - self.ll_null
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(span > 0, (self.ll_model - self.ll_null) / span, np.nan)

    def population(self) -> float:
        """The ratio of the sums over neurons; NaN where the oracle is no better than the null."""
        span = float(np.sum(self.ll_oracle - self.ll_null))
        return float(np.sum(self.ll_model - self.ll_null)) / span if span > 0 else float("nan")


def _as_responses(values, name: str, n_neurons: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype="float64")
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (trials, neurons) array; got shape {array.shape}.")
    if n_neurons is not None and array.shape[1] != n_neurons:
        raise ValueError(f"{name} have {array.shape[1]} neurons but the train responses {n_neurons}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} hold NaN or inf ({int(np.sum(~np.isfinite(array)))} values).")
    return array


def _gamma_shape(s: np.ndarray) -> np.ndarray:
    """Solves ``log k - digamma(k) = s`` (the gamma maximum-likelihood shape) for each ``s >= 0``."""
    s = np.maximum(s, 1e-8)
    k = (3 - s + np.sqrt((s - 3) ** 2 + 24 * s)) / (12 * s)  # Minka (2002)'s start: within 1.5% of the root.
    for _ in range(6):
        k = k - (np.log(k) - special.digamma(k) - s) / (1 / k - special.polygamma(1, k))
        k = np.clip(k, *_SHAPE_RANGE)
    return k


def _shape_given_means(excess: np.ndarray, means: np.ndarray, above: np.ndarray) -> np.ndarray:
    """Per-neuron maximum-likelihood gamma shape of ``excess`` with known per-trial ``means``, above threshold only."""
    ratio = np.where(above, excess / np.where(above, means, 1.0), 1.0)
    n = above.sum(axis=0)
    # u - log u - 1 >= 0, and 0 only where every excess equals its mean.
    s = np.where(above, ratio - np.log(np.where(above, ratio, 1.0)) - 1, 0.0).sum(axis=0) / np.maximum(n, 1)
    return np.where(n >= 2, _gamma_shape(s), 1.0)


def fit_marginal(train_responses, zero_threshold: float = 0.01) -> ZIGMarginal:
    """Fits each neuron's zero-inflated gamma to its train responses (the null model).

    Args:
        train_responses: ``(trials, N)`` responses of the train tier.
        zero_threshold: ``loc`` per neuron, as a fraction of its train
            standard deviation (with a floor far below any response scale).

    Returns:
        A :class:`ZIGMarginal`: ``q`` the fraction of trials above ``loc``
        (smoothed by half a trial each way, so never 0 or 1), ``shape`` and
        ``excess`` the maximum-likelihood gamma fit of ``y - loc`` above it.

    Raises:
        ValueError: for an empty, non-2-D or non-finite array, or a
            ``zero_threshold`` that is not positive.
    """
    responses = _as_responses(train_responses, "train responses")
    if not zero_threshold > 0:
        raise ValueError(f"zero_threshold must be positive; got {zero_threshold}.")
    scale = responses.std(axis=0)
    loc = np.maximum(zero_threshold * scale, 1e-12 * (1 + np.abs(responses).max(axis=0)))
    above = responses > loc
    n_above = above.sum(axis=0)
    q = (n_above + 0.5) / (len(responses) + 1.0)
    excess_values = np.where(above, responses - loc, 0.0)
    excess = np.where(n_above > 0, excess_values.sum(axis=0) / np.maximum(n_above, 1), loc)
    shape = _shape_given_means(excess_values, np.broadcast_to(excess, responses.shape), above)
    return ZIGMarginal(loc=loc, q=q, shape=shape, excess=excess)


@dataclasses.dataclass(frozen=True)
class MeanLink:
    """How a model's mean prediction ``mu`` sets a trial's zero-inflated gamma, per neuron ``(N,)`` each.

    The event probability is ``q = sigmoid(a + b log mu)`` (``b = 0``: one
    probability for every image; ``b = 1``: proportional to ``mu`` while
    small, as for events of a fixed size); the gamma mean ``m`` of ``y - loc``
    then follows from ``E[y] = (1 - q) loc / 2 + q (loc + m) = mu``.

    Attributes:
        loc: Zero thresholds.
        a: Log-odds of an event at ``mu = 1``.
        b: Slope of the log-odds in ``log mu``.
        shape: Gamma shape ``k`` around the mean.
    """

    loc: np.ndarray
    a: np.ndarray
    b: np.ndarray
    shape: np.ndarray

    def event_probability(self, means) -> np.ndarray:
        """``(trials, N)`` probability of a response above ``loc``, in [1e-6, 1 - 1e-6]."""
        # A prediction at or below zero is read as a thousandth of the threshold: no event, almost surely.
        log_mean = np.log(np.maximum(np.asarray(means, dtype="float64"), 1e-3 * self.loc))
        return np.clip(special.expit(self.a + self.b * log_mean), 1e-6, 1 - 1e-6)

    def log_density(self, responses, means) -> np.ndarray:
        """``(trials, N)`` log densities of ``responses`` given the mean predictions ``means`` (same shape)."""
        q = self.event_probability(means)
        return zig_log_density(responses, self.loc, q, excess_for_mean(self.loc, q, means), self.shape)


def excess_for_mean(loc, q, means) -> np.ndarray:
    """The gamma mean ``m`` of ``y - loc`` that gives each trial the mean response ``means``.

    Inverts ``E[y] = (1 - q) loc / 2 + q (loc + m)``; a prediction below the
    no-event part's own mean gets ``m = loc``, the smallest excess resolved.

    Args:
        loc: ``(N,)`` zero thresholds.
        q: ``(N,)`` or ``(trials, N)`` event probabilities.
        means: ``(trials, N)`` predicted mean responses.

    Returns:
        ``(trials, N)`` gamma means, at least ``loc``.
    """
    return np.maximum((np.asarray(means, dtype="float64") - (1 - q) * loc / 2) / q - loc, loc)


def zig_log_density(responses, loc, q, excess, shape) -> np.ndarray:
    """Log density of each response under the zero-inflated gamma (see the module).

    Args:
        responses: ``(trials, N)``.
        loc: ``(N,)`` zero thresholds.
        q: ``(N,)`` or ``(trials, N)`` probabilities of a response above ``loc``.
        excess: ``(N,)`` or ``(trials, N)`` gamma means of ``y - loc``.
        shape: ``(N,)`` gamma shapes.

    Returns:
        ``(trials, N)`` log densities (nats).
    """
    y = np.asarray(responses, dtype="float64")
    k = np.asarray(shape, dtype="float64")
    m = np.broadcast_to(np.asarray(excess, dtype="float64"), y.shape)
    above = y > loc
    x = np.where(above, y - loc, 1.0)
    gamma = k * np.log(k / m) + (k - 1) * np.log(x) - k * x / m - special.gammaln(k)
    return np.where(above, np.log(q) + gamma, np.log1p(-q) - np.log(loc))


def calibrate_link(responses, predictions, marginal: ZIGMarginal) -> MeanLink:
    """The zero-inflated gamma around a model's predictions: maximum likelihood on held-out trials.

    A logistic regression of "above ``loc``" on ``log mu`` per neuron gives
    ``a`` and ``b`` (a little ridge keeps a neuron without events finite),
    then the gamma shape given the implied means ``m``.

    Args:
        responses: ``(trials, N)`` responses of a tier the model was not trained on.
        predictions: ``(trials, N)`` the model's mean predictions of them.
        marginal: The neurons' ``loc`` and their train event probability (the start).

    Returns:
        A :class:`MeanLink`.
    """
    y = np.asarray(responses, dtype="float64")
    above = y > marginal.loc
    log_mean = np.log(np.maximum(np.asarray(predictions, dtype="float64"), 1e-3 * marginal.loc))
    centre, spread = log_mean.mean(axis=0), log_mean.std(axis=0)
    spread = np.where(spread > 1e-9, spread, np.inf)  # A constant prediction: slope 0.
    x = (log_mean - centre) / spread
    c0, c1 = special.logit(marginal.q), np.zeros_like(marginal.q)
    ridge = 1e-3 * len(y)
    for _ in range(25):  # Newton's method, one 2x2 system per neuron.
        p = special.expit(c0 + c1 * x)
        w = p * (1 - p)
        g0, g1 = (above - p).sum(axis=0) - ridge * 1e-3 * c0, ((above - p) * x).sum(axis=0) - ridge * c1
        h00, h01, h11 = w.sum(axis=0) + ridge * 1e-3, (w * x).sum(axis=0), (w * x * x).sum(axis=0) + ridge
        det = h00 * h11 - h01**2
        c0, c1 = c0 + (h11 * g0 - h01 * g1) / det, c1 + (h00 * g1 - h01 * g0) / det
    b = c1 / spread
    link = MeanLink(loc=marginal.loc, a=c0 - b * centre, b=b, shape=np.ones_like(c0))
    q = link.event_probability(predictions)
    excess = excess_for_mean(marginal.loc, q, predictions)
    shape = _shape_given_means(np.where(above, y - marginal.loc, 0.0), excess, above)
    return dataclasses.replace(link, shape=shape)


def _group_statistics(responses: np.ndarray, groups, loc: np.ndarray):
    """Per image and neuron, ``(images, N)`` each: trials above ``loc``, trials at or below, sum and sum of log of the excesses."""
    above_all = responses > loc
    excess_all = np.where(above_all, responses - loc, 0.0)
    log_all = np.where(above_all, np.log(np.where(above_all, excess_all, 1.0)), 0.0)
    n1 = np.stack([above_all[g].sum(axis=0) for g in groups]).astype("float64")
    n0 = np.array([len(g) for g in groups], dtype="float64")[:, None] - n1
    total = np.stack([excess_all[g].sum(axis=0) for g in groups])
    total_log = np.stack([log_all[g].sum(axis=0) for g in groups])
    return n1, n0, total, total_log


def _fit_beta_prior(n1: np.ndarray, n0: np.ndarray, q0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical-Bayes ``(a, b)`` per neuron: maximum beta-binomial likelihood of the images' event counts."""
    n_neurons = n1.shape[1]
    # The likelihood depends on an image's counts only: sum over the few distinct (n1, n0) pairs, weighted.
    pairs, inverse = np.unique(np.stack([n1.ravel(), n0.ravel()], axis=1), axis=0, return_inverse=True)
    weights = np.zeros((len(pairs), n_neurons))
    np.add.at(weights, (inverse.ravel(), np.tile(np.arange(n_neurons), n1.shape[0])), 1.0)
    n1, n0 = pairs[:, :1], pairs[:, 1:]

    def objective(params):
        a, b = np.exp(params[:n_neurons]), np.exp(params[n_neurons:])
        value = weights * (special.betaln(a + n1, b + n0) - special.betaln(a, b))
        common = special.digamma(a + b) - special.digamma(a + b + n1 + n0)
        grad_a = (weights * (special.digamma(a + n1) - special.digamma(a) + common)).sum(axis=0) * a
        grad_b = (weights * (special.digamma(b + n0) - special.digamma(b) + common)).sum(axis=0) * b
        return -value.sum(), -np.concatenate([grad_a, grad_b])

    start = np.concatenate([np.log(2 * q0), np.log(2 * (1 - q0))])
    bounds = [(-7.0, 12.0)] * (2 * n_neurons)
    result = optimize.minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds, options=_SOLVER)
    return np.exp(result.x[:n_neurons]), np.exp(result.x[n_neurons:])


def _fit_gamma_prior(n1, total, total_log, k0: np.ndarray, rate0: np.ndarray):
    """Empirical-Bayes ``(k, alpha, beta)`` per neuron: the gamma shape and the gamma prior of each image's rate.

    Maximises the images' marginal likelihood of their excesses (the rate
    integrated out); images without an excess contribute nothing.
    """
    n_neurons = n1.shape[1]

    def objective(params):
        k, alpha, beta = (np.exp(params[i * n_neurons:(i + 1) * n_neurons]) for i in range(3))
        post_alpha, post_beta = alpha + n1 * k, beta + total
        value = ((k - 1) * total_log - n1 * special.gammaln(k) + alpha * np.log(beta) - special.gammaln(alpha)
                 + special.gammaln(post_alpha) - post_alpha * np.log(post_beta))
        dig_post = special.digamma(post_alpha)
        log_post_beta = np.log(post_beta)
        grad_k = (total_log - n1 * special.digamma(k) + n1 * dig_post - n1 * log_post_beta).sum(axis=0) * k
        grad_alpha = (np.log(beta) - special.digamma(alpha) + dig_post - log_post_beta).sum(axis=0) * alpha
        grad_beta = (alpha / beta - post_alpha / post_beta).sum(axis=0) * beta
        return -value.sum(), -np.concatenate([grad_k, grad_alpha, grad_beta])

    # Start from a vague prior centred on the marginal's rate.
    start = np.concatenate([np.log(k0), np.zeros(n_neurons), -np.log(rate0)])
    bounds = [(np.log(_SHAPE_RANGE[0]), np.log(_SHAPE_RANGE[1]))] * n_neurons + [(-7.0, 12.0)] * (2 * n_neurons)
    result = optimize.minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds, options=_SOLVER)
    k, alpha, beta = (np.exp(result.x[i * n_neurons:(i + 1) * n_neurons]) for i in range(3))
    return k, alpha, beta


def oracle_log_density(responses, groups, marginal: ZIGMarginal) -> np.ndarray:
    """Log density of each trial under the Bayesian oracle: the posterior predictive given its image's other repeats.

    Args:
        responses: ``(trials, N)`` responses of a tier with repeated images.
        groups: One array of trial positions per image (its repeats).
        marginal: The neurons' ``loc`` (and the start of the prior fits).

    Returns:
        ``(trials, N)`` log densities (nats); a trial of an image shown once
        gets the prior predictive.
    """
    y = np.asarray(responses, dtype="float64")
    loc = marginal.loc
    n1, n0, total, total_log = _group_statistics(y, groups, loc)
    a, b = _fit_beta_prior(n1, n0, marginal.q)
    # Fitted in units of each neuron's mean excess, so that one start and one set of bounds suit every neuron.
    unit = marginal.excess
    k, alpha, beta = _fit_gamma_prior(n1, total / unit, total_log - n1 * np.log(unit), marginal.shape,
                                      marginal.shape)
    beta = beta * unit
    result = np.empty_like(y)
    for image, group in enumerate(groups):
        trials = y[group]
        above = trials > loc
        x = np.where(above, trials - loc, 1.0)
        # The image's counts and sums without the scored trial.
        others_above = n1[image] - above
        others_below = n0[image] - ~above
        others_total = total[image] - np.where(above, x, 0.0)
        p_above = (a + others_above) / (a + b + others_above + others_below)
        post_alpha, post_beta = alpha + k * others_above, beta + others_total
        gamma = (special.gammaln(k + post_alpha) - special.gammaln(k) - special.gammaln(post_alpha)
                 + (k - 1) * np.log(x) + post_alpha * np.log(post_beta) - (k + post_alpha) * np.log(post_beta + x))
        result[group] = np.where(above, np.log(p_above) + gamma, np.log1p(-p_above) - np.log(loc))
    return result


def information_gain(responses, predictions, groups, train_responses, calibration,
                     zero_threshold: float = 0.01) -> InformationGain:
    """Scores a model's predictions of repeated trials by normalized information gain (see the module).

    Args:
        responses: ``(trials, N)`` responses of the scored tier (repeated images).
        predictions: ``(trials, N)`` the model's mean predictions of them.
        groups: One array of trial positions per image (its repeats), as
            from :meth:`keras_sysid.data.Recording.repeat_positions`.
        train_responses: ``(train trials, N)`` responses the null is fitted to.
        calibration: ``(responses, predictions)`` of a tier the model was
            not trained on (validation), ``(trials, N)`` each, that fix the
            spread around the model's mean.
        zero_threshold: As :func:`fit_marginal`.

    Returns:
        An :class:`InformationGain`.

    Raises:
        ValueError: arrays of another shape or neuron count, non-finite
            values, or groups that are not positions into ``responses``.
    """
    train = _as_responses(train_responses, "train responses")
    n_neurons = train.shape[1]
    y = _as_responses(responses, "responses", n_neurons)
    predicted = _as_responses(predictions, "predictions", n_neurons)
    if predicted.shape != y.shape:
        raise ValueError(f"predictions have shape {predicted.shape} but the responses {y.shape}.")
    if not isinstance(calibration, (tuple, list)) or len(calibration) != 2:
        raise ValueError("calibration must be (responses, predictions) of a held-out tier.")
    calibration_y = _as_responses(calibration[0], "calibration responses", n_neurons)
    calibration_predicted = _as_responses(calibration[1], "calibration predictions", n_neurons)
    if calibration_predicted.shape != calibration_y.shape:
        raise ValueError(f"calibration predictions have shape {calibration_predicted.shape} but its responses "
                         f"{calibration_y.shape}.")
    groups = [np.asarray(g, dtype="int64").ravel() for g in groups]
    if not groups or any(g.size == 0 or g.min() < 0 or g.max() >= len(y) for g in groups):
        raise ValueError(f"groups must be non-empty arrays of positions into the {len(y)} scored trials.")
    marginal = fit_marginal(train, zero_threshold)
    trials = np.concatenate(groups)
    link = calibrate_link(calibration_y, calibration_predicted, marginal)
    model = link.log_density(y[trials], predicted[trials])
    null = zig_log_density(y[trials], marginal.loc, marginal.q, marginal.excess, marginal.shape)
    oracle = oracle_log_density(y, groups, marginal)[trials]
    return InformationGain(ll_model=model.mean(axis=0), ll_null=null.mean(axis=0), ll_oracle=oracle.mean(axis=0))
