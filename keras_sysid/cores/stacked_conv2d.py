"""The convolutional core of Klindt et al. (2017): conv, batch norm, ELU, stacked."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_sysid.cores.base import Core
from keras_sysid.regularizers import GroupSparsity, LaplacianSmoothness


def _as_per_layer(value, n_layers: int, name: str) -> list:
    if isinstance(value, (str, int, float)) or value is None:
        return [value] * n_layers
    values = list(value)
    if len(values) != n_layers:
        raise ValueError(
            f"StackedConv2DCore: `{name}` has {len(values)} entries but there are "
            f"{n_layers} layers (one per kernel size)."
        )
    return values


@keras.saving.register_keras_serializable(package="keras_sysid")
class StackedConv2DCore(Core):
    """A stack of conv layers with batch norm and ELU, as in Klindt et al. (2017).

    Each layer is ``Conv2D -> BatchNormalization -> activation``, except the last,
    which has no activation (the readout and output nonlinearity follow it). The
    first layer's kernels carry a :class:`LaplacianSmoothness` penalty; later
    layers carry a :class:`GroupSparsity` penalty. The paper's core is the
    default: kernels 13 (valid), 3 (same), 3 (same), 48 channels each.

    Args:
        channels: Channels per layer, an int for all layers or one per layer.
        kernel_sizes: Kernel size of each layer; its length sets the depth.
        paddings: ``"valid"`` or ``"same"``, one for all layers or one per layer.
            Default: ``"valid"`` for the first layer, ``"same"`` after it.
        batch_norm: Whether to batch-normalise each layer's output.
        activation: Nonlinearity between layers (any Keras activation name).
        final_activation: Nonlinearity after the last layer (``None``: linear).
        smoothness: Strength of the Laplacian penalty on the first layer.
        group_sparsity: Strength of the group-sparsity penalty on later layers.

    Input shape:
        ``(batch, height, width, in_channels)`` images.

    Output shape:
        ``(batch, grid_height, grid_width, channels[-1])``; with the defaults on
        36x64 images, ``(batch, 24, 52, 48)``.

    Example:
        >>> core = StackedConv2DCore(channels=16, kernel_sizes=(13, 3))
        >>> core(np.zeros((2, 36, 64, 1), "float32")).shape
        (2, 24, 52, 16)
    """

    type_name = "stacked_conv2d"

    def __init__(
        self,
        channels: int | Sequence[int] = 48,
        kernel_sizes: Sequence[int] = (13, 3, 3),
        paddings: str | Sequence[str] | None = None,
        batch_norm: bool = True,
        activation: str = "elu",
        final_activation: str | None = None,
        smoothness: float = 0.03,
        group_sparsity: float = 0.01,
        **kwargs,
    ):
        super().__init__(**kwargs)
        kernel_sizes = [int(k) for k in kernel_sizes]
        if not kernel_sizes:
            raise ValueError("StackedConv2DCore needs at least one layer (kernel_sizes is empty).")
        n_layers = len(kernel_sizes)
        if paddings is None:
            paddings = ["valid"] + ["same"] * (n_layers - 1)
        self.channels = [int(c) for c in _as_per_layer(channels, n_layers, "channels")]
        self.kernel_sizes = kernel_sizes
        self.paddings = [str(p).lower() for p in _as_per_layer(paddings, n_layers, "paddings")]
        for padding in self.paddings:
            if padding not in ("valid", "same"):
                raise ValueError(f"StackedConv2DCore: padding must be 'valid' or 'same'; got {padding!r}.")
        self.batch_norm = bool(batch_norm)
        self.activation = activation
        self.final_activation = final_activation
        self.smoothness = float(smoothness)
        self.group_sparsity = float(group_sparsity)

        self.conv_layers = []
        self.norm_layers = []
        for index, (n_channels, size, padding) in enumerate(zip(self.channels, self.kernel_sizes, self.paddings)):
            penalty = LaplacianSmoothness(self.smoothness) if index == 0 else GroupSparsity(self.group_sparsity)
            self.conv_layers.append(
                keras.layers.Conv2D(
                    n_channels,
                    size,
                    padding=padding,
                    # Batch norm supplies the offset; a conv bias would be redundant.
                    use_bias=not self.batch_norm,
                    kernel_regularizer=penalty,
                    name=f"conv{index}",
                )
            )
            if self.batch_norm:
                self.norm_layers.append(keras.layers.BatchNormalization(momentum=0.9, name=f"norm{index}"))
        self._activation_fn = keras.activations.get(activation)
        self._final_activation_fn = keras.activations.get(final_activation)

    def build(self, input_shape):
        shape = self.check_image_shape(input_shape)
        for index, conv in enumerate(self.conv_layers):
            if self.paddings[index] == "valid" and shape[1] is not None and min(shape[1:3]) < self.kernel_sizes[index]:
                raise ValueError(
                    f"StackedConv2DCore: images of {input_shape[1]}x{input_shape[2]} pixels are too small "
                    f"for kernel sizes {self.kernel_sizes} with paddings {self.paddings}."
                )
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            if self.batch_norm:
                self.norm_layers[index].build(shape)

    def call(self, images, training=False):
        x = images
        last = len(self.conv_layers) - 1
        for index, conv in enumerate(self.conv_layers):
            x = conv(x)
            if self.batch_norm:
                x = self.norm_layers[index](x, training=training)
            x = self._final_activation_fn(x) if index == last else self._activation_fn(x)
        return x

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for conv in self.conv_layers:
            shape = conv.compute_output_shape(shape)
        return shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "kernel_sizes": self.kernel_sizes,
                "paddings": self.paddings,
                "batch_norm": self.batch_norm,
                "activation": self.activation,
                "final_activation": self.final_activation,
                "smoothness": self.smoothness,
                "group_sparsity": self.group_sparsity,
            }
        )
        return config

