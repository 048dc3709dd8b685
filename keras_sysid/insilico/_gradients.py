"""Responses of chosen neurons and their gradients with respect to the input images, under any Keras backend.

Keras 3 has no backend-agnostic gradient call, so this module is the one
place that asks the backend: ``tf.GradientTape`` inside a ``tf.function``,
``jax.value_and_grad`` under ``jax.jit``, or PyTorch's autograd. The model
itself is called as a Keras layer, so any model mapping images to responses
works: a :class:`~keras_sysid.models.SystemIdentificationModel`, an
:class:`~keras_sysid.ensemble.Ensemble`, a plain ``keras.Sequential``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def _state_means(model) -> dict:
    """``{"behavior": (n,), "pupil_center": (n,)}`` training means of the state inputs a model takes."""
    means = {}
    for part in [model, *getattr(model, "members", [])]:
        for name, stats in (("behavior", getattr(part, "behavior_stats", None)),
                            ("pupil_center", getattr(part, "pupil_stats", None))):
            if stats is not None and name not in means:
                means[name] = np.asarray(stats["mean"], "float32")
    return means


def image_response_function(model):
    """``f(images) -> (batch, n_neurons)`` responses, in inference mode.

    A model that also takes the animal's state (behaviour, pupil centre) gets
    it fixed at its training mean, so in-silico experiments vary the image only.
    """
    names = tuple(getattr(model, "input_names", ("images",)))
    if len(names) == 1:
        return lambda images: model(images, training=False)
    means = _state_means(model)
    missing = [name for name in names[1:] if name not in means]
    if missing:
        raise ValueError(f"The model takes {missing} but states no training statistics to fix them at.")

    def respond(images):
        batch = ops.shape(images)[0]
        state = {name: ops.broadcast_to(ops.convert_to_tensor(means[name]), (batch, len(means[name])))
                 for name in names[1:]}
        return model({"images": images, **state}, training=False)

    return respond


class NeuronGradients:
    """One chosen neuron's response per image, and its gradient with respect to that image.

    Image ``b`` of a batch is scored by neuron ``neurons[b]``, so one backward
    pass gives many neurons' gradients at once (the model has no interaction
    between images in inference mode). Compiled once per backend and reused.

    Args:
        model: Maps ``(batch, H, W, C)`` images to ``(batch, n_neurons)`` responses.

    Example:
        >>> values, gradients = NeuronGradients(model)(images, neurons)   # (B,), (B, H, W, C)
    """

    def __init__(self, model):
        self.model = model
        respond = image_response_function(model)

        def chosen(images, neurons):
            responses = ops.cast(respond(images), "float32")
            return ops.take_along_axis(responses, ops.expand_dims(neurons, 1), axis=1)[:, 0]

        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            @tf.function(reduce_retracing=True)
            def step(images, neurons):
                with tf.GradientTape() as tape:
                    tape.watch(images)
                    values = chosen(images, neurons)
                    total = tf.reduce_sum(values)
                return values, tape.gradient(total, images)
        elif backend == "jax":
            import jax
            import jax.numpy as jnp

            def total(images, neurons):
                values = chosen(images, neurons)
                return jnp.sum(values), values

            gradient = jax.jit(jax.value_and_grad(total, has_aux=True))

            def step(images, neurons):
                (_, values), gradients = gradient(images, neurons)
                return values, gradients
        elif backend == "torch":
            import torch

            def step(images, neurons):
                images = images.detach().requires_grad_(True)
                values = chosen(images, neurons)
                (gradients,) = torch.autograd.grad(values.sum(), images)
                return values.detach(), gradients
        else:
            raise ValueError(f"No input gradients for the Keras backend {backend!r}.")
        self._step = step

    def __call__(self, images, neurons) -> tuple[np.ndarray, np.ndarray]:
        """``(values (B,), gradients (B, H, W, C))`` as numpy float32, for neuron ``neurons[b]`` on image ``b``."""
        images = ops.convert_to_tensor(np.asarray(images, "float32"))
        neurons = ops.convert_to_tensor(np.asarray(neurons, "int32"))
        values, gradients = self._step(images, neurons)
        return ops.convert_to_numpy(values).astype("float32"), ops.convert_to_numpy(gradients).astype("float32")


def output_size(model, image_shape) -> int:
    """How many neurons ``model`` predicts (one call on a blank image if it does not say)."""
    n_neurons = getattr(model, "n_neurons", None)
    if n_neurons is not None:
        return int(n_neurons)
    blank = np.zeros((1, *image_shape), "float32")
    return int(ops.shape(image_response_function(model)(blank))[-1])


def checked_neurons(model, neurons, image_shape) -> np.ndarray:
    """``neurons`` as an int array of valid output indices, or a ``ValueError`` naming the bad ones."""
    array = np.asarray(neurons)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"neurons must be a non-empty list of output indices; got {neurons!r}.")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"neurons must be integer indices; got dtype {array.dtype}.")
    n_neurons = output_size(model, image_shape)
    bad = array[(array < 0) | (array >= n_neurons)]
    if bad.size:
        raise ValueError(f"Unknown neuron index {bad.tolist()[:5]}: the model predicts {n_neurons} neurons (0..{n_neurons - 1}).")
    return array.astype("int64")


def model_image_shape(model) -> tuple[int, ...]:
    """``(H, W, C)`` of the images ``model`` takes."""
    shape = getattr(model, "image_shape", None)
    if shape is None:
        shape = getattr(model, "input_shape", None)
        if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
            shape = shape[0]
        shape = None if shape is None else tuple(shape[1:])
    if shape is None or len(shape) != 3:
        raise ValueError("Cannot tell the model's image shape; give a model with image_shape or a Keras input_shape.")
    return tuple(int(d) for d in shape)


def model_image_statistics(model) -> tuple[float, float]:
    """The image mean and std ``model`` standardises with, in the data's units.

    An :class:`~keras_sysid.ensemble.Ensemble` has none of its own: its
    members' means are used. A model that states none gets ``(0, 1)``.
    """
    parts = [model] if hasattr(model, "image_mean") else list(getattr(model, "members", []))
    parts = [part for part in parts if hasattr(part, "image_mean") and hasattr(part, "image_std")]
    if not parts:
        return 0.0, 1.0
    return float(np.mean([part.image_mean for part in parts])), float(np.mean([part.image_std for part in parts]))
