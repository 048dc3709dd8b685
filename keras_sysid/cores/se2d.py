"""Lurz et al. (2021)'s core: depth-separable convolutions with squeeze-and-excitation."""

from __future__ import annotations

import keras

from keras_sysid.cores._squeeze_excitation import SqueezeExcitation
from keras_sysid.cores.base import Core
from keras_sysid.regularizers import GroupSparsity, LaplacianSmoothness


@keras.saving.register_keras_serializable(package="keras_sysid")
class SE2DCore(Core):
    """A deeper, cheaper core: one large convolution, then depth-separable layers with SE blocks.

    The idea of neuralpredictors' ``SE2dCore`` as used by Lurz et al. (2021)
    on mouse V1: a first ``input_kernel`` convolution (Laplacian smoothness
    penalty), then ``n_layers - 1`` hidden layers, each a depth-separable
    convolution (1x1 pointwise, ``hidden_kernel`` depthwise, 1x1 pointwise) or
    a full one. Every layer is followed by batch norm and ELU; the last
    ``n_se_blocks`` layers end with a :class:`SqueezeExcitation` block. A
    depth-separable layer of ``C`` channels costs ``C * (2 C + k^2)``
    multiply-adds per pixel instead of ``C^2 k^2``, so four 64-channel layers
    with 7x7 kernels cost about as much as the paper's three 48-channel ones.

    Args:
        channels: Channels of every layer.
        n_layers: Number of layers (the first included).
        input_kernel: Kernel size of the first layer.
        hidden_kernel: Depthwise kernel size of the hidden layers.
        input_padding: ``"valid"`` (default: the grid is ``input_kernel - 1``
            pixels smaller than the image) or ``"same"``. Hidden layers keep
            the grid size.
        depth_separable: Depth-separable hidden layers (else full convolutions).
        n_se_blocks: How many of the last layers end with an SE block
            (``None``: every hidden layer).
        se_reduction: Bottleneck factor of the SE blocks.
        smoothness: Strength of the Laplacian penalty on the first layer.
        group_sparsity: Strength of the group-sparsity penalty on the hidden
            layers' full or pointwise kernels (0: none, as Lurz et al.).
        final_activation: Apply the ELU after the last layer too (as Lurz et al.).

    Input shape:
        ``(batch, height, width, in_channels)`` images.

    Output shape:
        ``(batch, grid_height, grid_width, channels)``; with the defaults on
        36x64 images, ``(batch, 28, 56, 64)``.

    Example:
        >>> core = SE2DCore(channels=16, n_layers=3)
        >>> core(np.zeros((2, 36, 64, 1), "float32")).shape
        (2, 28, 56, 16)
    """

    type_name = "se2d"

    def __init__(
        self,
        channels: int = 64,
        n_layers: int = 4,
        input_kernel: int = 9,
        hidden_kernel: int = 7,
        input_padding: str = "valid",
        depth_separable: bool = True,
        n_se_blocks: int | None = None,
        se_reduction: int = 32,
        smoothness: float = 0.01,
        group_sparsity: float = 0.0,
        final_activation: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(channels) < 1 or int(n_layers) < 1 or int(input_kernel) < 1 or int(hidden_kernel) < 1:
            raise ValueError(
                f"SE2DCore needs channels, n_layers, input_kernel and hidden_kernel >= 1; got "
                f"{channels}, {n_layers}, {input_kernel}, {hidden_kernel}."
            )
        if str(input_padding).lower() not in ("valid", "same"):
            raise ValueError(f"SE2DCore: input_padding must be 'valid' or 'same'; got {input_padding!r}.")
        if n_se_blocks is not None and not 0 <= int(n_se_blocks) <= int(n_layers):
            raise ValueError(f"SE2DCore: n_se_blocks must lie in [0, n_layers={n_layers}]; got {n_se_blocks}.")
        self.channels = int(channels)
        self.n_layers = int(n_layers)
        self.input_kernel = int(input_kernel)
        self.hidden_kernel = int(hidden_kernel)
        self.input_padding = str(input_padding).lower()
        self.depth_separable = bool(depth_separable)
        self.n_se_blocks = None if n_se_blocks is None else int(n_se_blocks)
        self.se_reduction = int(se_reduction)
        self.smoothness = float(smoothness)
        self.group_sparsity = float(group_sparsity)
        self.final_activation = bool(final_activation)

        n_se = self.n_layers - 1 if self.n_se_blocks is None else self.n_se_blocks
        hidden_penalty = GroupSparsity(self.group_sparsity) if self.group_sparsity > 0 else None
        # Batch norm supplies the offsets, so no convolution has a bias.
        self.blocks = []
        for index in range(self.n_layers):
            convs = []
            if index == 0:
                convs.append(keras.layers.Conv2D(
                    self.channels, self.input_kernel, padding=self.input_padding, use_bias=False,
                    kernel_regularizer=LaplacianSmoothness(self.smoothness), name="conv0",
                ))
            elif self.depth_separable:
                convs += [
                    keras.layers.Conv2D(self.channels, 1, use_bias=False, kernel_regularizer=hidden_penalty,
                                        name=f"pointwise_in{index}"),
                    keras.layers.DepthwiseConv2D(self.hidden_kernel, padding="same", use_bias=False,
                                                 name=f"depthwise{index}"),
                    keras.layers.Conv2D(self.channels, 1, use_bias=False, kernel_regularizer=hidden_penalty,
                                        name=f"pointwise_out{index}"),
                ]
            else:
                convs.append(keras.layers.Conv2D(
                    self.channels, self.hidden_kernel, padding="same", use_bias=False,
                    kernel_regularizer=hidden_penalty, name=f"conv{index}",
                ))
            norm = keras.layers.BatchNormalization(momentum=0.9, name=f"norm{index}")
            excitation = (
                SqueezeExcitation(self.se_reduction, name=f"se{index}") if index >= self.n_layers - n_se else None
            )
            self.blocks.append((convs, norm, excitation))

    def build(self, input_shape):
        shape = self.check_image_shape(input_shape)
        if self.input_padding == "valid" and shape[1] is not None and min(shape[1:3]) < self.input_kernel:
            raise ValueError(
                f"SE2DCore: images of {shape[1]}x{shape[2]} pixels are smaller than the "
                f"{self.input_kernel}x{self.input_kernel} 'valid' first layer."
            )
        for convs, norm, excitation in self.blocks:
            for conv in convs:
                conv.build(shape)
                shape = conv.compute_output_shape(shape)
            norm.build(shape)
            if excitation is not None:
                excitation.build(shape)

    def call(self, images, training=False):
        x = images
        last = self.n_layers - 1
        for index, (convs, norm, excitation) in enumerate(self.blocks):
            for conv in convs:
                x = conv(x)
            x = norm(x, training=training)
            if index < last or self.final_activation:
                x = keras.activations.elu(x)
            if excitation is not None:
                x = excitation(x)
        return x

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for convs, _, _ in self.blocks:
            for conv in convs:
                shape = conv.compute_output_shape(shape)
        return shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "n_layers": self.n_layers,
                "input_kernel": self.input_kernel,
                "hidden_kernel": self.hidden_kernel,
                "input_padding": self.input_padding,
                "depth_separable": self.depth_separable,
                "n_se_blocks": self.n_se_blocks,
                "se_reduction": self.se_reduction,
                "smoothness": self.smoothness,
                "group_sparsity": self.group_sparsity,
                "final_activation": self.final_activation,
            }
        )
        return config
