"""Most exciting inputs (MEIs): the images that drive chosen neurons most under a contrast budget.

Walker et al. (2019) found, by gradient ascent on the input of a fitted model,
the image each mouse V1 neuron responds to most, and showed it in the lab.
Here the ascent runs for many neurons at once (image ``b`` of a batch belongs
to neuron ``neurons[b]``), on the deviation of the image from a background
(the training images' mean grey), and after every step the deviation is put
back within the budget: an L2 norm (the image's contrast energy) it may not
exceed and, optionally, a pixel range. Responses grow with contrast, so MEIs
end on the norm budget, which makes activations comparable across neurons and
with natural images of the same contrast.

Options follow sinzlab's ``mei`` package: Gaussian blur of the gradient
(a preconditioner that favours smooth images; it changes which image is
reached, so it is off by default), random jitter of the image at each step
(robustness to small shifts), a stopping rule, and several diverse MEIs per
neuron pushed apart by a penalty on their cosine similarity.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from keras_sysid.insilico._gradients import (
    NeuronGradients,
    checked_neurons,
    model_image_shape,
    model_image_statistics,
)


# Norm of the white-noise start as a fraction of the budget.
_START_FRACTION = 0.05


@dataclasses.dataclass
class MEIResult:
    """Most exciting inputs of some neurons and how the ascent went.

    Attributes:
        images: ``(n_neurons, H, W, C)``, or ``(n_neurons, n_per_neuron, H, W, C)``
            for diverse MEIs; in the data's units.
        activations: ``(n_neurons,)`` or ``(n_neurons, n_per_neuron)``: each
            neuron's model response to its image(s).
        neurons: ``(n_neurons,)`` the output indices, in the order given.
        trace: ``(n_evaluations, n_neurons[, n_per_neuron])`` the activation at
            every evaluation (every ``evaluate_every`` steps; a neuron that
            stopped keeps its best value).
        steps: ``(n_neurons,)`` gradient steps each neuron took before it stopped.
        norm: The L2 norm budget of ``image - background`` (an upper bound).
        background: The grey level the budget is measured from.
    """

    images: np.ndarray
    activations: np.ndarray
    neurons: np.ndarray
    trace: np.ndarray
    steps: np.ndarray
    norm: float
    background: float


def contrast_norm(images, background: float) -> np.ndarray:
    """L2 norm of each image's deviation from ``background``: ``(n,)`` for ``(n, H, W, C)`` images."""
    deviation = np.asarray(images, dtype="float64") - background
    return np.sqrt(np.sum(np.square(deviation.reshape(len(deviation), -1)), axis=1))


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(np.ceil(3.0 * sigma)))
    offsets = np.arange(-radius, radius + 1, dtype="float64")
    kernel = np.exp(-0.5 * np.square(offsets / sigma))
    return (kernel / kernel.sum()).astype("float32")


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """``(n, H, W, C)`` images blurred over rows and columns by a Gaussian of ``sigma`` pixels (edges reflected)."""
    if sigma <= 0:
        return images
    kernel = _gaussian_kernel(sigma)
    radius = len(kernel) // 2
    for axis in (1, 2):
        pad = [(0, 0)] * images.ndim
        pad[axis] = (radius, radius)
        windows = np.lib.stride_tricks.sliding_window_view(np.pad(images, pad, mode="reflect"), len(kernel), axis=axis)
        images = windows @ kernel
    return images.astype("float32")


