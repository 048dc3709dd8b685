"""The Gaussian readout of Lurz et al. (2021): a learned read position per neuron."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_sysid.readouts._contraction import triangle_mask
from keras_sysid.readouts._located import LocatedFeatureReadout
from keras_sysid.readouts._point_read import point_read


@keras.saving.register_keras_serializable(package="keras_sysid")
class GaussianReadout(LocatedFeatureReadout):
    """Gaussian readout: each neuron reads the core at one learned position.

    Lurz et al. (2021): neuron ``n`` has a mean position ``mu_n`` (in
    normalised grid coordinates, ``[-1, 1]`` along each axis) and a spread
    ``sigma_n``. In training it reads the feature maps at a position sampled
    from ``N(mu_n, sigma_n^2 I)`` (one sample per neuron per step), so the
    gradient explores around ``mu_n`` and ``sigma_n`` shrinks as the position
    firms up; at test time it reads at ``mu_n``. Reading is bilinear
    interpolation of the ``C`` channels, then ``drive = features_n . x + bias``.
    An L1 penalty ``l1 * sum |features|`` is added as a layer loss.

    The read gathers each neuron's four neighbouring grid cells
    (``keras_sysid.readouts._point_read``): ``4 * C * N`` multiply-adds per
    image, in training and inference, with no ``(H * W, N)`` tensor;
    :meth:`read_mask` gives the same read as a dense mask, for analysis.
    Positions and spreads stay float32 under a mixed-precision policy, so a
    read point is never rounded to bfloat16's coarse grid.

    A read position moves only as far as its gradient reaches, so by default
    (``start_from_data``) the model's ``adapt`` starts each neuron where its
    training responses place it; a start uniform in the central
    ``init_mu_range`` never finds cells far from the centre.

    Args:
        n_neurons: Number of neurons ``N``.
        l1: Strength of the L1 penalty on the features.
        init_mu_range: Initial means are uniform in ``[-r, r]`` on each axis.
        init_sigma: Initial spread, in normalised coordinates.
        features_initializer: Initializer of the ``(C, N)`` features.
        bias_initializer: Initializer of the ``(N,)`` bias.
        seed: Seed of the position sampling.
        start_from_data: Start each neuron where the training data place it when the model is adapted
            (:meth:`~keras_sysid.readouts.base.Readout.setup_from_data`); ``False``:
            uniform in ``[-init_mu_range, init_mu_range]``.

    Input shape:
        ``(batch, height, width, channels)`` feature maps.

    Output shape:
        ``(batch, n_neurons)`` drives.

    Example:
        >>> readout = GaussianReadout(n_neurons=100)
        >>> readout(np.ones((8, 24, 52, 48), "float32")).shape
        (8, 100)
    """

    type_name = "gaussian"

    def __init__(
        self,
        n_neurons: int,
        l1: float = 0.001,
        init_mu_range: float = 0.5,
        init_sigma: float = 0.2,
        features_initializer="truncated_normal_small",
        bias_initializer="zeros",
        seed: int | None = None,
        start_from_data: bool = True,
        **kwargs,
    ):
        super().__init__(n_neurons, l1, features_initializer, bias_initializer, start_from_data=start_from_data,
                         **kwargs)
        if not 0 <= init_mu_range <= 1 or init_sigma <= 0:
            raise ValueError(
                f"GaussianReadout needs 0 <= init_mu_range <= 1 and init_sigma > 0; got {init_mu_range}, {init_sigma}."
            )
        self.init_mu_range = float(init_mu_range)
        self.init_sigma = float(init_sigma)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build_location(self, height, width):
        self.mu = self.add_weight(
            shape=(self.n_neurons, 2),
            initializer=keras.initializers.RandomUniform(-self.init_mu_range, self.init_mu_range, seed=self.seed),
            name="mu",
            autocast=False,
        )
        self.sigma = self.add_weight(
            shape=(self.n_neurons,),
            initializer=keras.initializers.Constant(self.init_sigma),
            name="sigma",
            autocast=False,
        )

    def mean_positions(self):
        """Each neuron's mean read position ``(N, 2)``, normalised coordinates (a free weight here)."""
        return self.mu

    def positions(self, training=False):
        """Read positions in normalised coordinates, ``(N, 2)``: sampled in training."""
        mu = self.mean_positions()
        if training:
            noise = keras.random.normal((self.n_neurons, 2), seed=self.seed_generator, dtype=mu.dtype)
            mu = mu + noise * ops.abs(self.sigma)[:, None]
        return ops.clip(mu, -1.0, 1.0)

    def read_points(self, training=False):
        """``(rows, columns)``, each ``(N,)`` float32: the read positions in grid cells."""
        height, width = self.grid_shape
        position = self.positions(training=training)
        return (position[:, 0] + 1.0) * 0.5 * (height - 1), (position[:, 1] + 1.0) * 0.5 * (width - 1)

    def read_mask(self, dtype="float32", training=False):
        """The same read as a dense mask of bilinear weights, ``(H * W, N)`` (for analysis)."""
        rows, columns = self.read_points(training=training)
        return triangle_mask(ops.cast(rows, dtype), ops.cast(columns, dtype), self.grid_shape)

    def drive(self, feature_maps, training=False):
        rows, columns = self.read_points(training=training)
        return point_read(feature_maps, rows, columns, self.features)

    def flops_per_image(self) -> int:
        """The gathered read: four cells x ``C`` channels per neuron."""
        return 2 * 4 * self.input_channels * self.n_neurons

    def place_at(self, positions) -> None:
        """Moves each neuron's mean position to a grid position ``(N, 2)`` (row, column), inside the grid."""
        positions = self._check_positions(positions, inside_grid=True)
        height, width = self.grid_shape
        scale = np.maximum(np.array([height, width]) - 1.0, 1.0)
        self.mu.assign((2.0 * positions / scale - 1.0).astype(self.mu.dtype))

    def rf_positions(self) -> np.ndarray:
        """``(N, 2)`` (row, column) of each neuron's mean position, in grid cells."""
        height, width = self.grid_shape
        mu = np.clip(keras.ops.convert_to_numpy(self.mean_positions()), -1.0, 1.0)
        return (mu + 1.0) * 0.5 * (np.array([height, width]) - 1.0)

    def get_config(self):
        config = super().get_config()
        config.update({"init_mu_range": self.init_mu_range, "init_sigma": self.init_sigma, "seed": self.seed})
        return config

