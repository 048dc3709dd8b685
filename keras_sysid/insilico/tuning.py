"""Classic tuning experiments in silico: gratings, orientation and spatial-frequency
tuning curves of a model's neurons, and Gabor fits of images (e.g. MEIs).

The model is anything that maps images ``(batch, H, W, C)`` float32, in the
units of the data it was trained on, to responses ``(batch, n_neurons)``: a
Keras model (called through ``predict``) or any other callable. Stimuli are
made and analysed in numpy, so this works with every Keras backend.

Conventions (shared by :func:`gratings`, :func:`tuning_curves` and
:func:`fit_gabor`):

- Pixel positions are ``(row, col)``, row 0 at the top of the image.
- For the maths, ``x = col - center_col`` points right and
  ``y = -(row - center_row)`` points up, so angles increase counter-clockwise
  as the image is seen.
- An orientation ``theta`` in radians, in ``[0, pi)``, is the orientation of
  the bars: 0 = vertical bars (luminance varies along the columns, x),
  ``pi/2`` = horizontal bars (luminance varies along the rows). The luminance
  varies along ``(cos theta, sin theta)``, perpendicular to the bars.
- Spatial frequency is in cycles per pixel.
- Phase is in radians, relative to the centre: a grating (or a Gabor's
  carrier) is ``cos(2 pi f (x cos theta + y sin theta) + phase)``, so its value
  at the centre is ``cos(phase)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import numpy as np

# Grid of fit_gabor's initial search: 5-degree orientation steps; frequencies from
# one cycle per image to Nyquist in ~12% steps (for 32-pixel images); envelope
# widths around the energy-moment estimate, which a low-frequency carrier biases.
_GRID_ORIENTATIONS = 36
_GRID_FREQUENCIES = 24
_GRID_SIGMA_SCALES = (0.7, 1.0, 1.4)
_MAX_ITERATIONS = 100
_MIN_SIGMA = 0.3


# -- stimuli --------------------------------------------------------------------


def _values(values, name: str, positive: bool = False) -> np.ndarray:
    """``values`` as a non-empty, finite 1-D float64 array (a scalar becomes one value)."""
    try:
        array = np.asarray(values, dtype="float64")
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers; got {values!r}.") from None
    if array.ndim == 0:
        array = array[None]
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array; got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite; got {array}.")
    if positive and np.any(array <= 0):
        raise ValueError(f"{name} must be > 0; got {array}.")
    return array


def _evenly_spaced(values, period: float, name: str) -> np.ndarray:
    """An int ``n`` -> ``n`` values evenly spaced in ``[0, period)``; an array -> checked."""
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        if values < 1:
            raise ValueError(f"{name} must be >= 1 when given as a count; got {values}.")
        return np.arange(int(values)) * (period / int(values))
    return _values(values, name)


def _image_shape(image_shape) -> tuple[int, int, int]:
    shape = tuple(int(size) for size in image_shape)
    if len(shape) == 2:
        shape = shape + (1,)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (H, W) or (H, W, C) of positive sizes; got {tuple(image_shape)}.")
    return shape


def _center(center, height: int, width: int) -> np.ndarray:
    if center is None:
        return np.array([(height - 1) / 2, (width - 1) / 2])
    array = np.asarray(center, dtype="float64")
    if array.shape != (2,) or not np.all(np.isfinite(array)):
        raise ValueError(f"center must be a finite (row, col); got {center!r}.")
    return array


def _aperture(distance: np.ndarray, radius: float, edge: float) -> np.ndarray:
    """1 within ``radius``, a raised cosine falling to 0 over ``edge`` pixels, 0 beyond."""
    if edge == 0:
        return (distance <= radius).astype("float64")
    ramp = np.clip((distance - radius) / edge, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * ramp))


def gratings(
    image_shape,
    orientations,
    spatial_frequencies,
    phases,
    center=None,
    radius: float | None = None,
    edge: float = 2.0,
) -> np.ndarray:
    """Sinusoidal gratings of unit amplitude, every orientation x frequency x phase.

    See the module docstring for the orientation, frequency and phase
    conventions.

    Args:
        image_shape: ``(H, W)`` or ``(H, W, C)``; every channel gets the same grating.
        orientations: ``(n_orientations,)`` bar orientations in radians.
        spatial_frequencies: ``(n_sf,)`` cycles per pixel, > 0.
        phases: ``(n_phases,)`` radians, relative to ``center``.
        center: ``(row, col)`` in pixels (fractional allowed): the phase
            reference and the aperture's centre. Default: the image centre
            ``((H - 1) / 2, (W - 1) / 2)``.
        radius: None for a full-field grating; else the radius in pixels of a
            circular aperture around ``center``, outside which the value is 0.
        edge: Width in pixels of the aperture's raised-cosine edge, which
            starts at ``radius`` (so the value is 0 beyond ``radius + edge``);
            0 for a hard edge. Ignored without ``radius``.

    Returns:
        ``(n_orientations, n_sf, n_phases, H, W, C)`` float32 in ``[-1, 1]``.
    """
    height, width, channels = _image_shape(image_shape)
    orientations = _values(orientations, "orientations")
    frequencies = _values(spatial_frequencies, "spatial_frequencies", positive=True)
    phases = _values(phases, "phases")
    center_row, center_col = _center(center, height, width)
    if radius is not None and not (np.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a finite number > 0 (or None for full field); got {radius!r}.")
    if not (np.isfinite(edge) and edge >= 0):
        raise ValueError(f"edge must be a finite number >= 0; got {edge!r}.")

    x = (np.arange(width) - center_col)[None, :]
    y = -(np.arange(height) - center_row)[:, None]  # up is positive: angles turn counter-clockwise
    # Position along the direction of variation, (n_orientations, H, W).
    along = x * np.cos(orientations)[:, None, None] + y * np.sin(orientations)[:, None, None]
    argument = (
        2 * np.pi * frequencies[None, :, None, None, None] * along[:, None, None]
        + phases[None, None, :, None, None]
    )
    values = np.cos(argument)
    if radius is not None:
        values = values * _aperture(np.hypot(x, y), float(radius), float(edge))
    return np.repeat(values[..., None], channels, axis=-1).astype("float32")


# -- tuning curves ----------------------------------------------------------------


def orientation_selectivity(curve, orientations) -> tuple[np.ndarray, np.ndarray]:
    """Preferred orientation and global orientation selectivity of tuning curves.

    With ``r_k`` the responses at orientations ``theta_k`` shifted up by
    ``-min(0, min_k r_k)`` (so a curve dipping below zero has its minimum at 0,
    and a non-negative one is left as is), ``z = sum_k r_k exp(2i theta_k)``;
    the preferred orientation is ``angle(z) / 2`` mapped to ``[0, pi)`` and the
    OSI is ``|z| / sum_k r_k`` ("global OSI", 1 - circular variance): 0 for a
    flat curve, 1 for a response at one orientation only. Orientations should be
    evenly spaced over ``[0, pi)``, or a flat curve gets OSI > 0. A curve that
    is 0 everywhere gets OSI 0 and preferred orientation 0.

    Args:
        curve: ``(n, n_orientations)`` responses.
        orientations: ``(n_orientations,)`` radians.

    Returns:
        ``(preferred, osi)``, each ``(n,)`` float64; ``preferred`` in ``[0, pi)``.
    """
    orientations = _values(orientations, "orientations")
    curve = np.asarray(curve, dtype="float64")
    if curve.ndim != 2 or curve.shape[1] != len(orientations):
        raise ValueError(
            f"curve must be (n, n_orientations={len(orientations)}); got shape {curve.shape}."
        )
    if not np.all(np.isfinite(curve)):
        raise ValueError("curve must be finite.")
    shifted = curve - np.minimum(0.0, curve.min(axis=1, keepdims=True))
    vector = shifted @ np.exp(2j * orientations)
    total = shifted.sum(axis=1)
    osi = np.where(total > 0, np.abs(vector) / np.where(total > 0, total, 1.0), 0.0)
    preferred = np.mod(np.angle(vector) / 2, np.pi)
    preferred = np.where(preferred >= np.pi, 0.0, preferred)  # mod can round up to pi
    return preferred, osi


def _best_frequency_index(phase_averaged: np.ndarray) -> np.ndarray:
    """``(n, n_orientations, n_sf)`` -> ``(n,)``: the frequency whose best orientation drives most."""
    return phase_averaged.max(axis=1).argmax(axis=1)


@dataclasses.dataclass
class TuningCurves:
    """Responses of neurons to gratings and what they say about tuning.

    Attributes:
        responses: ``(n_neurons, n_orientations, n_sf, n_phases)`` model responses.
        orientations: ``(n_orientations,)`` radians.
        spatial_frequencies: ``(n_sf,)`` cycles per pixel.
        phases: ``(n_phases,)`` radians.
        preferred_orientation: ``(n_neurons,)`` radians in ``[0, pi)``, from the
            orientation curve at the preferred frequency
            (:func:`orientation_selectivity`).
        preferred_spatial_frequency: ``(n_neurons,)`` the frequency whose most
            effective orientation gives the largest phase-averaged response.
        osi: ``(n_neurons,)`` global orientation selectivity index in ``[0, 1]``.
        neurons: ``(n_neurons,)`` the model's output columns, in the order asked.
    """

    responses: np.ndarray
    orientations: np.ndarray
    spatial_frequencies: np.ndarray
    phases: np.ndarray
    preferred_orientation: np.ndarray
    preferred_spatial_frequency: np.ndarray
    osi: np.ndarray
    neurons: np.ndarray

    def orientation_curve(self) -> np.ndarray:
        """Phase-averaged responses at each neuron's preferred spatial frequency.

        Returns:
            ``(n_neurons, n_orientations)``.
        """
        phase_averaged = np.asarray(self.responses).mean(axis=-1)  # (n, n_orientations, n_sf)
        frequencies = np.asarray(self.spatial_frequencies)
        index = np.abs(frequencies[None, :] - np.asarray(self.preferred_spatial_frequency)[:, None]).argmin(axis=1)
        return phase_averaged[np.arange(len(index)), :, index]


def _predict(model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """``(batch, n_outputs)`` float64 responses of ``model`` to ``images``."""
    if len(tuple(getattr(model, "input_names", ("images",)))) > 1:
        # A model that also takes the animal's state sees it at its training mean.
        from keras_sysid.insilico._gradients import image_response_function

        model = image_response_function(model)
    if hasattr(model, "predict"):
        outputs = np.asarray(model.predict(images, batch_size=batch_size, verbose=0))
    else:
        # Batched like predict, so a plain callable never sees more than batch_size images.
        outputs = np.concatenate(
            [keras.ops.convert_to_numpy(model(images[start : start + batch_size]))
             for start in range(0, len(images), batch_size)]
        )
    if outputs.ndim != 2 or len(outputs) != len(images):
        raise ValueError(
            f"The model must map images (batch, H, W, C) to responses (batch, n_neurons); "
            f"got {outputs.shape} for {images.shape}."
        )
    return outputs.astype("float64")


def _model_image_shape(model, image_shape) -> tuple[int, int, int]:
    if image_shape is not None:
        return _image_shape(image_shape)
    # A Keras model with one image input says (None, H, W, C); one with several
    # inputs gives a list or dict, and a subclassed model may have no input_shape.
    # keras_sysid's models and ensembles name theirs in input_shapes()["images"].
    try:
        shape = model.input_shape
    except (AttributeError, ValueError, TypeError, RuntimeError):  # unbuilt or subclassed
        shape = None
    if shape is None and callable(getattr(model, "input_shapes", None)):
        shape = (None,) + tuple(model.input_shapes().get("images", ()))
    if (
        isinstance(shape, tuple)
        and len(shape) == 4
        and all(isinstance(size, (int, np.integer)) for size in shape[1:])
    ):
        return _image_shape(shape[1:])
    raise ValueError(
        f"Cannot tell the image shape from the model (input_shape {shape!r}); pass image_shape=(H, W, C)."
    )


def _finite_number(value, name: str, channels: int) -> np.ndarray:
    """A scalar, or one value per channel ``(C,)``, as float64 broadcastable to ``(H, W, C)``."""
    try:
        array = np.asarray(value, dtype="float64")
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number; got {value!r}.") from None
    if array.shape not in ((), (channels,)):
        raise ValueError(f"{name} must be a number or one per channel ({channels},); got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite; got {value!r}.")
    return array


def tuning_curves(
    model,
    neurons: Sequence[int],
    centers=None,
    *,
    orientations=12,
    spatial_frequencies=(0.02, 0.04, 0.08, 0.16),
    phases=8,
    contrast=1.0,
    background=0.0,
    radius: float | None = None,
    batch_size: int = 256,
    verbose: int = 0,
    image_shape=None,
) -> TuningCurves:
    """Orientation and spatial-frequency tuning of neurons, measured with gratings.

    Each neuron sees ``background + contrast * grating`` for every orientation,
    spatial frequency and phase, the grating centred (phase reference and, with
    ``radius``, aperture) on the neuron's receptive-field centre. Responses are
    averaged over phase; the preferred spatial frequency is the one whose most
    effective orientation drives the neuron most; the preferred orientation and
    OSI come from the orientation curve at that frequency
    (:func:`orientation_selectivity`).

    Args:
        model: A Keras model (called as ``model.predict(x, batch_size=...,
            verbose=0)``) or a callable mapping images ``(batch, H, W, C)`` to
            responses ``(batch, n_outputs)``. A keras_sysid model that also
            takes the animal's state gets it at its training mean.
        neurons: Output columns to measure, in the order wanted.
        centers: ``(n_neurons, 2)`` receptive-field centres ``(row, col)`` in
            pixels, one per entry of ``neurons``; None for the image centre.
        orientations: A count ``n`` (``n`` orientations evenly spaced in
            ``[0, pi)``) or an array of radians.
        spatial_frequencies: Cycles per pixel, > 0.
        phases: A count ``n`` (evenly spaced in ``[0, 2 pi)``) or an array of radians.
        contrast: Grating amplitude in data units (e.g. the training images'
            std); a number or one per channel.
        background: Mean luminance in data units (e.g. the training images'
            mean); a number or one per channel.
        radius: None for full-field gratings; else an aperture radius in pixels
            (see :func:`gratings`).
        batch_size: Images per model call.
        verbose: Show a progress bar (over neurons) when truthy.
        image_shape: ``(H, W)`` or ``(H, W, C)``; needed only when the model has
            no single ``input_shape`` (e.g. dict inputs, a plain callable).

    Returns:
        :class:`TuningCurves` with ``responses`` ``(n_neurons, n_orientations,
        n_sf, n_phases)``.

    Raises:
        ValueError: For an empty ``neurons``, an index outside the model's
            outputs, ``centers`` not ``(n_neurons, 2)``, a non-finite contrast or
            background, or bad orientations, frequencies or phases; all before the
            stimuli are shown.
    """
    height, width, channels = _model_image_shape(model, image_shape)
    neuron_array = np.asarray(neurons)
    if neuron_array.ndim == 0:
        neuron_array = neuron_array[None]
    if neuron_array.ndim != 1 or neuron_array.size == 0:
        raise ValueError(f"neurons must be a non-empty sequence of output indices; got {neurons!r}.")
    if neuron_array.dtype.kind not in "iu":
        raise ValueError(f"neurons must be integer output indices; got {neurons!r}.")
    neuron_array = neuron_array.astype("int64")
    if centers is None:
        center_array = np.tile([(height - 1) / 2, (width - 1) / 2], (len(neuron_array), 1))
    else:
        center_array = np.asarray(centers, dtype="float64")
        if center_array.shape != (len(neuron_array), 2):
            raise ValueError(
                f"centers must be (n_neurons, 2) = ({len(neuron_array)}, 2) (row, col) per neuron; "
                f"got shape {center_array.shape}."
            )
        if not np.all(np.isfinite(center_array)):
            raise ValueError("centers must be finite.")
    contrast = _finite_number(contrast, "contrast", channels)
    background = _finite_number(background, "background", channels)
    orientations = _evenly_spaced(orientations, np.pi, "orientations")
    frequencies = _values(spatial_frequencies, "spatial_frequencies", positive=True)
    phases = _evenly_spaced(phases, 2 * np.pi, "phases")
    if radius is not None and not (np.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a finite number > 0 (or None for full field); got {radius!r}.")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")

    blank = np.broadcast_to(background, (1, height, width, channels)).astype("float32")
    n_outputs = _predict(model, blank, int(batch_size)).shape[1]
    bad = neuron_array[(neuron_array < 0) | (neuron_array >= n_outputs)]
    if bad.size:
        raise ValueError(
            f"Unknown neuron index {bad.tolist()}: the model has {n_outputs} outputs (0..{n_outputs - 1})."
        )

    shape = (len(orientations), len(frequencies), len(phases))
    responses = np.zeros((len(neuron_array),) + shape)
    # Neurons that share a centre see the same stimuli (always so for centers=None): one pass each.
    unique_centers, group_of = np.unique(center_array, axis=0, return_inverse=True)
    group_of = np.asarray(group_of).reshape(-1)
    progress = keras.utils.Progbar(len(neuron_array), unit_name="neuron", verbose=verbose) if verbose else None
    for group, center in enumerate(unique_centers):
        members = np.flatnonzero(group_of == group)
        stimuli = gratings((height, width, channels), orientations, frequencies, phases, center=center, radius=radius)
        stimuli = (background + contrast * stimuli.reshape((-1, height, width, channels))).astype("float32")
        outputs = _predict(model, stimuli, int(batch_size))[:, neuron_array[members]]
        responses[members] = np.moveaxis(outputs.reshape(shape + (len(members),)), -1, 0)
        if progress is not None:
            progress.add(len(members))

    phase_averaged = responses.mean(axis=-1)
    best = _best_frequency_index(phase_averaged)
    curve = phase_averaged[np.arange(len(best)), :, best]
    preferred, osi = orientation_selectivity(curve, orientations)
    return TuningCurves(
        responses=responses,
        orientations=orientations,
        spatial_frequencies=frequencies,
        phases=phases,
        preferred_orientation=preferred,
        preferred_spatial_frequency=frequencies[best],
        osi=osi,
        neurons=neuron_array,
    )


# -- Gabor fits ------------------------------------------------------------------------


@dataclasses.dataclass
class GaborFit:
    """Gabor functions fitted to images, one per image.

    The Gabor is ``amplitude * exp(-d^2 / (2 sigma^2)) * cos(2 pi f (x cos
    theta + y sin theta) + phase)`` with ``d`` the distance to ``center``, in the
    conventions of the module docstring (so ``orientation`` is that of the
    carrier's bars, as in :func:`gratings`). Parameters are NaN for an image
    without variance.

    Attributes:
        center: ``(n, 2)`` envelope centre ``(row, col)`` in pixels.
        orientation: ``(n,)`` radians in ``[0, pi)``.
        spatial_frequency: ``(n,)`` cycles per pixel.
        phase: ``(n,)`` radians in ``[0, 2 pi)``, relative to ``center``.
        sigma: ``(n,)`` standard deviation of the isotropic envelope, pixels.
        amplitude: ``(n,)`` > 0.
        r2: ``(n,)`` fraction of the image's variance (about its mean) the fit explains.
    """

    center: np.ndarray
    orientation: np.ndarray
    spatial_frequency: np.ndarray
    phase: np.ndarray
    sigma: np.ndarray
    amplitude: np.ndarray
    r2: np.ndarray


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of ``(H, W)`` with reflecting borders."""
    radius = max(1, int(round(3 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(image, pad, mode="reflect" if image.shape[axis] > radius else "edge")
        image = sum(
            weight * np.take(padded, np.arange(shift, shift + image.shape[axis]), axis=axis)
            for shift, weight in enumerate(kernel)
        )
    return image


def _envelope_moments(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[float, float, float]:
    """Envelope ``(row, col, sigma)`` from the moments of the image's smoothed energy.

    The energy ``image^2`` of a Gabor is its squared envelope (sd ``sigma / sqrt 2``)
    times ``cos^2`` of the carrier, whose ripple smoothing and the moments average
    out. The median energy is subtracted so that noise spread over the image
    does not pull the centre to the middle, and the moments are recomputed in a
    window around the current estimate for the same reason.
    """
    smoothing = 1.5
    energy = _blur(image**2, smoothing)
    energy = np.clip(energy - np.median(energy), 0.0, None)
    if not energy.sum() > 0:
        energy = image**2
    weights = energy
    sigma = max(image.shape) / 4
    for _ in range(4):
        total = weights.sum()
        if not total > 0:
            break
        row = (weights * rows).sum() / total
        col = (weights * cols).sum() / total
        variance = (weights * ((rows - row) ** 2 + (cols - col) ** 2)).sum() / (2 * total)
        sigma = float(np.sqrt(2 * max(variance - smoothing**2, 0.25)))
        weights = energy * (np.hypot(rows - row, cols - col) <= 3 * sigma + 2)
    return float(row), float(col), sigma


def _gabor_and_jacobian(params: np.ndarray, rows: np.ndarray, cols: np.ndarray):
    """Gabor values ``(P,)`` at flattened pixels and its Jacobian ``(P, 7)``.

    ``params = (row, col, orientation, frequency, phase, sigma, amplitude)``.
    """
    row, col, theta, frequency, phase, sigma, amplitude = params
    x = cols - col
    y = row - rows  # up is positive
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    along = x * cos_t + y * sin_t
    squared = x**2 + y**2
    envelope = np.exp(-squared / (2 * sigma**2))
    argument = 2 * np.pi * frequency * along + phase
    carrier, quadrature = np.cos(argument), np.sin(argument)
    value = amplitude * envelope * carrier
    minus_sine = -amplitude * envelope * quadrature  # d value / d argument
    jacobian = np.stack(
        [
            # d/d row: x fixed, d y / d row = 1.
            value * (-y / sigma**2) + minus_sine * 2 * np.pi * frequency * sin_t,
            # d/d col: d x / d col = -1.
            value * (x / sigma**2) - minus_sine * 2 * np.pi * frequency * cos_t,
            minus_sine * 2 * np.pi * frequency * (-x * sin_t + y * cos_t),
            minus_sine * 2 * np.pi * along,
            minus_sine,
            value * squared / sigma**3,
            envelope * carrier,
        ],
        axis=1,
    )
    return value, jacobian


def _grid_search(target, rows, cols, row, col, sigma, width) -> np.ndarray:
    """Best ``(row, col, theta, f, phase, sigma, amplitude)`` over a grid of carriers.

    For each orientation, frequency and envelope width, the cos/sin carrier
    pair times the envelope is fitted to ``target`` by linear least squares,
    which gives the amplitude and phase in closed form.
    """
    x = cols - col
    y = row - rows
    squared = x**2 + y**2
    frequencies = np.geomspace(1.0 / width, 0.5, _GRID_FREQUENCIES)
    best, best_explained = None, -np.inf
    for scale in _GRID_SIGMA_SCALES:
        envelope = np.exp(-squared / (2 * (scale * sigma) ** 2))
        for theta in np.arange(_GRID_ORIENTATIONS) * (np.pi / _GRID_ORIENTATIONS):
            argument = 2 * np.pi * frequencies[:, None] * (x * np.cos(theta) + y * np.sin(theta))[None, :]
            even, odd = envelope * np.cos(argument), envelope * np.sin(argument)
            ee, oo, eo = (even * even).sum(1), (odd * odd).sum(1), (even * odd).sum(1)
            et, ot = even @ target, odd @ target
            # Tiny ridge: at low frequency the odd basis all but vanishes.
            ridge = 1e-9 * (ee + oo) + 1e-300
            ee, oo = ee + ridge, oo + ridge
            determinant = ee * oo - eo**2
            a = (oo * et - eo * ot) / determinant
            b = (ee * ot - eo * et) / determinant
            explained = a * et + b * ot
            k = int(np.argmax(explained))
            if explained[k] > best_explained:
                best_explained = explained[k]
                # a cos + b sin = A cos(argument + phase) with A cos(phase) = a, A sin(phase) = -b.
                best = np.array(
                    [row, col, theta, frequencies[k], np.arctan2(-b[k], a[k]), scale * sigma, np.hypot(a[k], b[k])]
                )
    return best


def _refine(params, target, rows, cols) -> np.ndarray:
    """Levenberg-Marquardt on all seven parameters, from the grid's best."""
    value, jacobian = _gabor_and_jacobian(params, rows, cols)
    residual = target - value
    cost = residual @ residual
    damping = 1e-3
    for _ in range(_MAX_ITERATIONS):
        normal = jacobian.T @ jacobian
        gradient = jacobian.T @ residual
        while damping < 1e10:
            # Marquardt's scaling by the diagonal copes with parameters of very
            # different scales (pixels vs cycles per pixel).
            lhs = normal + damping * np.diag(np.diag(normal) + 1e-12)
            try:
                step = np.linalg.solve(lhs, gradient)
            except np.linalg.LinAlgError:
                damping *= 4
                continue
            trial = params + step
            if np.all(np.isfinite(trial)) and trial[5] > _MIN_SIGMA and 0 < trial[3] <= 1.0:
                trial_value, trial_jacobian = _gabor_and_jacobian(trial, rows, cols)
                trial_residual = target - trial_value
                trial_cost = trial_residual @ trial_residual
                if trial_cost < cost:
                    break
            damping *= 4
        else:
            break  # no step lowers the cost: at a minimum
        improvement = cost - trial_cost
        params, jacobian, residual, cost = trial, trial_jacobian, trial_residual, trial_cost
        damping = max(damping / 3, 1e-12)
        if improvement <= 1e-12 * max(cost, 1e-300) + 1e-30:
            break
    return params


def _canonical(params: np.ndarray) -> np.ndarray:
    """The same Gabor with amplitude > 0, orientation in [0, pi), phase in [0, 2 pi)."""
    row, col, theta, frequency, phase, sigma, amplitude = params
    if amplitude < 0:
        amplitude, phase = -amplitude, phase + np.pi
    theta = np.mod(theta, 2 * np.pi)
    if theta >= np.pi:
        # Turning the carrier by pi reverses the direction of variation: cos(-u + phase) = cos(u - phase).
        theta, phase = theta - np.pi, -phase
    if theta >= np.pi:
        theta = 0.0
    phase = np.mod(phase, 2 * np.pi)
    if phase >= 2 * np.pi:
        phase = 0.0
    return np.array([row, col, theta, frequency, phase, abs(sigma), amplitude])


def fit_gabor(images) -> GaborFit:
    """Fit a Gabor function to each image (e.g. an MEI minus the background).

    Method: the envelope's centre and width come from the moments of the
    smoothed energy ``image^2``; a grid search over orientation (36 values),
    spatial frequency (24 log-spaced from ``1 / max(H, W)`` to 0.5) and three
    envelope widths fits the carrier's amplitude and phase by linear least
    squares; Levenberg-Marquardt with the analytic Jacobian then refines all
    parameters (centre, orientation, frequency, phase, sigma, amplitude).
    The model has no offset: subtract the background first.

    Args:
        images: ``(n, H, W)`` or ``(n, H, W, 1)``.

    Returns:
        :class:`GaborFit` with ``(n,)`` fields (``center`` ``(n, 2)``), float64.
    """
    images = np.asarray(images, dtype="float64")
    if images.ndim == 4:
        if images.shape[-1] != 1:
            raise ValueError(f"fit_gabor needs single-channel images; got shape {images.shape}.")
        images = images[..., 0]
    if images.ndim != 3 or 0 in images.shape:
        raise ValueError(f"images must be (n, H, W) or (n, H, W, 1); got shape {images.shape}.")
    if not np.all(np.isfinite(images)):
        raise ValueError("images must be finite.")
    _, height, width = images.shape
    rows, cols = np.meshgrid(np.arange(height, dtype="float64"), np.arange(width, dtype="float64"), indexing="ij")
    flat_rows, flat_cols = rows.reshape(-1), cols.reshape(-1)

    fits, r2 = [], []
    for image in images:
        target = image.reshape(-1)
        total = ((target - target.mean()) ** 2).sum()
        if not total > 0:
            fits.append(np.full(7, np.nan))
            r2.append(np.nan)
            continue
        row, col, sigma = _envelope_moments(image, rows, cols)
        params = _grid_search(target, flat_rows, flat_cols, row, col, sigma, max(height, width))
        params = _canonical(_refine(params, target, flat_rows, flat_cols))
        residual = target - _gabor_and_jacobian(params, flat_rows, flat_cols)[0]
        fits.append(params)
        r2.append(1.0 - (residual @ residual) / total)
    fits = np.array(fits).reshape(-1, 7)
    return GaborFit(
        center=fits[:, :2],
        orientation=fits[:, 2],
        spatial_frequency=fits[:, 3],
        phase=fits[:, 4],
        sigma=fits[:, 5],
        amplitude=fits[:, 6],
        r2=np.array(r2, dtype="float64"),
    )
