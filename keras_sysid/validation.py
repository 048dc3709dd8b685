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


def check_poisson_targets(responses, name: str = "responses") -> None:
    """Refuses responses a Poisson-type loss cannot model: neurons whose mean is clearly negative.

    A Poisson likelihood's best rate for a neuron with a negative mean response
    is zero: such a neuron is fitted as silent, whatever it does, while the loss
    reports ever better values. Deconvolution leaves small negative values, and
    near-silent neurons may average slightly below zero; both are fine. A
    neuron is refused when its mean is below zero by more than a tenth of its
    standard deviation (baseline-subtracted or z-scored traces, ``y - 5``).
    Constant neurons carry nothing to fit and are not judged.

    Raises:
        ValueError: naming how many neurons, the worst one, and what to do.
    """
    array = _as_checkable_array(responses)
    if array is None or array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        return
    means = array.mean(axis=0, dtype="float64")
    stds = array.std(axis=0, dtype="float64")
    negative = np.flatnonzero((stds > 0) & (means < -0.1 * stds))
    if negative.size:
        worst = int(negative[np.argmin(means[negative] / stds[negative])])
        raise ValueError(
            f"{name}: {negative.size} of {array.shape[1]} neurons have a negative mean response (neuron {worst}: "
            f"mean {means[worst]:.3g}, std {stds[worst]:.3g}). A Poisson loss needs responses that are non-negative "
            "on average (small negative values are fine) and fits such neurons as silent. If they are "
            "baseline-subtracted (dF/F, z-scored), shift each neuron to be non-negative, e.g. "
            "responses - responses.min(axis=0), or compile the model with another loss."
        )


# A batch whose standardised pixels have a mean beyond this many training stds,
# or a spread this many times smaller or larger than in training, is almost
# surely on another scale (0..1 images for a model fitted on 0..255 ones:
# spread ratio 1/255). Natural-image batches stay far inside.
_OFF_SCALE_MEAN = 3.0
_OFF_SCALE_SPREAD = 10.0


def warn_if_off_scale(images, image_mean: float, image_std: float, name: str = "images") -> None:
    """Warns when images are far outside the statistics a model was fitted with.

    A model standardises its input with the training images' mean and std; images on
    another scale (0..1 for a model fitted on 0..255) give every prediction wrong,
    silently. Nothing is checked for a model with the default statistics (0, 1),
    which does not know its training images' scale.
    """
    if image_mean == 0.0 and image_std == 1.0:
        return
    array = _as_checkable_array(images)
    if array is None or array.size == 0 or not np.issubdtype(array.dtype, np.number):
        return
    mean, std = float(array.mean(dtype="float64")), float(array.std(dtype="float64"))
    mean_shift = abs(mean - image_mean) / image_std
    spread = std / image_std
    # A blank (constant) screen is a legitimate stimulus; judge it by its level only.
    off_spread = std > 0 and not 1.0 / _OFF_SCALE_SPREAD < spread < _OFF_SCALE_SPREAD
    if mean_shift > _OFF_SCALE_MEAN or off_spread:
        import warnings

        warnings.warn(
            f"{name} have mean {mean:.3g} and std {std:.3g}, but this model was fitted on images with mean "
            f"{image_mean:.3g} and std {image_std:.3g}: on another scale every prediction is wrong. Give the images "
            "in the units the model was fitted on (e.g. 0..255, not 0..1).",
            UserWarning,
            # user -> predict/fit/evaluate -> _checked -> _check_arrays -> here
            stacklevel=5,
        )


