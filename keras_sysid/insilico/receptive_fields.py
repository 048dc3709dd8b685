"""Gradient receptive fields: where, and to what, each neuron is sensitive around an image.

The gradient of a neuron's response with respect to the input image is the
linear filter the model applies at that image: at the mean (grey) image it is
the neuron's receptive field as a linear model would see it; at natural images
it is a local spike-triggered average. The envelope of its energy (squared
gradient, averaged over images) gives a centre and a size per neuron, from a
2-D Gaussian fitted by least squares.
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

# Beyond this many bytes, per-image gradient maps are refused: ask for fewer neurons or images.
_MAX_LOCAL_BYTES = 2 * 1024**3


@dataclasses.dataclass
class GradientReceptiveFields:
    """Gradient receptive fields of some neurons.

    Attributes:
        maps: ``(n_neurons, H, W, C)`` response gradient at the background
            (mean grey) image, in response units per pixel unit.
        energy: ``(n_neurons, H, W)`` the envelope fitted: squared gradient summed
            over channels, at the background, or averaged over the natural
            images given (local spike-triggered averages).
        center: ``(n_neurons, 2)`` (row, column) of the fitted Gaussian, pixels.
        size: ``(n_neurons,)`` its standard deviation, pixels.
        r2: ``(n_neurons,)`` fraction of the energy map's variance the Gaussian explains.
        neurons: ``(n_neurons,)`` output indices, in the order given.
    """

    maps: np.ndarray
    energy: np.ndarray
    center: np.ndarray
    size: np.ndarray
    r2: np.ndarray
    neurons: np.ndarray


def gradient_maps(model, neurons, images, batch_size: int = 128) -> np.ndarray:
    """Each neuron's response gradient at each image (local spike-triggered averages).

    Args:
        model: Maps ``(batch, H, W, C)`` images to ``(batch, N)`` responses.
        neurons: Output indices.
        images: ``(T, H, W, C)`` images in the data's units.
        batch_size: Gradients computed together.

    Returns:
        ``(n_neurons, T, H, W, C)`` float32.

    Raises:
        ValueError: unknown neuron, images of the wrong shape or non-finite,
            or a result over 2 GiB.
    """
    image_shape = model_image_shape(model)
    neurons = checked_neurons(model, neurons, image_shape)
    images = _checked_images(images, image_shape)
    size = len(neurons) * images.size * 4
    if size > _MAX_LOCAL_BYTES:
        raise ValueError(f"{len(neurons)} neurons x {len(images)} images of gradients would take {size / 1024**3:.1f} GiB; "
                         "ask for fewer neurons or images.")
    gradients_of = NeuronGradients(model)
    rows = np.repeat(neurons, len(images))
    tiled = np.tile(images, (len(neurons), 1, 1, 1))
    result = np.empty_like(tiled)
    for begin in range(0, len(rows), batch_size):
        part = slice(begin, begin + batch_size)
        result[part] = gradients_of(tiled[part], rows[part])[1]
    return result.reshape(len(neurons), len(images), *image_shape)


def gradient_receptive_fields(
    model, neurons, images=None, background: float | None = None, batch_size: int = 128, verbose: int = 0
) -> GradientReceptiveFields:
    """Gradient receptive fields at the mean image, and their envelope's centre and size.

    Args:
        model: Maps ``(batch, H, W, C)`` images in the data's units to ``(batch, N)`` responses.
        neurons: Output indices.
        images: Optional ``(T, H, W, C)`` natural images: the envelope is then
            fitted to the squared gradient averaged over them (local STAs),
            which sees a neuron's whole sensitive region even where the
            response is rectified at the mean image.
        background: Grey level of the mean image; default the model's ``image_mean``
            (an ensemble's members' mean; else 0).
        batch_size: Gradients computed together.
        verbose: 1: a progress bar over the natural images.

    Returns:
        A :class:`GradientReceptiveFields`.
    """
    image_shape = model_image_shape(model)
    neurons = checked_neurons(model, neurons, image_shape)
    background = float(model_image_statistics(model)[0] if background is None else background)
    gradients_of = NeuronGradients(model)
    grey = np.full((len(neurons), *image_shape), background, dtype="float32")
    maps = np.concatenate([gradients_of(grey[begin:begin + batch_size], neurons[begin:begin + batch_size])[1]
                           for begin in range(0, len(neurons), batch_size)])
    if images is None:
        energy = np.square(maps).sum(axis=-1)
    else:
        images = _checked_images(images, image_shape)
        energy = np.zeros((len(neurons), *image_shape[:2]), dtype="float64")
        progress = keras.utils.Progbar(len(images), unit_name="image") if verbose else None
        per_batch = max(1, batch_size // len(neurons)) if len(neurons) <= batch_size else 1
        for begin in range(0, len(images), per_batch):
            chunk = images[begin:begin + per_batch]
            rows = np.repeat(neurons, len(chunk))
            tiled = np.tile(chunk, (len(neurons), 1, 1, 1))
            local = np.concatenate([gradients_of(tiled[b:b + batch_size], rows[b:b + batch_size])[1]
                                    for b in range(0, len(rows), batch_size)])
            energy += np.square(local).sum(axis=-1).reshape(len(neurons), len(chunk), *image_shape[:2]).sum(axis=1)
            if progress is not None:
                progress.update(min(begin + per_batch, len(images)))
        energy /= len(images)
    center, size, r2 = fit_gaussian_envelope(energy)
    return GradientReceptiveFields(maps, energy.astype("float32"), center, size, r2, neurons)


def _checked_images(images, image_shape) -> np.ndarray:
    images = np.asarray(images, dtype="float32")
    if images.ndim != 4 or images.shape[1:] != tuple(image_shape) or len(images) == 0:
        raise ValueError(f"images must have shape (n, {', '.join(map(str, image_shape))}); got {images.shape}.")
    if not np.all(np.isfinite(images)):
        raise ValueError("images contain NaN or inf.")
    return images


def fit_gaussian_envelope(energy, iterations: int = 30) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fits ``amplitude * exp(-|x - center|^2 / (2 size^2)) + offset`` to each map by least squares.

    Started from the map's weighted moments (above its median, so a flat
    floor does not pull the centre to the middle), refined by
    Levenberg-Marquardt on all five parameters.

    Args:
        energy: ``(n, H, W)`` non-negative maps.
        iterations: Levenberg-Marquardt steps.

    Returns:
        ``(center (n, 2) (row, column), size (n,), r2 (n,))``; a map with no
        structure gets its moments' values and r2 0.
    """
    energy = np.asarray(energy, dtype="float64")
    n, height, width = energy.shape
    rows, cols = np.meshgrid(np.arange(height, dtype="float64"), np.arange(width, dtype="float64"), indexing="ij")
    rows, cols, flat = rows.ravel(), cols.ravel(), energy.reshape(n, -1)
    floor = np.median(flat, axis=1, keepdims=True)
    weights = np.maximum(flat - floor, 0.0)
    total = np.maximum(weights.sum(axis=1), 1e-300)
    row0, col0 = weights @ rows / total, weights @ cols / total
    spread = (weights * (np.square(rows - row0[:, None]) + np.square(cols - col0[:, None]))).sum(axis=1) / total
    # params: amplitude, row, column, log size, offset
    params = np.stack([flat.max(axis=1) - floor[:, 0], row0, col0,
                       np.log(np.sqrt(np.maximum(spread / 2.0, 0.25))), floor[:, 0]], axis=1)
    damping = np.full(n, 1e-2)

    def residuals(p):
        sigma2 = np.exp(2.0 * p[:, 3:4])
        squared = np.square(rows - p[:, 1:2]) + np.square(cols - p[:, 2:3])
        bump = np.exp(-squared / (2.0 * sigma2))
        return p[:, 0:1] * bump + p[:, 4:5] - flat, bump, squared, sigma2

    residual, bump, squared, sigma2 = residuals(params)
    cost = np.square(residual).sum(axis=1)
    for _ in range(iterations):
        amplitude = params[:, 0:1]
        jacobian = np.stack([
            bump,
            amplitude * bump * (rows - params[:, 1:2]) / sigma2,
            amplitude * bump * (cols - params[:, 2:3]) / sigma2,
            amplitude * bump * squared / sigma2,
            np.ones_like(bump),
        ], axis=2)  # (n, P, 5)
        normal = np.transpose(jacobian, (0, 2, 1)) @ jacobian
        gradient = np.einsum("npk,np->nk", jacobian, residual)
        diagonal = np.einsum("nkk->nk", normal)
        system = normal + damping[:, None, None] * np.eye(5) * np.maximum(diagonal, 1e-12)[:, :, None]
        step = np.linalg.solve(system, -gradient[:, :, None])[:, :, 0]
        trial = params + step
        trial_residual, trial_bump, trial_squared, trial_sigma2 = residuals(trial)
        trial_cost = np.square(trial_residual).sum(axis=1)
        better = np.isfinite(trial_cost) & (trial_cost < cost)
        params[better], cost[better] = trial[better], trial_cost[better]
        residual[better], bump[better] = trial_residual[better], trial_bump[better]
        squared[better], sigma2[better] = trial_squared[better], trial_sigma2[better]
        damping = np.where(better, damping / 3.0, damping * 4.0)
    variance = np.square(flat - flat.mean(axis=1, keepdims=True)).sum(axis=1)
    r2 = np.where(variance > 0, 1.0 - cost / np.maximum(variance, 1e-300), 0.0)
    center = np.clip(params[:, 1:3], [0.0, 0.0], [height - 1.0, width - 1.0])
    return center, np.exp(params[:, 3]), r2