def _project(deviation: np.ndarray, norm: float, background: float, pixel_range) -> np.ndarray:
    """The nearest deviation with L2 norm at most ``norm`` and, with a range, pixels inside it.

    Ball and box are both convex, so this Euclidean projection keeps projected
    gradient ascent well behaved. Coordinate-wise, the answer is
    ``clip(y / (1 + mu))`` for the smallest ``mu >= 0`` that meets the norm
    (found by bisection).
    """
    flat = deviation.reshape(len(deviation), -1).astype("float64")
    if pixel_range is None:
        lengths = np.linalg.norm(flat, axis=1, keepdims=True)
        return (flat * np.minimum(1.0, norm / np.maximum(lengths, 1e-300))).reshape(deviation.shape).astype("float32")
    low, high = pixel_range[0] - background, pixel_range[1] - background
    result = np.clip(flat, low, high)
    over = np.linalg.norm(result, axis=1) > norm
    if over.any():
        lower, upper = np.zeros(int(over.sum())), np.ones(int(over.sum()))
        candidates = flat[over]
        for _ in range(50):  # |clip(t * y)| grows with t: bisect on t = 1 / (1 + mu)
            middle = 0.5 * (lower + upper)
            too_long = np.linalg.norm(np.clip(candidates * middle[:, None], low, high), axis=1) > norm
            upper = np.where(too_long, middle, upper)
            lower = np.where(too_long, lower, middle)
        result[over] = np.clip(candidates * lower[:, None], low, high)
    return result.reshape(deviation.shape).astype("float32")


