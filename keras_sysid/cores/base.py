"""The contract every core keeps, and the registry derived from it."""

from __future__ import annotations

from typing import ClassVar

import keras

from keras_sysid.registry import Registry

REGISTRY = Registry("core")


class Core(keras.layers.Layer):
    """Base class of cores: the shared *what* of a neural population.

    A core maps images ``(batch, H, W, C)`` to feature maps ``(batch, h, w,
    channels)`` that every neuron's readout reads. Every core keeps this
    contract:

    - ``build`` accepts a ``(batch, H, W, C)`` shape and raises a
      ``ValueError`` naming the problem otherwise (wrong rank, images too small).
    - ``compute_output_shape`` gives the feature maps' shape without running it.
    - ``call(images, training)``: batch statistics and dropout follow ``training``.
    - Its penalties are Keras regularizers on its weights (see
      :mod:`keras_sysid.regularizers`), so they reach the loss as layer losses.
    - ``get_config`` returns every constructor argument.

    A subclass sets a class attribute ``type_name`` (e.g. ``"stacked_conv2d"``);
    defining the class registers it, so ``build_model(core={"type": ...})``
    and :func:`keras_sysid.cores.get` find it. Decorate it with
    ``@keras.saving.register_keras_serializable(package="keras_sysid")``.
    Any Keras layer with this signature also works as a core when passed as
    a layer.
    """

    type_name: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "type_name" in cls.__dict__ and cls.type_name is not None:
            REGISTRY.add(cls)

    def check_image_shape(self, input_shape) -> tuple:
        """``input_shape`` as a tuple if it has rank 4, ``(batch, H, W, C)``, else a ``ValueError``."""
        if len(input_shape) != 4:
            raise ValueError(
                f"{type(self).__name__} expects images of shape (batch, height, width, channels); "
                f"got rank {len(input_shape)} shape {tuple(input_shape)}."
            )
        return tuple(input_shape)
