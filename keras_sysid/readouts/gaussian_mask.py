"""The Gaussian-mask readout of Höfling et al. (2024): a learned Gaussian window per neuron."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from keras_sysid.readouts._located import LocatedFeatureReadout


@keras.saving.register_keras_serializable(package="keras_sysid")
class ChannelAverage(keras.initializers.RandomNormal):
    """``N(1 / C, stddev)`` for a ``(C, N)`` weight: each neuron starts reading the channels' average.

    Positive and the same for every channel, so no neuron starts committed to
    a feature or a sign, and the initial drive does not grow with ``C``.

    Args:
        stddev: Spread around ``1 / C`` (breaks the symmetry between channels).
        seed: Seed of the spread (as for ``keras.initializers.RandomNormal``).
    """

    def __init__(self, stddev: float = 0.01, seed=None):
        super().__init__(mean=0.0, stddev=stddev, seed=seed)

    def __call__(self, shape, dtype=None):
        return keras.random.normal(shape, mean=1.0 / shape[0], stddev=self.stddev, dtype=dtype, seed=self.seed)

    def get_config(self):
        config = super().get_config()
        del config["mean"]
        return config


@keras.saving.register_keras_serializable(package="keras_sysid")
class GaussianMaskReadout(LocatedFeatureReadout):
    """Gaussian-mask readout: a learned isotropic Gaussian window per neuron, learned features.

    Höfling et al. (2024, eLife) constrain the factorized readout's spatial
    mask to a Gaussian: neuron ``n`` pools the core's feature maps through a
    mask of learned centre ``mu_n`` and learned width ``width_n`` (the same
    along rows and columns), normalised to sum 1 over the grid, so the width
    decides only *how far* a neuron pools, never how strongly it is driven.
    Unlike :class:`GaussianReadout` (one sampled point, bilinear read), the
    mask covers the whole grid and is deterministic, so the centre and the
    width get a gradient from every cell the window reaches.

    Parametrisation: the centre is kept in normalised coordinates, ``[-1, 1]``
    along each axis (``-1`` the first row / column, ``1`` the last), so the
    optimiser moves it across the grid at a rate independent of the grid's
    size; the width, in grid cells, is ``min_width + exp(log_width)``: always
    above ``min_width`` and updated on a log scale, so it can shrink from a
    broad search window to about a cell within a few epochs. The mask is
    separable, ``mask[h, w, n] = g_row[h, n] g_col[w, n]``, each factor a
    softmax over its axis of ``-d^2 / (2 width^2)``: exactly a normalised
    Gaussian, with no underflow however far a centre strays. Centre and
    width are float32 weights that are not autocast, so a mixed-precision
    fit does not quantise the centre to bfloat16's steps.

    ``drive = sum_{h,w,c} mask[h,w,n] features[c,n] x[b,h,w,c] + bias``; an L1
    penalty ``l1 * sum |features|`` is added as a layer loss.

    A neuron's mask finds its cell by gradient descent, so it must start
    within reach. By default (``start_from_data``) the model's ``adapt``
    starts each mask where the training responses place its neuron,
    ``start_width`` (3) cells wide: on the paper's Fig. 4 simulation with
    300 cells on 40x40 images the mean FEV went from 0.87, with every mask
    starting at the grid's centre, to 0.998. Without the data
    (``start_from_data=False``) every mask starts at the grid's centre,
    ``init_width`` (10) cells wide; narrow masks scattered over the grid
    found only the cells they happened to start near. Either way the mask
    starts reading the channels' average.

    Args:
        n_neurons: Number of neurons ``N``.
        l1: Strength of the L1 penalty on the features.
        init_mu_range: Initial centres are uniform in ``[-r, r]`` (normalised
            coordinates) along each axis: the central ``r`` of the grid
            (0: every mask starts at the centre).
        init_width: Initial width (standard deviation) of every mask, in grid
            cells, for a start without the data.
        start_width: Width of every mask when it starts where the data place
            its neuron (``start_from_data``), in grid cells: narrow, since the
            mask need not search.
        min_width: Lower bound of the width, in grid cells (``> 0``).
        features_initializer: Initializer of the ``(C, N)`` features (default
            :class:`ChannelAverage`, ``N(1 / C, 0.01)``).
        bias_initializer: Initializer of the ``(N,)`` bias.
        seed: Seed of the initial centres.
        start_from_data: Start each neuron where the training data place it when the model is adapted
            (:meth:`~keras_sysid.readouts.base.Readout.setup_from_data`); ``False``:
            uniform in ``[-init_mu_range, init_mu_range]``.

    Input shape:
        ``(batch, height, width, channels)`` feature maps.

    Output shape:
        ``(batch, n_neurons)`` drives.

    Example:
        >>> readout = GaussianMaskReadout(n_neurons=100, init_mu_range=0.5, init_width=2.0, seed=0)
        >>> readout(np.ones((8, 24, 52, 48), "float32")).shape
        (8, 100)
        >>> readout.rf_positions().shape
        (100, 2)
    """

    type_name = "gaussian_mask"

    def __init__(
        self,
        n_neurons: int,
        l1: float = 0.0,
        init_mu_range: float = 0.0,
        init_width: float = 10.0,
        start_width: float = 3.0,
        min_width: float = 0.25,
        features_initializer=None,
        bias_initializer="zeros",
        seed: int | None = None,
        start_from_data: bool = True,
        **kwargs,
    ):
        if features_initializer is None:
            features_initializer = ChannelAverage()
        super().__init__(n_neurons, l1, features_initializer, bias_initializer, start_from_data=start_from_data,
                         **kwargs)
        if not 0 <= init_mu_range <= 1:
            raise ValueError(f"GaussianMaskReadout: init_mu_range must be in [0, 1]; got {init_mu_range}.")
        if not min_width > 0:
            raise ValueError(f"GaussianMaskReadout: min_width must be > 0; got {min_width}.")
        if not init_width > min_width:
            raise ValueError(
                f"GaussianMaskReadout: init_width must be > min_width ({min_width}) > 0; got {init_width}."
            )
        if not start_width > min_width:
            raise ValueError(f"GaussianMaskReadout: start_width must be > min_width ({min_width}); got {start_width}.")
        self.init_mu_range = float(init_mu_range)
        self.init_width = float(init_width)
        self.start_width = float(start_width)
        self.min_width = float(min_width)
        self.seed = seed

    def build_location(self, height, width):
        # Not autocast: under a bfloat16 policy a centre near row 40 would move in steps of ~0.1 cells.
        self.mu = self.add_weight(
            shape=(self.n_neurons, 2),
            initializer=keras.initializers.RandomUniform(-self.init_mu_range, self.init_mu_range, seed=self.seed),
            autocast=False,
            name="mu",
        )
        self.log_width = self.add_weight(
            shape=(self.n_neurons,),
            initializer=keras.initializers.Constant(math.log(self.init_width - self.min_width)),
            autocast=False,
            name="log_width",
        )

    def centres(self):
        """Mask centres ``(N, 2)`` (row, column) in grid cells, unclipped (a differentiable tensor)."""
        height, width = self.grid_shape
        scale = ops.convert_to_tensor([(height - 1) / 2.0, (width - 1) / 2.0], dtype=self.mu.dtype)
        return (self.mu + 1.0) * scale

    def widths(self):
        """Mask widths ``(N,)`` in grid cells, each above ``min_width`` (a differentiable tensor)."""
        return self.min_width + ops.exp(self.log_width)

    def read_mask(self, dtype="float32", training=False):
        """The Gaussian masks, ``(H * W, N)``, each summing to 1 over the grid.

        Computed in the weights' float32 and cast to ``dtype`` at the end.
        """
        del training  # the mask does not depend on it
        height, width = self.grid_shape
        centres = self.centres()
        scale = -0.5 / ops.square(self.widths())  # (N,)

        def along(size, centre):  # (size, N): each column a 1-D Gaussian summing to 1
            distance = ops.cast(ops.arange(size), centres.dtype)[:, None] - centre[None, :]
            return ops.softmax(ops.square(distance) * scale[None, :], axis=0)

        rows, columns = along(height, centres[:, 0]), along(width, centres[:, 1])
        mask = ops.reshape(rows[:, None, :] * columns[None, :, :], (height * width, self.n_neurons))
        return ops.cast(mask, dtype)

    def place_at(self, positions, width: float | None = None) -> None:
        """Moves each neuron's centre to a grid position; optionally resets every width.

        Args:
            positions: ``(N, 2)`` (row, column) in grid cells, inside the grid.
            width: New width of every mask in grid cells (``> min_width``), or
                ``None`` to keep the widths.
        """
        positions = self._check_positions(positions, inside_grid=True)
        if width is not None and not width > self.min_width:
            raise ValueError(f"GaussianMaskReadout: width must be > min_width ({self.min_width}); got {width}.")
        height, width_cells = self.grid_shape
        scale = np.maximum(np.array([height, width_cells]) - 1.0, 1.0)
        self.mu.assign((2.0 * positions / scale - 1.0).astype(self.mu.dtype))
        if width is not None:
            self.log_width.assign(np.full((self.n_neurons,), math.log(width - self.min_width), self.log_width.dtype))

    def start_at(self, positions) -> None:
        """Starts each mask at a grid position, ``start_width`` wide."""
        self.place_at(positions, width=self.start_width)

    def rf_positions(self) -> np.ndarray:
        """``(N, 2)`` (row, column) of each mask's centre in grid cells, clipped to the grid."""
        height, width = self.grid_shape
        mu = np.clip(keras.ops.convert_to_numpy(self.mu).astype("float64"), -1.0, 1.0)
        return (mu + 1.0) * 0.5 * (np.array([height, width]) - 1.0)

    def mask_widths(self) -> np.ndarray:
        """``(N,)`` width (standard deviation) of each mask, in grid cells."""
        return keras.ops.convert_to_numpy(self.widths()).astype("float64")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "init_mu_range": self.init_mu_range,
                "init_width": self.init_width,
                "start_width": self.start_width,
                "min_width": self.min_width,
                "seed": self.seed,
            }
        )
        return config
