"""Convolutional cores: the shared *what* of a neural population.

A core maps images ``(batch, height, width, 1)`` to feature maps
``(batch, grid_height, grid_width, channels)``. Every neuron's readout reads
from the same feature maps, so the core learns features once for the whole
population. Any Keras layer or model with that signature can serve as a core;
:class:`StackedConv2DCore` is the one of Klindt et al. (2017), with its two
penalties :class:`LaplacianSmoothness` and :class:`GroupSparsity`.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_sysid.positions import peak_positions

_PACKAGE = "keras_sysid"

# The 3x3 discrete Laplacian with diagonal neighbours at half weight, as in the
# reference implementation of Klindt et al. (2017).
_LAPLACIAN_3X3 = (
    (0.5, 1.0, 0.5),
    (1.0, -6.0, 1.0),
    (0.5, 1.0, 0.5),
)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LaplacianSmoothness(keras.regularizers.Regularizer):
    """Smoothness penalty on convolution kernels, normalised per filter.

    ``strength * sum_out [ sum_in ||L * W[:, :, in, out]||^2 / ||W[:, :, :, out]||^2 ]``
    where ``L`` is the 3x3 Laplacian and ``*`` a zero-padded ("same") 2-D
    convolution. Dividing by the filter's energy makes the penalty act on the
    filter's shape, not its scale, so it does not fight the readout's scale.

    Args:
        strength: Non-negative weight of the penalty.

    Input shape:
        A conv kernel ``(kernel_h, kernel_w, in_channels, out_channels)``.

    Output shape:
        A scalar.

    Example:
        >>> layer = keras.layers.Conv2D(
        ...     8, 13, kernel_regularizer=LaplacianSmoothness(0.1))
    """

    def __init__(self, strength: float = 0.1):
        if strength < 0:
            raise ValueError(f"LaplacianSmoothness strength must be >= 0; got {strength}.")
        self.strength = float(strength)

    def __call__(self, kernel):
        kh, kw, n_in, n_out = kernel.shape
        # Treat each (in, out) 2-D filter as a one-channel image and filter it.
        filters = ops.reshape(ops.transpose(kernel, (2, 3, 0, 1)), (n_in * n_out, kh, kw, 1))
        laplacian = ops.reshape(ops.convert_to_tensor(_LAPLACIAN_3X3, dtype=kernel.dtype), (3, 3, 1, 1))
        curvature = ops.conv(filters, laplacian, strides=1, padding="same")
        curvature_energy = ops.sum(ops.reshape(ops.square(curvature), (n_in, n_out, kh * kw)), axis=(0, 2))
        filter_energy = ops.sum(ops.square(kernel), axis=(0, 1, 2))
        return self.strength * ops.sum(curvature_energy / (filter_energy + 1e-12))

    def get_config(self):
        return {"strength": self.strength}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GroupSparsity(keras.regularizers.Regularizer):
    """Group-lasso penalty: the L2 norm of each (input, output) 2-D filter, summed.

    ``strength * sum_{in, out} sqrt(sum_{h, w} W[h, w, in, out]^2)``. It drives
    whole connections between feature maps to zero, so deeper layers use few
    of the previous layer's features.

    Args:
        strength: Non-negative weight of the penalty.

    Input shape:
        A conv kernel ``(kernel_h, kernel_w, in_channels, out_channels)``.

    Output shape:
        A scalar.

    Example:
        >>> layer = keras.layers.Conv2D(
        ...     48, 3, padding="same", kernel_regularizer=GroupSparsity(0.01))
    """

    def __init__(self, strength: float = 0.01):
        if strength < 0:
            raise ValueError(f"GroupSparsity strength must be >= 0; got {strength}.")
        self.strength = float(strength)

    def __call__(self, kernel):
        # The tiny offset keeps the gradient finite for an all-zero filter.
        group_norms = ops.sqrt(ops.sum(ops.square(kernel), axis=(0, 1)) + 1e-12)
        return self.strength * ops.sum(group_norms)

    def get_config(self):
        return {"strength": self.strength}


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


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StackedConv2DCore(keras.layers.Layer):
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
        if len(input_shape) != 4:
            raise ValueError(
                f"StackedConv2DCore expects images of shape (batch, height, width, channels); "
                f"got rank {len(input_shape)} shape {tuple(input_shape)}."
            )
        shape = tuple(input_shape)
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


def channel_rf_offsets(core: keras.layers.Layer, image_shape, delta: float = 1.0) -> np.ndarray:
    """Where each output channel of a core looks, relative to its grid cell.

    A conv kernel may learn its feature off-centre, and the readout then shifts
    its mask the other way; a neuron's receptive field is the mask position
    plus this offset. It is measured by probing the core with single-pixel
    impulses of +-``delta`` on a blank (mean) image and locating the peak of
    the squared change at the central grid cell, so it works for any core,
    linear or not.

    Args:
        core: A built core mapping ``(batch, H, W, C)`` to ``(batch, h, w, channels)``.
        image_shape: ``(H, W)`` or ``(H, W, C)`` of the core's (standardised) input.
        delta: Impulse amplitude in the core's input units.

    Returns:
        ``(channels, 2)`` float (row, column) offsets in pixels from the cell's
        nominal centre (cell ``i`` of a grid ``k`` pixels smaller than the image
        is centred on pixel ``i + k / 2``).
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    in_channels = int(image_shape[2]) if len(image_shape) > 2 else 1
    blank = np.zeros((1, height, width, in_channels), dtype="float32")
    reference = keras.ops.convert_to_numpy(core(blank, training=False))[0]
    grid_h, grid_w = reference.shape[:2]
    cell = (grid_h // 2, grid_w // 2)
    energy = np.zeros((height * width, reference.shape[-1]))
    pixels = np.arange(height * width)
    for sign in (1.0, -1.0):
        for start in range(0, pixels.size, 256):
            chunk = pixels[start : start + 256]
            probes = np.zeros((chunk.size, height * width, in_channels), dtype="float32")
            probes[np.arange(chunk.size), chunk, :] = sign * delta
            out = keras.ops.convert_to_numpy(core(probes.reshape(-1, height, width, in_channels), training=False))
            energy[chunk] += (out[:, cell[0], cell[1], :] - reference[cell]) ** 2
    # The energy map's peak, not its centroid: a kernel shifted against its
    # border is truncated, which would drag a centroid back to the middle.
    peaks = peak_positions(np.moveaxis(energy.reshape(height, width, -1), -1, 0))
    nominal = np.array(cell) + (np.array([height, width]) - np.array([grid_h, grid_w])) / 2.0
    return peaks - nominal
