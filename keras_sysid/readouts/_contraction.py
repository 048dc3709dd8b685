"""The contraction shared by mask readouts: feature maps x spatial mask x features.

Private to :mod:`keras_sysid.readouts`: a readout that reads ``C`` features
through an ``(H * W, N)`` spatial weight calls :func:`masked_readout`.
"""

from __future__ import annotations

import keras
from keras import ops


def masked_readout(feature_maps, mask, features):
    """``sum_{h,w,c} x[b,h,w,c] mask[hw,n] features[c,n]``, space contracted first.

    One ``(batch * C, H * W) @ (H * W, N)`` matmul, then a ``(batch, C, N)``
    product with the features: memory ``N * (H * W + C + batch * C)``, never
    ``N * H * W * C``. On TensorFlow and JAX the gradient is hand-written so
    that the ``(batch, C, N)`` intermediate is recomputed in the backward pass
    instead of kept from the forward pass, and never exists more than twice:
    it is the largest tensor of a big population.
    """
    batch = ops.shape(feature_maps)[0]
    height, width, channels = feature_maps.shape[1:]
    per_channel = ops.reshape(
        ops.transpose(ops.reshape(feature_maps, (batch, height * width, channels)), (0, 2, 1)),
        (batch * channels, height * width),
    )
    mask = ops.cast(mask, per_channel.dtype)
    features = ops.cast(features, per_channel.dtype)
    if keras.backend.backend() in ("tensorflow", "jax"):
        return _contract_with_lean_gradient(per_channel, mask, features)
    return _contract(per_channel, mask, features)


def _contract(per_channel, mask, features):
    """``(B * C, HW), (HW, N), (C, N) -> (B, N)``."""
    channels, n_neurons = features.shape
    pooled = ops.reshape(ops.matmul(per_channel, mask), (-1, channels, n_neurons))
    return ops.sum(pooled * features, axis=1)


@ops.custom_gradient
def _contract_with_lean_gradient(per_channel, mask, features):
    channels, n_neurons = features.shape

    def gradient(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        weighted = ops.reshape(upstream[:, None, :] * features[None], (-1, n_neurons))  # (B * C, N)
        grad_per_channel = ops.matmul(weighted, ops.transpose(mask))
        grad_mask = ops.matmul(ops.transpose(per_channel), weighted)
        del weighted
        pooled = ops.reshape(ops.matmul(per_channel, mask), (-1, channels, n_neurons))
        grad_features = ops.sum(pooled * upstream[:, None, :], axis=0)
        return grad_per_channel, grad_mask, grad_features

    return _contract(per_channel, mask, features), gradient



def triangle_mask(rows, columns, grid_shape):
    """Bilinear-interpolation weights of points on a grid, ``(H * W, N)``.

    The weight of grid cell ``(h, w)`` for a point ``(row, column)`` is
    ``max(0, 1 - |h - row|) * max(0, 1 - |w - column|)``: exactly bilinear
    interpolation, differentiable in the point, and separable, so it costs
    ``(H + W) * N`` before the outer product.
    """
    height, width = grid_shape
    dtype = rows.dtype
    row_weights = ops.relu(1.0 - ops.abs(ops.cast(ops.arange(height), dtype)[:, None] - rows[None, :]))
    column_weights = ops.relu(1.0 - ops.abs(ops.cast(ops.arange(width), dtype)[:, None] - columns[None, :]))
    return ops.reshape(row_weights[:, None, :] * column_weights[None, :, :], (height * width, -1))

