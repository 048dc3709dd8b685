"""Checks of images and responses at the array boundary.

Every entry point that takes arrays (model ``fit``/``predict``/``evaluate``,
datasets, metrics) runs these first, so bad input fails with a ``ValueError``
that names the problem instead of a trace from deep inside a backend.
Inputs that are not arrays (``tf.data`` datasets, generators) pass unchecked.
"""

from __future__ import annotations

import numpy as np


def _as_checkable_array(values):
    """``values`` as a numpy array, or ``None`` if it is not array-like data."""
    if isinstance(values, np.ndarray):
        return values
    # Eager tensors of any backend have `shape` and `__array__`; datasets and
    # generators have neither and are left to the pipeline that made them.
    if isinstance(values, (list, tuple)) or (hasattr(values, "__array__") and hasattr(values, "shape")):
        try:
            return np.asarray(values)
        except (TypeError, ValueError):
            return None
    return None


def is_array_like(values) -> bool:
    """Whether ``values`` is an array, tensor or nested list (not a dataset or generator)."""
    return _as_checkable_array(values) is not None


def _check_finite_numbers(array: np.ndarray, name: str) -> None:
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{name} must be numeric; got dtype {array.dtype}.")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real-valued; got dtype {array.dtype}.")
    if np.issubdtype(array.dtype, np.floating):
        n_bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if n_bad:
            raise ValueError(f"{name} contain {n_bad} NaN or inf values.")


def check_images(images, image_shape=None, name: str = "images") -> int | None:
    """Checks a batch of images; returns the number of images.

    Args:
        images: ``(batch, H, W, C)`` array.
        image_shape: Expected ``(H, W, C)``, or ``None`` to accept any.
        name: How to call the array in error messages.

    Returns:
        The batch size, or ``None`` if ``images`` is not array-like (e.g. a
        ``tf.data.Dataset``) and so was not checked.

    Raises:
        ValueError: Wrong rank or shape, non-numeric dtype, NaN/inf, or empty.
    """
    array = _as_checkable_array(images)
    if array is None:
        return None
    if array.ndim != 4:
        hint = " (add a trailing channel axis: images[..., None])" if array.ndim == 3 else ""
        raise ValueError(f"{name} must have rank 4, (batch, height, width, channels); got shape {array.shape}{hint}.")
    if image_shape is not None and tuple(array.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"{name} must have shape (batch, {', '.join(map(str, image_shape))}); got {array.shape}."
        )
    if array.shape[0] == 0:
        raise ValueError(f"{name} are empty (0 images).")
    _check_finite_numbers(array, name)
    return int(array.shape[0])


def check_responses(responses, n_neurons: int | None = None, n_trials: int | None = None, name: str = "responses") -> None:
    """Checks a ``(trials, neurons)`` response matrix.

    Small negative values are accepted: deconvolved calcium traces have them.

    Raises:
        ValueError: Wrong rank, neuron count or trial count, NaN/inf, or empty.
    """
    array = _as_checkable_array(responses)
    if array is None:
        return
    if array.ndim != 2:
        raise ValueError(f"{name} must have rank 2, (trials, neurons); got shape {array.shape}.")
    if array.shape[0] == 0:
        raise ValueError(f"{name} are empty (0 trials).")
    if n_neurons is not None and array.shape[1] != n_neurons:
        raise ValueError(f"{name} have {array.shape[1]} neurons but the model predicts {n_neurons}.")
    if n_trials is not None and array.shape[0] != n_trials:
        raise ValueError(f"{name} have {array.shape[0]} trials but there are {n_trials} images.")
    _check_finite_numbers(array, name)


def check_trial_variables(values, n_variables: int, n_trials: int | None = None, name: str = "behavior") -> None:
    """Checks a ``(trials, variables)`` array of per-trial state (behaviour, pupil centre).

    Raises:
        ValueError: Not array-like, wrong rank, variable or trial count, NaN/inf.
    """
    array = _as_checkable_array(values)
    if array is None:
        raise ValueError(f"{name} must be an array of shape (trials, {n_variables}); got {type(values).__name__}.")
    if array.ndim != 2 or array.shape[1] != n_variables:
        raise ValueError(f"{name} must have shape (trials, {n_variables}); got {array.shape}.")
    if n_trials is not None and array.shape[0] != n_trials:
        raise ValueError(f"{name} have {array.shape[0]} trials but there are {n_trials} images.")
    _check_finite_numbers(array, name)


class CheckedArraysMixin:
    """``fit``, ``evaluate`` and ``predict`` that run ``self._check_arrays(x, y, what)`` first.

    Mixed into Keras models (before ``keras.Model``) that define
    ``_check_arrays``; ``fit`` also checks a ``validation_data`` tuple.
    """

    def fit(self, x=None, y=None, *args, **kwargs):
        self._check_arrays(x, y, "training")
        validation_data = kwargs.get("validation_data")
        if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2:
            self._check_arrays(validation_data[0], validation_data[1], "validation")
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check_arrays(x, y, "evaluation")
        return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_arrays(x, None, "prediction")
        return super().predict(x, *args, **kwargs)
