"""Where receptive fields are: sub-pixel peaks of weight maps, spike-triggered
envelopes, positions from a core's features, and where a core's channels look."""

from __future__ import annotations

import keras
import numpy as np


def peak_positions(weight_maps: np.ndarray) -> np.ndarray:
    """Sub-pixel peak of non-negative maps ``(N, H, W)`` -> ``(N, 2)`` (row, col).

    The peak is the arg-max, refined by the centre of mass of its 3x3
    neighbourhood, so a mask spread over two grid cells lands between them.
    """
    n, _, width = weight_maps.shape
    flat_peak = weight_maps.reshape(n, -1).argmax(axis=1)
    rows, cols = np.divmod(flat_peak, width)
    padded = np.pad(weight_maps, ((0, 0), (1, 1), (1, 1)))
    offsets = np.arange(-1, 2)
    patch_rows = (rows[:, None] + 1 + offsets)[:, :, None]
    patch_cols = (cols[:, None] + 1 + offsets)[:, None, :]
    patches = padded[np.arange(n)[:, None, None], patch_rows, patch_cols]  # (N, 3, 3)
    total = patches.sum(axis=(1, 2))
    total = np.where(total > 0, total, 1.0)
    row_shift = (patches.sum(axis=2) * offsets).sum(axis=1) / total
    col_shift = (patches.sum(axis=1) * offsets).sum(axis=1) / total
    return np.stack([rows + row_shift, cols + col_shift], axis=1)


def _standardised_pixels_and_centred_responses(images, responses):
    """``(T, H*W)`` images standardised by their overall mean and std, ``(T, N)``
    responses minus each neuron's mean, and ``(H, W)``."""
    images = np.asarray(images, dtype="float32")
    if images.ndim == 4:
        if images.shape[-1] != 1:
            raise ValueError(f"Spike-triggered statistics need single-channel images; got {images.shape}.")
        images = images[..., 0]
    responses = np.asarray(responses, dtype="float32")
    if images.ndim != 3 or responses.ndim != 2 or len(images) != len(responses):
        raise ValueError(
            f"Spike-triggered statistics need images (T, H, W) and responses (T, N); got {images.shape}, {responses.shape}."
        )
    pixels = images.reshape(len(images), -1)
    pixels = (pixels - pixels.mean()) / max(float(pixels.std()), 1e-12)
    return pixels, responses - responses.mean(axis=0), images.shape[1:]


def spike_triggered_averages(images: np.ndarray, responses: np.ndarray) -> np.ndarray:
    """Response-weighted average of standardised images, one per neuron.

    ``sta[n] = sum_t (r[t, n] - mean_n) * z[t] / T`` with ``z`` the images
    standardised by their overall mean and std.

    Args:
        images: ``(T, H, W)`` or ``(T, H, W, 1)``.
        responses: ``(T, N)``.

    Returns:
        ``(N, H, W)`` float32.
    """
    pixels, centred, (height, width) = _standardised_pixels_and_centred_responses(images, responses)
    return (centred.T @ pixels / len(pixels)).reshape(-1, height, width)


