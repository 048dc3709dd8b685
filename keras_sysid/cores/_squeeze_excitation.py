"""Squeeze-and-excitation (Hu et al. 2018): channels re-weighted by a summary of the whole map."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_sysid")
class SqueezeExcitation(keras.layers.Layer):
    """Scales each channel by a gain computed from every channel's spatial mean.

    ``gain = sigmoid(W2 relu(W1 mean_hw(x)))``, ``y = x * gain``: a cheap,
    image-wide context signal (e.g. overall contrast) that a purely local
    convolution cannot see. ``W1`` maps ``C`` to ``max(1, C // reduction)`` units.

    Args:
        reduction: Bottleneck factor of the gain network.

    Input shape:
        ``(batch, height, width, channels)``.

    Output shape:
        Same as the input.

    Example:
        >>> SqueezeExcitation(reduction=16)(np.ones((2, 8, 8, 64), "float32")).shape
        (2, 8, 8, 64)
    """

    def __init__(self, reduction: int = 32, **kwargs):
        super().__init__(**kwargs)
        if int(reduction) < 1:
            raise ValueError(f"SqueezeExcitation: reduction must be >= 1; got {reduction}.")
        self.reduction = int(reduction)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        hidden = max(1, channels // self.reduction)
        self.squeeze = keras.layers.Dense(hidden, activation="relu", name="squeeze")
        self.excite = keras.layers.Dense(channels, activation="sigmoid", name="excite")
        self.squeeze.build((input_shape[0], channels))
        self.excite.build((input_shape[0], hidden))

    def call(self, x):
        summary = ops.mean(x, axis=(1, 2))
        gain = self.excite(self.squeeze(summary))
        return x * gain[:, None, None, :]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"reduction": self.reduction})
        return config
