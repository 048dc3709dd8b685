"""One digital-twin report per model: MEIs, gradient receptive fields and tuning of chosen neurons.

:func:`digital_twin_report` runs the three experiments with settings that make
them comparable (the gratings have the MEIs' contrast energy; tuning is
centred on each neuron's gradient receptive field) and :func:`write_report`
saves the arrays and a per-neuron table; ``tools/insilico.py`` is its command line.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os

import keras
import numpy as np

from keras_sysid.insilico._gradients import (
    checked_neurons,
    image_response_function,
    model_image_shape,
    model_image_statistics,
)
from keras_sysid.insilico.mei import MEIResult, contrast_norm, most_exciting_inputs
from keras_sysid.insilico.receptive_fields import GradientReceptiveFields, gradient_receptive_fields
from keras_sysid.insilico.tuning import GaborFit, TuningCurves, _evenly_spaced, fit_gabor, gratings, tuning_curves


@dataclasses.dataclass
class DigitalTwinReport:
    """What :func:`digital_twin_report` found for each neuron (all arrays in the order of ``neurons``).

    Attributes:
        neurons: ``(n,)`` output indices.
        meis: The MEIs (:class:`~keras_sysid.insilico.MEIResult`).
        receptive_fields: Gradient RFs at the mean image, their envelope fitted
            to local gradients at natural images when some were given.
        tuning: Tuning to gratings centred on each RF (:class:`~keras_sysid.insilico.TuningCurves`).
        gabor: Gabor fits of the MEIs (minus the background).
        best_natural_activation: ``(n,)`` the model's largest response to any
            of the natural images given (NaN without images).
        best_natural_index: ``(n,)`` which image that was (-1 without images).
        natural_norm: ``(n,)`` contrast norm of that image (NaN without images).
    """

    neurons: np.ndarray
    meis: MEIResult
    receptive_fields: GradientReceptiveFields
    tuning: TuningCurves
    gabor: GaborFit
    best_natural_activation: np.ndarray
    best_natural_index: np.ndarray
    natural_norm: np.ndarray

    def table(self) -> list[dict]:
        """One row per neuron: MEI and best natural activation, RF centre and size, tuning, Gabor fit."""
        rows = []
        for i, neuron in enumerate(self.neurons):
            rows.append({
                "neuron": int(neuron),
                "mei_activation": float(self.meis.activations[i]),
                "best_natural_activation": float(self.best_natural_activation[i]),
                "mei_to_natural_ratio": float(self.meis.activations[i] / self.best_natural_activation[i])
                if np.isfinite(self.best_natural_activation[i]) and self.best_natural_activation[i] > 0 else float("nan"),
                "best_natural_index": int(self.best_natural_index[i]),
                "rf_row": float(self.receptive_fields.center[i, 0]),
                "rf_col": float(self.receptive_fields.center[i, 1]),
                "rf_size": float(self.receptive_fields.size[i]),
                "rf_fit_r2": float(self.receptive_fields.r2[i]),
                "preferred_orientation_deg": float(np.degrees(self.tuning.preferred_orientation[i])),
                "preferred_spatial_frequency": float(self.tuning.preferred_spatial_frequency[i]),
                "osi": float(self.tuning.osi[i]),
                "mei_gabor_orientation_deg": float(np.degrees(self.gabor.orientation[i])),
                "mei_gabor_spatial_frequency": float(self.gabor.spatial_frequency[i]),
                "mei_gabor_r2": float(self.gabor.r2[i]),
            })
        return rows


def best_natural_images(model, neurons, images, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Each neuron's largest response to any of ``images``, and which image gave it: ``((n,), (n,))``."""
    respond = image_response_function(model)
    neurons = np.asarray(neurons)
    best = np.full(len(neurons), -np.inf)
    index = np.full(len(neurons), -1, dtype="int64")
    for begin in range(0, len(images), batch_size):
        chunk = np.asarray(images[begin:begin + batch_size], dtype="float32")
        responses = keras.ops.convert_to_numpy(respond(chunk))[:, neurons]
        top = responses.argmax(axis=0)
        values = responses[top, np.arange(len(neurons))]
        better = values > best
        best[better], index[better] = values[better], begin + top[better]
    return best, index


def grating_amplitude(norm: float, image_shape, background: float, pixel_range=None) -> float:
    """The amplitude of a full-field grating with contrast norm ``norm`` (a sinusoid's RMS is amplitude / sqrt 2),
    reduced if needed to stay inside ``pixel_range``."""
    amplitude = float(np.sqrt(2.0) * norm / np.sqrt(np.prod(image_shape)))
    if pixel_range is not None:
        amplitude = min(amplitude, background - pixel_range[0], pixel_range[1] - background)
    return amplitude