def _gaussian_blur(maps: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, int(round(3 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()

    def along(axis, array):
        padded = np.pad(array, [(0, 0)] * axis + [(radius, radius)] + [(0, 0)] * (array.ndim - axis - 1), mode="reflect")
        out = np.zeros_like(array)
        for shift, weight in enumerate(kernel):
            out += weight * np.take(padded, np.arange(shift, shift + array.shape[axis]), axis=axis)
        return out

    return along(2, along(1, maps))


def spike_triggered_variances(images: np.ndarray, responses: np.ndarray) -> np.ndarray:
    """Response-weighted average of squared standardised images, one per neuron.

    ``stv[n] = sum_t (r[t, n] - mean_n) * z[t]**2 / T``: the diagonal of the
    spike-triggered covariance. It is large where a neuron responds to
    contrast of either sign, so it locates cells whose STA vanishes
    (complex-like, energy cells).

    Args:
        images: ``(T, H, W)`` or ``(T, H, W, 1)``.
        responses: ``(T, N)``.

    Returns:
        ``(N, H, W)`` float32.
    """
    pixels, centred, (height, width) = _standardised_pixels_and_centred_responses(images, responses)
    return (centred.T @ np.square(pixels) / len(pixels)).reshape(-1, height, width)


def envelope_positions(images: np.ndarray, responses: np.ndarray, smoothing: float = 2.0) -> np.ndarray:
    """Each neuron's location from the envelope of its spike-triggered statistics.

    Batty et al. (2017) fix a neuron's readout location at the envelope of its
    spike-triggered average. The envelope here sums two maps, each scaled to
    a peak of 1: the STA's energy ``sta**2`` (simple, linear-like cells) and
    ``|stv|`` (:func:`spike_triggered_variances`; cells with a symmetric
    nonlinearity have no STA). Blurring by a Gaussian of ``smoothing`` pixels
    merges on- and off-lobes into one blob whose peak is the RF centre.

    Args:
        images: ``(T, H, W)`` or ``(T, H, W, 1)``.
        responses: ``(T, N)``.
        smoothing: Blur width in pixels.

    Returns:
        ``(N, 2)`` (row, column) in pixels.
    """

    def peak_normalised(maps):
        return maps / np.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-30)

    first_order = peak_normalised(spike_triggered_averages(images, responses).astype("float64") ** 2)
    second_order = peak_normalised(np.abs(spike_triggered_variances(images, responses).astype("float64")))
    return peak_positions(_gaussian_blur(first_order + second_order, smoothing))


def shrunk_envelope_positions(images: np.ndarray, responses: np.ndarray, smoothing: float = 2.0,
                              seed: int = 0) -> np.ndarray:
    """:func:`envelope_positions`, each shrunk towards the population's centre by how noisy it is.

    With few or noisy trials the envelope of a neuron without a clear
    receptive field peaks anywhere, and a readout started there is worse off
    than at the population's centre; a clear cell's envelope is where it is.
    Empirical Bayes, per axis: each neuron's estimate ``x`` has a noise
    variance ``v`` measured from two random halves of the trials (``(a -
    b)**2 / 4``, the variance of the mean of two halves), the true positions
    a spread ``s2 = var(x) - mean(v)`` around their median ``m``, and the
    start is the posterior mean ``m + s2 / (s2 + v) * (x - m)``. On recordings
    whose cells fill the image (``s2`` large) the estimates stand; on
    recordings whose cells cluster and whose estimates are noisy (mouse V1)
    most neurons start near the cluster.

    Args:
        images: ``(T, H, W)`` or ``(T, H, W, 1)``.
        responses: ``(T, N)``.
        smoothing: Blur width in pixels.
        seed: Seed of the split into halves.

    Returns:
        ``(N, 2)`` (row, column) in pixels.
    """
    images, responses = np.asarray(images), np.asarray(responses)
    order = np.random.default_rng(seed).permutation(len(images))
    first, second = order[: len(order) // 2], order[len(order) // 2:]
    estimate = envelope_positions(images, responses, smoothing)
    noise = np.square(envelope_positions(images[first], responses[first], smoothing)
                      - envelope_positions(images[second], responses[second], smoothing)) / 4.0
    centre = np.median(estimate, axis=0)
    spread = np.maximum(estimate.var(axis=0) - noise.mean(axis=0), 1e-6)
    return centre + spread / (spread + noise) * (estimate - centre)


def locate_neurons(model, images, responses, behavior=None) -> np.ndarray:
    """Where training responses place each neuron on a model's core grid, before fitting.

    A fresh core's features mean nothing yet, so the data speak through the
    images: the peak of each neuron's spike-triggered envelope, shrunk
    towards the population's centre by its noise
    (:func:`shrunk_envelope_positions`; colour averaged to grey), mapped to
    the grid with ``model.pixels_to_grid``. A frozen (pretrained) core
    already computes the cell types' features, so there each neuron goes
    where a ridge regression on the core's features predicts it best
    (:func:`feature_regression_positions`), which needs far fewer images.

    Args:
        model: A :class:`~keras_sysid.models.SystemIdentificationModel`.
        images: ``(T, *image_shape)`` training images in the data's units.
        responses: ``(T, N)`` their responses.
        behavior: ``(T, n_behavior)``, for a core that takes behaviour channels.

    Returns:
        ``(N, 2)`` (row, column) grid positions, inside the grid.
    """
    if model.core.weights and not model.core.trainable:
        on_grid, _ = feature_regression_positions(model.feature_maps(images, behavior=behavior), responses)
        return np.clip(on_grid, 0.0, np.asarray(model.grid_shape) - 1.0)
    grey = np.asarray(images, dtype="float32")
    grey = grey.mean(axis=-1) if grey.ndim == 4 else grey
    return model.pixels_to_grid(shrunk_envelope_positions(grey, responses))


def feature_regression_positions(
    feature_maps: np.ndarray, responses: np.ndarray, ridge: float = 1.0, max_elements: int = 2**25, verbose: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Each neuron's location on a core's grid: where its features predict it best.

    A pretrained core already computes the population's features (the
    *what*), so a new neuron can be found by asking, at every grid position,
    how well a ridge regression on the ``C`` feature values there predicts
    its responses. The score is the leave-one-out R^2 (closed form from the
    SVD of each position's ``(T, C)`` design), so positions are compared on
    held-out prediction, not on fit. This needs far fewer images than a
    spike-triggered envelope on pixels, because only ``C`` weights are fitted
    per position.

    Args:
        feature_maps: ``(T, h, w, C)`` core outputs for the training images.
        responses: ``(T, N)`` responses to the same images.
        ridge: Ridge penalty per image: ``lambda = ridge * T`` on features
            standardised over images.
        max_elements: Bound on each chunk's temporaries: grid positions are
            solved in chunks of about ``max_elements / (T * C + C * N)``.
        verbose: 1: a progress bar over the grid positions (800 neurons on
            a mouse V1 core's 24x52 grid take about a minute and a half on 2 cores).

    Returns:
        ``(positions, scores)``: ``(N, 2)`` (row, column) on the grid, refined
        between cells (:func:`peak_positions` of the positive scores), and the
        ``(N, h, w)`` leave-one-out R^2 maps.
    """
    # Feature maps stay float32 (a mouse V1 core's are 1 GB); each chunk is solved in float64.
    feature_maps = np.asarray(feature_maps, dtype="float32")
    responses = np.asarray(responses, dtype="float64")
    if feature_maps.ndim != 4 or responses.ndim != 2 or len(feature_maps) != len(responses):
        raise ValueError(
            f"feature_regression_positions: need feature maps (T, h, w, C) and responses (T, N) for the same T; "
            f"got {feature_maps.shape} and {responses.shape}."
        )
    if not (np.all(np.isfinite(feature_maps)) and np.all(np.isfinite(responses))):
        raise ValueError("feature_regression_positions: feature maps and responses must be finite (no NaN/inf).")
    n_images, height, width, channels = feature_maps.shape
    designs = feature_maps.reshape(n_images, height * width, channels).transpose(1, 0, 2)  # (P, T, C)
    centred = responses - responses.mean(axis=0)
    total = np.maximum(np.square(centred).sum(axis=0), 1e-30)  # (N,)
    squared = np.square(centred)
    centred32 = centred.astype("float32")
    penalty = float(ridge) * n_images
    scores = np.empty((height * width, responses.shape[1]))
    chunk = max(1, int(max_elements) // (n_images * channels + channels * responses.shape[1]))
    progress = keras.utils.Progbar(height * width, unit_name="grid position") if verbose else None
    for start in range(0, height * width, chunk):
        design = designs[start:start + chunk].astype("float64")
        design = design - design.mean(axis=1, keepdims=True)
        design = design / np.maximum(design.std(axis=1, keepdims=True), 1e-12)
        left, singular, _ = np.linalg.svd(design, full_matrices=False)  # (p, T, C), (p, C)
        shrink = np.square(singular) / (np.square(singular) + penalty)  # (p, C)
        leverage = np.einsum("ptc,pc->pt", np.square(left), shrink)  # (p, T)
        # Leave-one-out residuals of a linear smoother are (y - y_hat) / (1 - h_tt);
        # their weighted sum of squares is expanded so that no (p, T, N) array is formed.
        weight = 1.0 / np.square(1.0 - leverage)  # (p, T)
        # One large float32 product for the whole chunk: it dominates the cost.
        stacked = np.concatenate([left, left * weight[:, :, None]], axis=2).transpose(0, 2, 1)  # (p, 2C, T)
        products = (stacked.reshape(-1, n_images).astype("float32") @ centred32).astype("float64")
        products = products.reshape(len(left), 2, channels, -1)
        projected, weighted = products[:, 0], products[:, 1]  # (p, C, N) each
        coefficients = shrink[:, :, None] * projected  # fitted = left @ coefficients
        gram = left.transpose(0, 2, 1) @ (left * weight[:, :, None])  # (p, C, C)
        held_out_rss = (
            weight @ squared
            - 2.0 * np.sum(coefficients * weighted, axis=1)
            + np.sum(coefficients * (gram @ coefficients), axis=1)
        )
        scores[start:start + chunk] = 1.0 - held_out_rss / total
        if progress is not None:
            progress.update(min(start + chunk, height * width))
    score_maps = scores.T.reshape(-1, height, width)
    return peak_positions(np.maximum(score_maps, 0.0)), score_maps


def channel_rf_offsets(core, image_shape, delta: float = 1.0) -> np.ndarray:
    """Where each output channel of a core looks, relative to its grid cell.

    A conv kernel may learn its feature off-centre, and the readout then shifts
    its mask the other way; a neuron's receptive field is the mask position
    plus this offset. It is measured by probing the core with single-pixel
    impulses of +-``delta`` on a blank (mean) image and locating the peak of
    the squared change at the central grid cell, so it works for any core,
    linear or not.

    Args:
        core: A built core mapping ``(batch, H, W, C)`` to ``(batch, h, w, channels)``.
        image_shape: ``(H, W)`` or ``(H, W, C)`` of the core's (standardised) input.
        delta: Impulse amplitude in the core's input units.

    Returns:
        ``(channels, 2)`` float (row, column) offsets in pixels from the cell's
        nominal centre (cell ``i`` of a grid ``k`` pixels smaller than the image
        is centred on pixel ``i + k / 2``).
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    in_channels = int(image_shape[2]) if len(image_shape) > 2 else 1
    blank = np.zeros((1, height, width, in_channels), dtype="float32")
    reference = keras.ops.convert_to_numpy(core(blank, training=False))[0]
    grid_h, grid_w = reference.shape[:2]
    cell = (grid_h // 2, grid_w // 2)
    energy = np.zeros((height * width, reference.shape[-1]))
    pixels = np.arange(height * width)
    for sign in (1.0, -1.0):
        for start in range(0, pixels.size, 256):
            chunk = pixels[start : start + 256]
            probes = np.zeros((chunk.size, height * width, in_channels), dtype="float32")
            probes[np.arange(chunk.size), chunk, :] = sign * delta
            out = keras.ops.convert_to_numpy(core(probes.reshape(-1, height, width, in_channels), training=False))
            energy[chunk] += (out[:, cell[0], cell[1], :] - reference[cell]) ** 2
    # The energy map's peak, not its centroid: a kernel shifted against its
    # border is truncated, which would drag a centroid back to the middle.
    peaks = peak_positions(np.moveaxis(energy.reshape(height, width, -1), -1, 0))
    nominal = np.array(cell) + (np.array([height, width]) - np.array([grid_h, grid_w])) / 2.0
    return peaks - nominal
