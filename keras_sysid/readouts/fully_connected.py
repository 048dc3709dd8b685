"""The dense readout of McIntosh et al. (2016); on pixels, an LNP model's filter."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_sysid.positions import peak_positions
from keras_sysid.readouts.base import Readout, readout_initializer
from keras_sysid.regularizers import LaplacianSmoothness


@keras.saving.register_keras_serializable(package="keras_sysid")
class FullyConnectedReadout(Readout):
    """Dense readout: each neuron weighs every grid position and channel.

    ``drive[b, n] = sum_{h, w, c} W[h, w, c, n] * x[b, h, w, c] + bias[n]``
    (McIntosh et al. 2016). On raw pixels (an identity core) this is the linear
    filter of an LNP model. Penalties, added as layer losses: ``l2 * sum W^2``
    and a Laplacian smoothness of each neuron's spatial weights (see
    :class:`~keras_sysid.regularizers.LaplacianSmoothness`). Its memory is
    ``N * H * W * C``: the price of not factorizing. ``pool_size`` averages
    the feature maps over ``pool x pool`` blocks first, which divides that
    memory by ``pool**2`` for large cores and populations.

    Args:
        n_neurons: Number of neurons ``N``.
        l2: Strength of the L2 weight penalty.
        smoothness: Strength of the spatial Laplacian penalty.
        dropout: Dropout rate on the input features during training.
        pool_size: Average-pool the feature maps by this factor first (1: off).
        kernel_initializer: Initializer of the ``(H * W * C, N)`` weight.
        bias_initializer: Initializer of the ``(N,)`` bias.

    Input shape:
        ``(batch, height, width, channels)``.

    Output shape:
        ``(batch, n_neurons)``.

    Example:
        >>> readout = FullyConnectedReadout(n_neurons=10, smoothness=0.1)
        >>> readout(np.ones((4, 36, 64, 1), "float32")).shape
        (4, 10)
    """

    type_name = "fully_connected"

    def __init__(
        self,
        n_neurons: int,
        l2: float = 0.0,
        smoothness: float = 0.0,
        dropout: float = 0.0,
        pool_size: int = 1,
        kernel_initializer="truncated_normal_small",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(n_neurons, bias_initializer=bias_initializer, **kwargs)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"FullyConnectedReadout: dropout must be in [0, 1); got {dropout}.")
        if int(pool_size) < 1:
            raise ValueError(f"FullyConnectedReadout: pool_size must be >= 1; got {pool_size}.")
        self.pool_size = int(pool_size)
        self.l2 = float(l2)
        self.smoothness = float(smoothness)
        self.dropout = float(dropout)
        self.kernel_initializer = readout_initializer(kernel_initializer)
        self._dropout_layer = keras.layers.Dropout(self.dropout) if self.dropout > 0 else None
        self._smoothness = LaplacianSmoothness(self.smoothness) if self.smoothness > 0 else None

    def build_readout(self, height, width, channels):
        height, width = height // self.pool_size, width // self.pool_size
        if min(height, width) < 1:
            raise ValueError(
                f"FullyConnectedReadout: pool_size {self.pool_size} is larger than the grid {self.grid_shape}."
            )
        self.grid_shape = (height, width)
        self.kernel = self.add_weight(
            shape=(height * width * channels, self.n_neurons), initializer=self.kernel_initializer, name="kernel"
        )

    def spatial_kernel(self):
        """The weight as ``(H, W, C, N)``, which is a conv kernel's layout."""
        height, width = self.grid_shape
        return ops.reshape(self.kernel, (height, width, -1, self.n_neurons))

    def has_penalty(self) -> bool:
        return self.l2 > 0 or self._smoothness is not None

    def penalty(self):
        """The sum of the L2 and smoothness penalties (a scalar)."""
        total = self.l2 * ops.sum(ops.square(self.kernel))
        if self._smoothness is not None:
            total = total + self._smoothness(self.spatial_kernel())
        return total

    def drive(self, feature_maps, training=False):
        if self._dropout_layer is not None:
            feature_maps = self._dropout_layer(feature_maps, training=training)
        if self.pool_size > 1:
            feature_maps = ops.average_pool(feature_maps, self.pool_size, self.pool_size, padding="valid")
        flat = ops.reshape(feature_maps, (ops.shape(feature_maps)[0], -1))
        return ops.matmul(flat, ops.cast(self.kernel, flat.dtype))

    def rf_positions(self) -> np.ndarray:
        """``(N, 2)`` (row, column) position of each neuron's largest weights on
        the core's (unpooled) grid."""
        height, width = self.grid_shape
        weights = np.abs(keras.ops.convert_to_numpy(self.spatial_kernel())).sum(axis=2)
        pooled = peak_positions(np.moveaxis(weights, -1, 0).reshape(self.n_neurons, height, width))
        return pooled * self.pool_size + (self.pool_size - 1) / 2.0

    def channel_weights(self) -> np.ndarray:
        """How much each neuron reads each channel: summed ``|W|``, ``(C, N)``."""
        return np.abs(keras.ops.convert_to_numpy(self.spatial_kernel())).sum(axis=(0, 1))

    def flops_per_image(self) -> int:
        """The dense ``(H * W * C) @ (H * W * C, N)`` product (pooling not counted)."""
        return 2 * int(np.prod(self.kernel.shape))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "l2": self.l2,
                "smoothness": self.smoothness,
                "dropout": self.dropout,
                "pool_size": self.pool_size,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


