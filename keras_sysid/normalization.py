"""The statistics a model standardises its inputs with and scales its outputs by.

A model takes images, behaviour and pupil centre in the data's own units and
predicts responses in the data's own units; inside, it standardises the inputs
and scales each neuron's output. These functions compute those statistics from
training arrays, the same way for a ``static*-preproc0`` data set
(:class:`~keras_sysid.data.Recording`) and for one's own arrays
(:meth:`~keras_sysid.models.SystemIdentificationModel.adapt`).
"""

from __future__ import annotations

import numpy as np


def image_statistics(images) -> tuple[float, float]:
    """Mean and standard deviation over every pixel of ``(T, H, W, C)`` images.

    Raises:
        ValueError: the images are constant (no standard deviation to divide by).
    """
    images = np.asarray(images)
    mean, std = float(images.mean(dtype="float64")), float(images.std(dtype="float64"))
    if not std > 0:
        raise ValueError(f"The images are constant (every pixel {mean:g}); they cannot be standardised.")
    return mean, std


def response_scale(responses) -> np.ndarray:
    """Per-neuron scale for training, ``(N,)`` float32: each neuron's response std over ``(T, N)`` responses.

    Responses of different neurons differ in scale by orders of magnitude
    (deconvolved calcium traces), and a Poisson loss summed over neurons would
    be ruled by the largest. Dividing by each neuron's std gives every neuron a
    comparable say, as Lurz et al. (2021) do. The mean is not subtracted: a
    Poisson loss needs non-negative targets. Neurons with a std below 1% of the
    median std are scaled by that floor instead, so a silent neuron is not
    blown up.
    """
    std = np.asarray(responses).std(axis=0, dtype="float64")
    floor = 0.01 * float(np.median(std)) if np.any(std > 0) else 1.0
    return np.maximum(std, max(floor, 1e-12)).astype("float32")


def variable_stats(values) -> dict:
    """``{"mean", "std"}`` per column of ``(trials, variables)``, as ``build_model`` takes them.

    A constant column gets ``std`` 1, so it standardises to zero instead of dividing by zero.
    """
    values = np.asarray(values, dtype="float64")
    if values.ndim != 2 or len(values) == 0:
        raise ValueError(f"variable_stats needs a non-empty (trials, variables) array; got shape {values.shape}.")
    if not np.all(np.isfinite(values)):
        raise ValueError("variable_stats: the values contain NaN or inf.")
    std = values.std(axis=0)
    return {"mean": values.mean(axis=0).tolist(), "std": np.where(std > 0, std, 1.0).tolist()}