def _similarity_gradient(deviation: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean cosine similarity of each image to the others of its neuron, and its gradient.

    Args:
        deviation: ``(n * groups, ...)``, the images of one neuron consecutive.
        groups: Images per neuron.

    Returns:
        ``(similarity (n * groups,), gradient like deviation)``.
    """
    flat = deviation.reshape(-1, groups, int(np.prod(deviation.shape[1:]))).astype("float64")
    lengths = np.linalg.norm(flat, axis=2, keepdims=True)
    unit = flat / np.maximum(lengths, 1e-12)
    cosine = unit @ np.transpose(unit, (0, 2, 1))  # (n, g, g)
    others = groups - 1
    similarity = (cosine.sum(axis=2) - 1.0) / others
    # d/dx_i of cos(x_i, x_j) = (u_j - cos_ij u_i) / |x_i|
    summed = unit.sum(axis=1, keepdims=True) - unit
    gradient = (summed - (cosine.sum(axis=2, keepdims=True) - 1.0) * unit) / (others * np.maximum(lengths, 1e-12))
    return similarity.reshape(-1), gradient.reshape(deviation.shape).astype("float32")


def most_exciting_inputs(
    model,
    neurons,
    *,
    norm: float | None = None,
    background: float | None = None,
    pixel_range=None,
    start=None,
    steps: int = 1000,
    step_size: float = 0.1,
    blur_sigma: float = 0.0,
    jitter: int = 0,
    n_per_neuron: int = 1,
    diversity: float = 0.0,
    evaluate_every: int = 10,
    patience: int = 5,
    tolerance: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    verbose: int = 0,
) -> MEIResult:
    """Finds the images that drive each neuron most under a contrast budget.

    Projected, normalised gradient ascent on ``image - background``: each step
    moves every image by ``step_size * norm / (1 + t / 100)`` along its
    (optionally blurred) gradient direction, then projects it back into the
    budget (L2 norm at most ``norm`` and, with ``pixel_range``, pixels in it:
    the nearest such image).
    Every ``evaluate_every`` steps the images are scored without jitter; a
    neuron stops when its best activation has not grown by more than
    ``tolerance`` (relative) for ``patience`` evaluations. Each neuron keeps
    the best image it reached.

    Args:
        model: Any Keras model mapping ``(batch, H, W, C)`` images in the data's
            units to ``(batch, N)`` responses (ensembles too; a model that also
            takes the animal's state gets it at its training mean).
        neurons: Output indices, e.g. ``range(100)``.
        norm: Largest L2 norm of ``image - background``, in the data's units. Default:
            ``image_std * sqrt(H * W * C)`` (the training images' RMS contrast;
            an ensemble's members' mean), or ``sqrt(H * W * C)`` for a model
            that states no image statistics.
        background: Grey level the budget is measured from; default the
            model's ``image_mean`` (an ensemble's members' mean; else 0).
        pixel_range: ``(low, high)`` bounds on pixel values (e.g. ``(0, 255)``), or ``None``.
        start: ``None`` (seeded white noise, 5% of the budget) or ``(n_neurons, H, W, C)``
            images (``(n_neurons, n_per_neuron, H, W, C)`` with several per
            neuron) to start from, e.g. each neuron's best natural image.
        steps: Most gradient steps.
        step_size: First step's length as a fraction of ``norm``.
        blur_sigma: Gaussian blur (pixels) of each gradient; 0: none.
        jitter: Largest random shift (pixels, each axis) of the image at each step; 0: none.
        n_per_neuron: Images per neuron (diverse MEIs when > 1).
        diversity: Weight of the penalty on the mean cosine similarity between
            a neuron's images, in units of the neuron's mean activation.
        evaluate_every: Steps between evaluations (trace and stopping rule).
        patience: Evaluations without improvement before a neuron stops.
        tolerance: Smallest relative improvement that counts.
        batch_size: Images optimised together.
        seed: Seed of the start noise and the jitter.
        verbose: 1: a progress bar over batches of neurons.

    Returns:
        An :class:`MEIResult`.

    Raises:
        ValueError: unknown neuron index, a non-finite or non-positive norm,
            a bad pixel range or start images of the wrong shape.

    Example:
        >>> result = most_exciting_inputs(model, range(16), pixel_range=(0, 255))
        >>> result.images.shape, result.activations.shape
        ((16, 36, 64, 1), (16,))
    """
    image_shape = model_image_shape(model)
    neurons = checked_neurons(model, neurons, image_shape)
    image_mean, image_std = model_image_statistics(model)
    background = float(image_mean if background is None else background)
    if norm is None:
        norm = image_std * float(np.sqrt(np.prod(image_shape)))
    norm = float(norm)
    if not np.isfinite(norm) or norm <= 0:
        raise ValueError(f"norm (the contrast budget) must be positive and finite; got {norm}.")
    if not np.isfinite(background):
        raise ValueError(f"background must be finite; got {background}.")
    if pixel_range is not None:
        low, high = (float(v) for v in pixel_range)
        if not (np.isfinite(low) and np.isfinite(high) and low <= background <= high and low < high):
            raise ValueError(f"pixel_range must be finite (low, high) around the background {background}; got {pixel_range}.")
        pixel_range = (low, high)
    for name, value, least in (("steps", steps, 1), ("n_per_neuron", n_per_neuron, 1), ("evaluate_every", evaluate_every, 1),
                               ("patience", patience, 1), ("batch_size", batch_size, 1), ("jitter", jitter, 0)):
        if int(value) != value or value < least:
            raise ValueError(f"{name} must be an integer >= {least}; got {value}.")
    if not (np.isfinite(step_size) and step_size > 0 and np.isfinite(blur_sigma) and blur_sigma >= 0
            and np.isfinite(diversity) and diversity >= 0):
        raise ValueError("step_size must be positive; blur_sigma and diversity non-negative; all finite.")
    groups = int(n_per_neuron)
    rows = np.repeat(neurons, groups)
    rng = np.random.default_rng(seed)
    if start is None:
        deviation = rng.standard_normal((len(rows), *image_shape)).astype("float32")
    else:
        start = np.asarray(start, dtype="float32")
        expected = (len(neurons), *image_shape) if groups == 1 else (len(neurons), groups, *image_shape)
        if start.shape != expected or not np.all(np.isfinite(start)):
            raise ValueError(f"start must be finite images of shape {expected}; got {start.shape}.")
        deviation = start.reshape(len(rows), *image_shape) - background
        if groups > 1:  # identical starts could never be pushed apart
            deviation = deviation + 1e-3 * norm * rng.standard_normal(deviation.shape).astype("float32")
    if start is None:
        # Faint noise: where a neuron is blind its gradient is zero and the start
        # stays as it was, so it must not spend the budget there.
        flat = deviation.reshape(len(deviation), -1)
        scale = _START_FRACTION * norm / np.maximum(np.linalg.norm(flat, axis=1), 1e-30)
        deviation = deviation * scale.reshape(-1, *[1] * len(image_shape))
    deviation = _project(deviation, norm, background, pixel_range)

    gradients_of = NeuronGradients(model)
    best_images = deviation.copy()
    best = np.full(len(rows), -np.inf)
    steps_taken = np.zeros(len(rows), dtype="int64")
    traces = []
    batch = max(groups, (int(batch_size) // groups) * groups)  # a neuron's images stay in one batch
    progress = keras.utils.Progbar(len(rows), unit_name="image") if verbose else None
    for begin in range(0, len(rows), batch):
        part = slice(begin, begin + batch)
        trace = _ascend(gradients_of, deviation[part], rows[part], best_images[part], best[part],
                        steps_taken[part], norm, background, pixel_range, int(steps), float(step_size),
                        float(blur_sigma), int(jitter), groups, float(diversity), int(evaluate_every),
                        int(patience), float(tolerance), rng)
        traces.append(trace)
        if progress is not None:
            progress.update(min(begin + batch, len(rows)))
    length = max(len(trace) for trace in traces)
    # Batches that stopped earlier keep their last values, so the trace is one array.
    trace = np.concatenate([np.concatenate([t, np.repeat(t[-1:], length - len(t), axis=0)]) for t in traces], axis=1)
    images = best_images + background
    if groups == 1:
        return MEIResult(images, best.astype("float32"), neurons, trace, steps_taken, norm, background)
    shape = (len(neurons), groups)
    return MEIResult(images.reshape(*shape, *image_shape), best.reshape(shape).astype("float32"), neurons,
                     trace.reshape(len(trace), *shape), steps_taken.reshape(shape).max(axis=1), norm, background)


def _ascend(gradients_of, deviation, rows, best_images, best, steps_taken, norm, background, pixel_range, steps,
            step_size, blur_sigma, jitter, groups, diversity, evaluate_every, patience, tolerance, rng):
    """Runs the ascent for one batch in place (``best_images``, ``best``, ``steps_taken``); returns its trace.

    Only neurons still improving are computed, so a batch costs what its slowest neurons need.
    """
    active = np.ones(len(rows), dtype=bool)
    stale = np.zeros(len(rows), dtype="int64")
    trace = []
    for step in range(steps + 1):
        live = np.flatnonzero(active)
        current = deviation[live]
        evaluating = step % evaluate_every == 0 or step == steps
        if jitter and step < steps:
            shifts = rng.integers(-jitter, jitter + 1, size=(len(live), 2))
            shifted = np.stack([np.roll(image, tuple(shift), axis=(0, 1)) for image, shift in zip(current, shifts)])
            values, gradients = gradients_of(shifted + background, rows[live])
            gradients = np.stack([np.roll(g, tuple(-shift), axis=(0, 1)) for g, shift in zip(gradients, shifts)])
            if evaluating:  # scored as they are, unshifted
                values, _ = gradients_of(current + background, rows[live])
        else:
            # Without jitter the step's own forward pass scores the current images.
            values, gradients = gradients_of(current + background, rows[live])
        if evaluating:
            previous = best[live]
            # The first evaluation always counts (best starts at -inf).
            threshold = np.where(np.isfinite(previous),
                                 previous + tolerance * np.abs(np.where(np.isfinite(previous), previous, 0.0)), -np.inf)
            stale[live] = np.where(values > threshold, 0, stale[live] + 1)
            better = values > previous
            best[live[better]] = values[better]
            best_images[live[better]] = current[better]
            trace.append(best.copy())
            # A neuron's images stop together, when none of them improves any more.
            active &= ~(stale >= patience).reshape(-1, groups).all(axis=1).repeat(groups)
            if not active.any() or step == steps:
                break
            keep = active[live]
            live, current, values, gradients = live[keep], current[keep], values[keep], gradients[keep]
        gradients = gaussian_blur(gradients, blur_sigma)
        flat = gradients.reshape(len(live), -1)
        if groups > 1 and diversity > 0:
            # The penalty is in units of the activation; its gradient joins the activation's before normalising.
            _, similarity = _similarity_gradient(current, groups)
            scale = np.abs(values.reshape(-1, groups).mean(axis=1)).repeat(groups)[:, None]
            flat = flat - diversity * scale * similarity.reshape(len(live), -1)
        direction = flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-30)
        rate = step_size * norm / (1.0 + step / 100.0)
        deviation[live] = _project(current + (rate * direction).reshape(current.shape), norm, background, pixel_range)
        steps_taken[live] += 1
    return np.asarray(trace)