def as_model_inputs(x, input_names, image_shape=None):
    """A list or tuple of per-input arrays as the model's input; anything else unchanged.

    ``[images]`` becomes ``images``; ``[images, behavior, ...]`` (one array per
    name of ``input_names``, in order) becomes the dict Keras models with several
    inputs take. A list of single images ``(H, W, C)`` of one shape (the
    model's ``image_shape`` when there is only one) is stacked into
    ``(batch, H, W, C)``.
    """
    if not isinstance(x, (list, tuple)) or not x:
        return x
    arrays = [_as_checkable_array(item) for item in x]
    if any(array is None for array in arrays):
        return x
    if all(array.ndim == 3 for array in arrays) and len({array.shape for array in arrays}) == 1 and (
            len(arrays) > 1 or (image_shape is not None and arrays[0].shape == tuple(image_shape))):
        return np.stack(arrays)  # single images, one per list item
    if len(arrays) == 1:
        return arrays[0]  # e.g. [images]; check_images names what is wrong with it
    if arrays[0].ndim != 4:
        return x
    if len(arrays) != len(input_names):
        raise ValueError(
            f"Got a list of {len(arrays)} arrays; this model takes {len(input_names)} ({', '.join(input_names)}): "
            f"pass the images as one (batch, H, W, C) array{' or a dict with those keys' if len(input_names) > 1 else ''}."
        )
    return arrays[0] if len(arrays) == 1 else dict(zip(input_names, x))


def check_element_spec(dataset, input_shapes: dict, n_neurons: int, what: str = "data") -> None:
    """Checks a dataset's ``element_spec`` against a model's inputs and neuron count, before any batch is read.

    Args:
        dataset: A ``tf.data.Dataset`` of ``(inputs, responses)`` or of inputs
            alone; objects without an ``element_spec`` (generators) pass.
        input_shapes: ``{name: shape without the batch axis}`` the model takes.
        n_neurons: The model's neuron count.
        what: How to call the data in error messages.

    Raises:
        ValueError: the responses' neuron count or an input's shape differs.
    """
    spec = getattr(dataset, "element_spec", None)
    if spec is None:
        return
    inputs, responses = (spec[0], spec[1]) if isinstance(spec, tuple) and len(spec) >= 2 else (spec, None)

    def known(shape):
        return None if shape.rank is None else tuple(shape.as_list())

    if responses is not None and hasattr(responses, "shape"):
        shape = known(responses.shape)
        if shape is not None and shape[-1] is not None and shape[-1] != n_neurons:
            raise ValueError(f"{what} responses have {shape[-1]} neurons but the model predicts {n_neurons}.")
    named = inputs if isinstance(inputs, dict) else {"images": inputs}
    for name, expected in input_shapes.items():
        if name not in named or not hasattr(named[name], "shape"):
            continue
        shape = known(named[name].shape)
        # Only what the spec knows is compared: a pipeline of decoded files may not know its image size.
        if shape is not None and (len(shape) - 1 != len(expected) or any(
                d is not None and d != e for d, e in zip(shape[1:], expected))):
            raise ValueError(f"{what} {name} have shape {shape} per batch; the model takes (batch, {', '.join(map(str, expected))}).")


class CheckedArraysMixin:
    """``fit``, ``evaluate`` and ``predict`` that check their data before any work.

    Mixed into Keras models (before ``keras.Model``) that define
    ``_check_arrays(x, y, what)``, ``input_names``, ``input_shapes()`` and
    ``n_neurons``. A list of arrays is taken as the model's inputs in the
    order of ``input_names``; a ``tf.data`` dataset is checked by its
    ``element_spec``; ``fit`` also checks its ``validation_data`` and, for a
    Poisson-type loss, that the responses can be modelled by one.
    """

    def _checked(self, x, y, what):
        x = as_model_inputs(x, self.input_names, self.input_shapes()["images"])
        if is_array_like(x) or isinstance(x, dict):
            self._check_arrays(x, y, what)
        else:
            check_element_spec(x, self.input_shapes(), self.n_neurons, what)
        return x

    def fit(self, x=None, y=None, *args, **kwargs):
        x = self._checked(x, y, "training")
        from keras_sysid.losses import is_poisson_type  # here: losses imports Keras, this module only numpy

        if y is not None and is_poisson_type(getattr(self, "loss", None)):
            check_poisson_targets(y, "training responses")
        validation_data = kwargs.get("validation_data")
        if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2:
            kwargs["validation_data"] = (self._checked(validation_data[0], validation_data[1], "validation"),
                                         *validation_data[1:])
        elif validation_data is not None:
            self._checked(validation_data, None, "validation")
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        x = self._checked(x, y, "evaluation")
        return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        x = self._checked(x, None, "prediction")
        return super().predict(x, *args, **kwargs)
