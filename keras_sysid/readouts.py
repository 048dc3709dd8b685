"""Readouts: the per-neuron *where* (and how much of each feature).

A readout maps the core's feature maps ``(batch, grid_h, grid_w, channels)`` to
one linear drive per neuron ``(batch, n_neurons)``; the model's output
nonlinearity turns drives into rates.

- :class:`FactorizedReadout` (Klindt et al. 2017): spatial mask x feature
  vector per neuron, sparse by an L1 penalty on their product.
- :class:`FullyConnectedReadout` (McIntosh et al. 2016; on pixels, an LNP
  model): a dense weight over every grid position and channel.
- :class:`GaussianReadout` (Lurz et al. 2021): a learned position (and
  spread) per neuron, read by bilinear interpolation.
- :class:`FixedMaskReadout` (Batty et al. 2017): a fixed location per neuron
  (e.g. from its spike-triggered average), only the features are learned.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_sysid.cores import LaplacianSmoothness
from keras_sysid.positions import peak_positions

_PACKAGE = "keras_sysid"


def _masked_readout(feature_maps, mask, features):
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


def _check_feature_maps(layer_name: str, input_shape) -> tuple[int, int, int]:
    if len(input_shape) != 4 or any(d is None for d in input_shape[1:]):
        raise ValueError(
            f"{layer_name} expects feature maps of shape (batch, height, width, channels) "
            f"with known height, width and channels; got {tuple(input_shape)}."
        )
    return int(input_shape[1]), int(input_shape[2]), int(input_shape[3])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FactorizedReadout(keras.layers.Layer):
    """Factorized sparse readout: a spatial mask times a feature vector per neuron.

    For neuron ``n``: ``drive[b, n] = sum_{h, w, c} mask[h, w, n] * features[c, n]
    * x[b, h, w, c] + bias[n]`` (Klindt et al. 2017). With ``positive_mask`` /
    ``positive_features``, the absolute values of the weights are used, as in the
    paper. The sparsity penalty ``l1 * sum_n |mask_n|_1 * |features_n|_1`` is added
    as a layer loss.

    The space contraction runs first, as one ``(batch * C, H * W) @ (H * W, N)``
    matmul, so memory stays at ``N * H * W`` (mask) + ``N * C`` (features) +
    ``batch * C * N`` (activations): an ``N x C x H x W`` weight is never formed.

    Args:
        n_neurons: Number of neurons ``N``.
        l1: Strength of the sparsity penalty.
        positive_mask: Use ``|mask|`` (the paper's choice).
        positive_features: Use ``|features|`` (the paper's choice).
        mask_positivity: How ``positive_mask`` is enforced: ``"abs"`` (the
            paper's) or ``"relu"``. Under Adam, an ``|mask|`` entry the L1
            penalty pushes to zero keeps flipping sign with steps of about the
            learning rate, so ~1000 idle entries per neuron leave a noise floor
            across the whole grid; with ``"relu"`` an entry that reaches zero
            stays there (zero gradient), which makes the mask exactly sparse.
            The initial mask is made non-negative so every entry starts alive.
        mask_smoothness: Strength of an L1 penalty on each mask's Laplacian
            (times the L1 norm of its features), against masks that fit noise
            with scattered peaks. 0 (off) is the paper's readout.
        mask_initializer: Initializer of the ``(H * W, N)`` mask.
        features_initializer: Initializer of the ``(C, N)`` features.
        bias_initializer: Initializer of the ``(N,)`` bias; the model builder sets
            it from the mean training responses.

    Input shape:
        ``(batch, height, width, channels)`` feature maps of a core.

    Output shape:
        ``(batch, n_neurons)`` drives (before the output nonlinearity).

    Example:
        >>> readout = FactorizedReadout(n_neurons=100)
        >>> readout(np.ones((8, 24, 52, 48), "float32")).shape
        (8, 100)
    """

    def __init__(
        self,
        n_neurons: int,
        l1: float = 0.01,
        positive_mask: bool = True,
        positive_features: bool = True,
        mask_positivity: str = "abs",
        mask_smoothness: float = 0.0,
        mask_initializer="truncated_normal_small",
        features_initializer="truncated_normal_small",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(n_neurons) < 1:
            raise ValueError(f"FactorizedReadout: n_neurons must be >= 1; got {n_neurons}.")
        if l1 < 0:
            raise ValueError(f"FactorizedReadout: l1 must be >= 0; got {l1}.")
        self.n_neurons = int(n_neurons)
        self.l1 = float(l1)
        self.positive_mask = bool(positive_mask)
        self.positive_features = bool(positive_features)
        if mask_positivity not in ("abs", "relu"):
            raise ValueError(f"FactorizedReadout: mask_positivity must be 'abs' or 'relu'; got {mask_positivity!r}.")
        self.mask_positivity = mask_positivity
        if mask_smoothness < 0:
            raise ValueError(f"FactorizedReadout: mask_smoothness must be >= 0; got {mask_smoothness}.")
        self.mask_smoothness = float(mask_smoothness)
        self.mask_initializer = _initializer(mask_initializer)
        self.features_initializer = _initializer(features_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        height, width, channels = _check_feature_maps(type(self).__name__, input_shape)
        self.grid_shape = (height, width)
        self.mask = self.add_weight(
            shape=(height * width, self.n_neurons), initializer=self.mask_initializer, name="mask"
        )
        if self.positive_mask and self.mask_positivity == "relu":
            self.mask.assign(ops.abs(self.mask))
        self.features = self.add_weight(
            shape=(channels, self.n_neurons), initializer=self.features_initializer, name="features"
        )
        self.bias = self.add_weight(shape=(self.n_neurons,), initializer=self.bias_initializer, name="bias")

    def effective_mask(self):
        """The mask as used in the forward pass, ``(H * W, N)``."""
        if not self.positive_mask:
            return self.mask
        return ops.abs(self.mask) if self.mask_positivity == "abs" else ops.relu(self.mask)

    def effective_features(self):
        """The features as used in the forward pass, ``(C, N)``."""
        return ops.abs(self.features) if self.positive_features else self.features

    def call(self, feature_maps):
        mask = self.effective_mask()
        features = self.effective_features()
        if self.l1 > 0 or self.mask_smoothness > 0:
            # In float32 even under a mixed-precision policy: the losses are summed in float32.
            self.add_loss(self.penalty(ops.cast(mask, "float32"), ops.cast(features, "float32")))
        return _masked_readout(feature_maps, mask, features) + ops.cast(self.bias, feature_maps.dtype)

    def penalty(self, mask=None, features=None):
        """The readout's penalty (a scalar).

        ``sum_n |features_n|_1 * (l1 * |mask_n|_1 + mask_smoothness * |lap(mask_n)|_1)``,
        with ``lap`` the 4-neighbour Laplacian on the grid's interior. For a
        non-negative mask ``|mask_n|_1`` is just its sum, which a broad mask pays
        as much as a compact one; the Laplacian term is what penalises masks
        made of scattered, noise-fitting peaks. Both terms scale like the
        prediction (mask times features), so neither can be dodged by moving
        scale between mask and features.
        """
        mask = self.effective_mask() if mask is None else mask
        features = self.effective_features() if features is None else features
        # The effective mask of a positive readout is already non-negative; skipping
        # abs() there saves an (H * W, N) temporary, which matters at 100k neurons.
        per_neuron = self.l1 * ops.sum(mask if self.positive_mask else ops.abs(mask), axis=0)
        if self.mask_smoothness > 0:
            height, width = self.grid_shape
            grid = ops.reshape(mask, (height, width, self.n_neurons))
            laplacian = (
                4.0 * grid[1:-1, 1:-1] - grid[:-2, 1:-1] - grid[2:, 1:-1] - grid[1:-1, :-2] - grid[1:-1, 2:]
            )
            per_neuron = per_neuron + self.mask_smoothness * ops.sum(ops.abs(laplacian), axis=(0, 1))
        return ops.sum(per_neuron * ops.sum(ops.abs(features), axis=0))

    def initialize_mask_at(self, positions, sigma: float = 1.5, total: float = 1.0) -> None:
        """Starts each neuron's mask as a Gaussian bump at a guessed location.

        The mask stays fully trainable; this only replaces the random start,
        e.g. with locations from :func:`keras_sysid.positions.envelope_positions`,
        so training refines a location instead of searching the whole grid.

        Args:
            positions: ``(N, 2)`` (row, column) in grid cells.
            sigma: Bump width in grid cells.
            total: Sum of each neuron's initial mask.
        """
        positions = np.asarray(positions, dtype="float64")
        if positions.shape != (self.n_neurons, 2) or not np.all(np.isfinite(positions)):
            raise ValueError(
                f"FactorizedReadout: positions must be finite, of shape ({self.n_neurons}, 2); got {positions.shape}."
            )
        height, width = self.grid_shape
        rows = np.arange(height)[:, None] - positions[None, :, 0]
        columns = np.arange(width)[:, None] - positions[None, :, 1]
        bumps = np.exp(-0.5 * rows**2 / sigma**2)[:, None, :] * np.exp(-0.5 * columns**2 / sigma**2)[None, :, :]
        bumps = bumps.reshape(height * width, self.n_neurons)
        self.mask.assign((total * bumps / bumps.sum(axis=0, keepdims=True)).astype(self.mask.dtype))

    def prune_mask(self, relative_threshold: float = 0.01) -> float:
        """Sets each neuron's mask entries below ``relative_threshold`` x its peak to zero.

        Adam keeps L1-penalised entries that should be zero at tiny non-zero
        values; zeroing them makes the mask truly sparse (and a stored model
        small once compressed). Check the effect on held-out data: on mouse V1,
        1% of the peak kept 15% of the entries and did not change validation
        correlation.

        Args:
            relative_threshold: Fraction of each neuron's largest ``|mask|`` entry.

        Returns:
            The fraction of mask entries kept.
        """
        if not 0.0 <= relative_threshold < 1.0:
            raise ValueError(f"FactorizedReadout: relative_threshold must be in [0, 1); got {relative_threshold}.")
        mask = keras.ops.convert_to_numpy(self.mask)
        magnitude = np.abs(mask)
        keep = magnitude >= relative_threshold * magnitude.max(axis=0, keepdims=True)
        self.mask.assign(np.where(keep, mask, 0.0).astype(mask.dtype))
        return float(keep.mean())

    def rf_positions(self) -> np.ndarray:
        """Each neuron's receptive-field centre on the core's grid.

        Returns:
            ``(N, 2)`` float array of (row, column) in grid cells: the peak of
            ``|mask|``, refined to sub-cell precision.
        """
        height, width = self.grid_shape
        masks = np.abs(keras.ops.convert_to_numpy(self.mask)).T.reshape(self.n_neurons, height, width)
        return peak_positions(masks)

    def channel_weights(self) -> np.ndarray:
        """How much each neuron reads each channel: ``|features|``, ``(C, N)``."""
        return np.abs(keras.ops.convert_to_numpy(self.features))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_neurons)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "n_neurons": self.n_neurons,
                "l1": self.l1,
                "positive_mask": self.positive_mask,
                "positive_features": self.positive_features,
                "mask_positivity": self.mask_positivity,
                "mask_smoothness": self.mask_smoothness,
                "mask_initializer": keras.initializers.serialize(self.mask_initializer),
                "features_initializer": keras.initializers.serialize(self.features_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FullyConnectedReadout(keras.layers.Layer):
    """Dense readout: each neuron weighs every grid position and channel.

    ``drive[b, n] = sum_{h, w, c} W[h, w, c, n] * x[b, h, w, c] + bias[n]``
    (McIntosh et al. 2016). On raw pixels (an identity core) this is the linear
    filter of an LNP model. Penalties, added as layer losses: ``l2 * sum W^2``
    and a Laplacian smoothness of each neuron's spatial weights (see
    :class:`~keras_sysid.cores.LaplacianSmoothness`). Its memory is
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
        super().__init__(**kwargs)
        if int(n_neurons) < 1:
            raise ValueError(f"FullyConnectedReadout: n_neurons must be >= 1; got {n_neurons}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"FullyConnectedReadout: dropout must be in [0, 1); got {dropout}.")
        if int(pool_size) < 1:
            raise ValueError(f"FullyConnectedReadout: pool_size must be >= 1; got {pool_size}.")
        self.n_neurons = int(n_neurons)
        self.pool_size = int(pool_size)
        self.l2 = float(l2)
        self.smoothness = float(smoothness)
        self.dropout = float(dropout)
        self.kernel_initializer = _initializer(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self._dropout_layer = keras.layers.Dropout(self.dropout) if self.dropout > 0 else None
        self._smoothness = LaplacianSmoothness(self.smoothness) if self.smoothness > 0 else None

    def build(self, input_shape):
        height, width, channels = _check_feature_maps(type(self).__name__, input_shape)
        height, width = height // self.pool_size, width // self.pool_size
        if min(height, width) < 1:
            raise ValueError(f"FullyConnectedReadout: pool_size {self.pool_size} is larger than the grid {input_shape[1:3]}.")
        self.grid_shape = (height, width)
        self.kernel = self.add_weight(
            shape=(height * width * channels, self.n_neurons), initializer=self.kernel_initializer, name="kernel"
        )
        self.bias = self.add_weight(shape=(self.n_neurons,), initializer=self.bias_initializer, name="bias")

    def spatial_kernel(self):
        """The weight as ``(H, W, C, N)``, which is a conv kernel's layout."""
        height, width = self.grid_shape
        return ops.reshape(self.kernel, (height, width, -1, self.n_neurons))

    def penalty(self):
        """The sum of the L2 and smoothness penalties (a scalar)."""
        total = self.l2 * ops.sum(ops.square(self.kernel))
        if self._smoothness is not None:
            total = total + self._smoothness(self.spatial_kernel())
        return total

    def call(self, feature_maps, training=False):
        if self.l2 > 0 or self._smoothness is not None:
            self.add_loss(ops.cast(self.penalty(), "float32"))
        if self._dropout_layer is not None:
            feature_maps = self._dropout_layer(feature_maps, training=training)
        if self.pool_size > 1:
            feature_maps = ops.average_pool(feature_maps, self.pool_size, self.pool_size, padding="valid")
        flat = ops.reshape(feature_maps, (ops.shape(feature_maps)[0], -1))
        return ops.matmul(flat, ops.cast(self.kernel, flat.dtype)) + ops.cast(self.bias, flat.dtype)

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

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_neurons)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "n_neurons": self.n_neurons,
                "l2": self.l2,
                "smoothness": self.smoothness,
                "dropout": self.dropout,
                "pool_size": self.pool_size,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


def _triangle_mask(rows, columns, grid_shape):
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


class _LocatedFeatureReadout(keras.layers.Layer):
    """Shared part of readouts that read ``C`` features at one place per neuron.

    Subclasses create their location weights in ``build`` (before calling
    :meth:`_build_features`) and implement ``read_mask(dtype, training)``
    returning ``(H * W, N)`` weights; the drive is
    ``sum_{hw,c} mask[hw,n] features[c,n] x[b,hw,c] + bias[n]`` with the
    penalty ``l1 * sum |features|`` added as a layer loss.
    """

    def __init__(self, n_neurons: int, l1: float, features_initializer, bias_initializer, **kwargs):
        super().__init__(**kwargs)
        if int(n_neurons) < 1:
            raise ValueError(f"{type(self).__name__}: n_neurons must be >= 1; got {n_neurons}.")
        if l1 < 0:
            raise ValueError(f"{type(self).__name__}: l1 must be >= 0; got {l1}.")
        self.n_neurons = int(n_neurons)
        self.l1 = float(l1)
        self.features_initializer = _initializer(features_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def _build_features(self, channels: int) -> None:
        self.features = self.add_weight(
            shape=(channels, self.n_neurons), initializer=self.features_initializer, name="features"
        )
        self.bias = self.add_weight(shape=(self.n_neurons,), initializer=self.bias_initializer, name="bias")

    def call(self, feature_maps, training=False):
        if self.l1 > 0:
            self.add_loss(ops.cast(self.penalty(), "float32"))
        mask = self.read_mask(feature_maps.dtype, training=training)
        return _masked_readout(feature_maps, mask, self.features) + ops.cast(self.bias, feature_maps.dtype)

    def penalty(self):
        """``l1 * sum |features|`` (a scalar)."""
        return self.l1 * ops.sum(ops.abs(self.features))

    def channel_weights(self) -> np.ndarray:
        """How much each neuron reads each channel: ``|features|``, ``(C, N)``."""
        return np.abs(keras.ops.convert_to_numpy(self.features))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_neurons)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "n_neurons": self.n_neurons,
                "l1": self.l1,
                "features_initializer": keras.initializers.serialize(self.features_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GaussianReadout(_LocatedFeatureReadout):
    """Gaussian readout: each neuron reads the core at one learned position.

    Lurz et al. (2021): neuron ``n`` has a mean position ``mu_n`` (in
    normalised grid coordinates, ``[-1, 1]`` along each axis) and a spread
    ``sigma_n``. In training it reads the feature maps at a position sampled
    from ``N(mu_n, sigma_n^2 I)`` (one sample per neuron per step), so the
    gradient explores around ``mu_n`` and ``sigma_n`` shrinks as the position
    firms up; at test time it reads at ``mu_n``. Reading is bilinear
    interpolation of the ``C`` channels, then ``drive = features_n . x + bias``.
    An L1 penalty ``l1 * sum |features|`` is added as a layer loss.

    The read is a ``(H * W, N)`` interpolation mask applied with the same single
    matmul as :class:`FactorizedReadout`, so its cost is the factorized one.

    Args:
        n_neurons: Number of neurons ``N``.
        l1: Strength of the L1 penalty on the features.
        init_mu_range: Initial means are uniform in ``[-r, r]`` on each axis.
        init_sigma: Initial spread, in normalised coordinates.
        features_initializer: Initializer of the ``(C, N)`` features.
        bias_initializer: Initializer of the ``(N,)`` bias.
        seed: Seed of the position sampling.

    Input shape:
        ``(batch, height, width, channels)`` feature maps.

    Output shape:
        ``(batch, n_neurons)`` drives.

    Example:
        >>> readout = GaussianReadout(n_neurons=100)
        >>> readout(np.ones((8, 24, 52, 48), "float32")).shape
        (8, 100)
    """

    def __init__(
        self,
        n_neurons: int,
        l1: float = 0.001,
        init_mu_range: float = 0.5,
        init_sigma: float = 0.2,
        features_initializer="truncated_normal_small",
        bias_initializer="zeros",
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(n_neurons, l1, features_initializer, bias_initializer, **kwargs)
        if not 0 <= init_mu_range <= 1 or init_sigma <= 0:
            raise ValueError(
                f"GaussianReadout needs 0 <= init_mu_range <= 1 and init_sigma > 0; got {init_mu_range}, {init_sigma}."
            )
        self.init_mu_range = float(init_mu_range)
        self.init_sigma = float(init_sigma)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        height, width, channels = _check_feature_maps(type(self).__name__, input_shape)
        self.grid_shape = (height, width)
        self.mu = self.add_weight(
            shape=(self.n_neurons, 2),
            initializer=keras.initializers.RandomUniform(-self.init_mu_range, self.init_mu_range, seed=self.seed),
            name="mu",
        )
        self.sigma = self.add_weight(
            shape=(self.n_neurons,), initializer=keras.initializers.Constant(self.init_sigma), name="sigma"
        )
        self._build_features(channels)

    def positions(self, training=False):
        """Read positions in normalised coordinates, ``(N, 2)``: sampled in training."""
        mu = self.mu
        if training:
            noise = keras.random.normal((self.n_neurons, 2), seed=self.seed_generator, dtype=mu.dtype)
            mu = mu + noise * ops.abs(self.sigma)[:, None]
        return ops.clip(mu, -1.0, 1.0)

    def read_mask(self, dtype="float32", training=False):
        """Bilinear weights at the read positions, ``(H * W, N)``."""
        height, width = self.grid_shape
        position = ops.cast(self.positions(training=training), dtype)
        rows = (position[:, 0] + 1.0) * 0.5 * (height - 1)
        columns = (position[:, 1] + 1.0) * 0.5 * (width - 1)
        return _triangle_mask(rows, columns, self.grid_shape)

    def rf_positions(self) -> np.ndarray:
        """``(N, 2)`` (row, column) of each neuron's mean position, in grid cells."""
        height, width = self.grid_shape
        mu = np.clip(keras.ops.convert_to_numpy(self.mu), -1.0, 1.0)
        return (mu + 1.0) * 0.5 * (np.array([height, width]) - 1.0)

    def get_config(self):
        config = super().get_config()
        config.update({"init_mu_range": self.init_mu_range, "init_sigma": self.init_sigma, "seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FixedMaskReadout(_LocatedFeatureReadout):
    """Fixed-location readout: a fixed Gaussian mask per neuron, learned features.

    Batty et al. (2017) fix each neuron's spatial readout from the envelope of
    its spike-triggered average and learn only which features it reads. Here
    the mask of neuron ``n`` is a normalised Gaussian of width ``mask_sigma``
    grid cells centred on ``positions[n]``, a non-trainable weight set with
    :meth:`set_positions` (saved with the model's weights).
    ``drive = sum_{h,w,c} mask[h,w,n] features[c,n] x[b,h,w,c] + bias``; an L1
    penalty ``l1 * sum |features|`` is added as a layer loss.

    Args:
        n_neurons: Number of neurons ``N``.
        mask_sigma: Width of each Gaussian mask, in grid cells.
        l1: Strength of the L1 penalty on the features.
        features_initializer: Initializer of the ``(C, N)`` features.
        bias_initializer: Initializer of the ``(N,)`` bias.

    Input shape:
        ``(batch, height, width, channels)`` feature maps.

    Output shape:
        ``(batch, n_neurons)`` drives.

    Example:
        >>> readout = FixedMaskReadout(n_neurons=2, mask_sigma=1.5)
        >>> readout.build((None, 24, 52, 48))
        >>> readout.set_positions([[10.0, 20.0], [3.5, 40.0]])
        >>> readout(np.ones((8, 24, 52, 48), "float32")).shape
        (8, 2)
    """

    def __init__(
        self,
        n_neurons: int,
        mask_sigma: float = 1.0,
        l1: float = 0.001,
        features_initializer="truncated_normal_small",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(n_neurons, l1, features_initializer, bias_initializer, **kwargs)
        if mask_sigma <= 0:
            raise ValueError(f"FixedMaskReadout needs mask_sigma > 0; got {mask_sigma}.")
        self.mask_sigma = float(mask_sigma)

    def build(self, input_shape):
        height, width, channels = _check_feature_maps(type(self).__name__, input_shape)
        self.grid_shape = (height, width)
        centre = [(height - 1) / 2.0, (width - 1) / 2.0]
        self.positions = self.add_weight(
            shape=(self.n_neurons, 2),
            initializer=keras.initializers.Constant(np.tile(centre, (self.n_neurons, 1))),
            trainable=False,
            name="positions",
        )
        self._build_features(channels)

    def set_positions(self, positions) -> None:
        """Fixes each neuron's location.

        Args:
            positions: ``(N, 2)`` (row, column) in grid cells, inside the grid.
        """
        positions = np.asarray(positions, dtype="float64")
        if positions.shape != (self.n_neurons, 2):
            raise ValueError(f"FixedMaskReadout: positions must have shape ({self.n_neurons}, 2); got {positions.shape}.")
        if not np.all(np.isfinite(positions)):
            raise ValueError("FixedMaskReadout: positions contain NaN or inf.")
        limit = np.asarray(self.grid_shape) - 1.0
        if np.any(positions < 0) or np.any(positions > limit):
            raise ValueError(f"FixedMaskReadout: positions must lie in the grid [0, {limit[0]}] x [0, {limit[1]}].")
        self.positions.assign(positions.astype(self.positions.dtype))

    def read_mask(self, dtype="float32", training=False):
        """The fixed masks, ``(H * W, N)``, each summing to 1."""
        del training  # the mask does not depend on it
        height, width = self.grid_shape
        positions = ops.cast(self.positions, dtype)
        rows = ops.cast(ops.arange(height), dtype)[:, None] - positions[None, :, 0]
        columns = ops.cast(ops.arange(width), dtype)[:, None] - positions[None, :, 1]
        scale = -0.5 / self.mask_sigma**2
        mask = ops.exp(scale * ops.square(rows))[:, None, :] * ops.exp(scale * ops.square(columns))[None, :, :]
        mask = ops.reshape(mask, (height * width, self.n_neurons))
        return mask / ops.sum(mask, axis=0, keepdims=True)

    def rf_positions(self) -> np.ndarray:
        """The fixed ``(N, 2)`` (row, column) positions, in grid cells."""
        return keras.ops.convert_to_numpy(self.positions).astype("float64")

    def get_config(self):
        config = super().get_config()
        config.update({"mask_sigma": self.mask_sigma})
        return config


def _initializer(identifier):
    # Readout weights start small so the penalty does not dominate the first steps
    # and no neuron begins committed to a location.
    if identifier == "truncated_normal_small":
        return keras.initializers.TruncatedNormal(stddev=0.01)
    return keras.initializers.get(identifier)
