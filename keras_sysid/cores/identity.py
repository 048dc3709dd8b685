"""The identity core: the readout reads the (standardised) pixels themselves."""

from __future__ import annotations

import keras

from keras_sysid.cores.base import Core


@keras.saving.register_keras_serializable(package="keras_sysid")
class IdentityCore(Core):
    """No features: the readout reads the standardised image.

    With a dense readout this is a linear-nonlinear (LNP) model; with a mask
    readout, a per-neuron pixel filter.

    Input shape:
        ``(batch, height, width, channels)`` images.

    Output shape:
        The same.

    Example:
        >>> IdentityCore()(np.zeros((2, 36, 64, 1), "float32")).shape
        (2, 36, 64, 1)
    """

    type_name = "identity"

    def build(self, input_shape):
        self.check_image_shape(input_shape)

    def call(self, images, training=False):
        return images

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)
