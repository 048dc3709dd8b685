"""Penalties on convolution kernels and readout weights, as Keras regularizers.

:class:`LaplacianSmoothness` (smooth filters; the first layer of the paper's
core, and the spatial weights of a dense readout) and :class:`GroupSparsity`
(few connections between feature maps; the paper's deeper layers).
"""

from __future__ import annotations

import keras
from keras import ops

# The 3x3 discrete Laplacian with diagonal neighbours at half weight, as in the
# reference implementation of Klindt et al. (2017).
_LAPLACIAN_3X3 = (
    (0.5, 1.0, 0.5),
    (1.0, -6.0, 1.0),
    (0.5, 1.0, 0.5),
)


@keras.saving.register_keras_serializable(package="keras_sysid")
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


@keras.saving.register_keras_serializable(package="keras_sysid")
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