def digital_twin_report(
    model,
    neurons,
    images=None,
    *,
    norm: float | None = None,
    pixel_range=None,
    mei_steps: int = 1000,
    blur_sigma: float = 0.0,
    jitter: int = 0,
    orientations: int = 12,
    spatial_frequencies=(0.02, 0.04, 0.08, 0.16),
    phases: int = 8,
    grating_radius: float | None = None,
    batch_size: int = 128,
    seed: int = 0,
    verbose: int = 1,
    rf_images=None,
) -> DigitalTwinReport:
    """Runs MEIs, gradient receptive fields and tuning curves on chosen neurons.

    Args:
        model: Maps ``(batch, H, W, C)`` images in the data's units to ``(batch, N)`` responses.
        neurons: Output indices.
        images: Optional ``(T, H, W, C)`` natural images (the data's units): for
            each neuron's best natural image, and local gradient RFs.
        norm: MEI contrast budget; default: the natural images' mean contrast
            norm (so MEIs and images are compared at equal contrast), else the
            model's default (:func:`~keras_sysid.insilico.most_exciting_inputs`).
        pixel_range: ``(low, high)`` for MEIs and gratings; default the natural
            images' range when given.
        mei_steps: MEI setting: most gradient steps
            (``steps`` of :func:`~keras_sysid.insilico.most_exciting_inputs`).
        blur_sigma: MEI setting: Gaussian blur (pixels) of each gradient.
        jitter: MEI setting: largest random shift (pixels) at each step.
        orientations: Grating setting: the number of orientations.
        spatial_frequencies: Grating setting: cycles per pixel.
        phases: Grating setting: the number of phases.
        grating_radius: ``None``: full-field gratings; else masked, of this
            radius (pixels) around each neuron's RF centre.
        batch_size: Images per step.
        seed: MEI start seed.
        verbose: 1: progress lines and bars.
        rf_images: Natural images for the local gradient RFs (each costs one
            backward pass per neuron); default ``images``; an empty array:
            none, the RFs at the mean image only.

    Returns:
        A :class:`DigitalTwinReport`.
    """
    image_shape = model_image_shape(model)
    neurons = checked_neurons(model, neurons, image_shape)
    background = model_image_statistics(model)[0]
    if images is not None:
        images = np.asarray(images, dtype="float32")
        if images.ndim != 4 or images.shape[1:] != image_shape or not np.all(np.isfinite(images)):
            raise ValueError(f"images must be finite, of shape (n, {', '.join(map(str, image_shape))}); got {images.shape}.")
        if norm is None:
            norm = float(np.mean(contrast_norm(images, background)))
        if pixel_range is None:
            pixel_range = (float(images.min()), float(images.max()))

    # Grating settings are checked now, not after minutes of MEIs.
    gratings(image_shape[:2], _evenly_spaced(orientations, np.pi, "orientations"), spatial_frequencies,
             _evenly_spaced(phases, 2 * np.pi, "phases"), radius=grating_radius)

    def say(text):
        if verbose:
            print(text, flush=True)

    say(f"most exciting inputs of {len(neurons)} neurons (at most {mei_steps} steps)")
    meis = most_exciting_inputs(model, neurons, norm=norm, pixel_range=pixel_range, steps=mei_steps,
                                blur_sigma=blur_sigma, jitter=jitter, batch_size=batch_size, seed=seed, verbose=verbose)
    if rf_images is None:
        rf_images = images
    elif len(rf_images) == 0:
        rf_images = None  # asked for none: receptive fields at the mean image only
    else:
        rf_images = np.asarray(rf_images, dtype="float32")
    say("gradient receptive fields" + (f" (envelopes at {len(rf_images)} natural images)" if rf_images is not None else ""))
    receptive_fields = gradient_receptive_fields(model, neurons, images=rf_images, batch_size=batch_size, verbose=verbose)
    contrast = grating_amplitude(meis.norm, image_shape, background, pixel_range)
    say(f"tuning to gratings (amplitude {contrast:.3g} around {background:.3g})")
    tuning = tuning_curves(model, neurons, receptive_fields.center, orientations=orientations,
                           spatial_frequencies=spatial_frequencies, phases=phases, contrast=contrast,
                           background=background, radius=grating_radius, batch_size=batch_size * 2,
                           verbose=verbose, image_shape=image_shape)
    gabor = fit_gabor((meis.images - background).mean(axis=-1))  # several channels: their mean
    if images is not None:
        say(f"best of {len(images)} natural images per neuron")
        best, index = best_natural_images(model, neurons, images, batch_size * 2)
        natural = contrast_norm(images[index], background)
    else:
        best, index, natural = np.full(len(neurons), np.nan), np.full(len(neurons), -1), np.full(len(neurons), np.nan)
    return DigitalTwinReport(neurons, meis, receptive_fields, tuning, gabor, best, index, natural)


def write_report(report: DigitalTwinReport, folder: str, images=None) -> dict:
    """Writes a report's arrays (``.npy``) and per-neuron table (``neurons.csv``, ``neurons.json``).

    Files: ``meis.npy`` ``(n, H, W, C)`` in the order of ``report.neurons``,
    ``mei_trace.npy``, ``rf_maps.npy``, ``rf_energy.npy``,
    ``tuning_responses.npy`` ``(n, orientations, frequencies, phases)``,
    ``best_natural_images.npy`` (with ``images``), ``neurons.npy``.

    Returns:
        ``{name: path}`` of the files written.
    """
    os.makedirs(folder, exist_ok=True)
    arrays = {
        "neurons": report.neurons, "meis": report.meis.images, "mei_trace": report.meis.trace,
        "rf_maps": report.receptive_fields.maps, "rf_energy": report.receptive_fields.energy,
        "tuning_responses": report.tuning.responses,
    }
    if images is not None and np.all(report.best_natural_index >= 0):
        arrays["best_natural_images"] = np.asarray(images)[report.best_natural_index]
    paths = {}
    for name, array in arrays.items():
        paths[name] = os.path.join(folder, f"{name}.npy")
        np.save(paths[name], np.asarray(array))
    rows = report.table()
    paths["table_json"] = os.path.join(folder, "neurons.json")
    with open(paths["table_json"], "w") as file:
        json.dump({"orientations_deg": np.degrees(report.tuning.orientations).tolist(),
                   "spatial_frequencies": report.tuning.spatial_frequencies.tolist(),
                   "mei_norm": report.meis.norm, "background": report.meis.background, "neurons": rows}, file, indent=1)
    paths["table_csv"] = os.path.join(folder, "neurons.csv")
    with open(paths["table_csv"], "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return paths
