"""An inference copy of a Gaussian readout: each neuron read at its fixed mean position, the read's layout precomputed."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_sysid.readouts._point_read import DEFAULT_BLOCK_SIZE, bilinear_corners, block_layout, read_blocks
from keras_sysid.readouts.base import Readout, readout_initializer


@keras.saving.register_keras_serializable(package="keras_sysid")
class FixedPointReadout(Readout):
    """A point readout whose read positions are fixed: what a Gaussian readout computes at test time.

    ``drive[b, n] = sum_c features[c, n] * bilinear(x[b, :, :, c], row_n, column_n) + bias[n]``,
    exactly the inference read of a :class:`~keras_sysid.readouts.GaussianReadout`
    (or :class:`~keras_sysid.readouts.CortexGaussianReadout`) at its mean
    positions. The Gaussian readout sorts its neurons' grid corners into
    blocks on every call, because its positions move in training; here the
    positions are fixed, so the corners' blocks are computed once, when the
    positions are set, and stored with the layer. The read is then gathers
    and matmuls only, which every runtime can express (OpenVINO, for one, has
    no kernel for the sorts' searches), and each call skips the sort.

    Make one from a fitted readout with :meth:`from_point_readout`, or a whole
    model with :func:`keras_sysid.inference_forms.with_fixed_point_readout`
    (:func:`keras_sysid.export.export_model` does so). Inference only: the
    positions and features are non-trainable; only the bias is (as every
    readout's). It is a copy: training the source afterwards does not change it.

    Args:
        n_neurons: Number of neurons ``N``.
        block_size: Corners per block of the read
            (``keras_sysid.readouts._point_read``).
        features_initializer: Initializer of the ``(C, N)`` features (a
            converted readout gets its source's features instead). A layer
            made from defaults reads at random positions, for the contract tests.
        bias_initializer: Initializer of the ``(N,)`` bias.

    Input shape:
        ``(batch, height, width, channels)`` feature maps of a core.

    Output shape:
        ``(batch, n_neurons)`` drives (before the output nonlinearity).

    Example:
        >>> fixed = FixedPointReadout.from_point_readout(model.readout)  # a fitted GaussianReadout
        >>> np.allclose(fixed(feature_maps), model.readout(feature_maps), atol=1e-5)
        True
    """

    type_name = "fixed_point"

    def __init__(
        self,
        n_neurons: int,
        block_size: int = DEFAULT_BLOCK_SIZE,
        features_initializer="truncated_normal_small",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(n_neurons, bias_initializer=bias_initializer, **kwargs)
        if int(block_size) < 1:
            raise ValueError(f"FixedPointReadout: block_size must be >= 1; got {block_size}.")
        self.block_size = int(block_size)
        self.features_initializer = readout_initializer(features_initializer)

    @classmethod
    def from_point_readout(cls, readout, name: str | None = None) -> FixedPointReadout:
        """A built ``FixedPointReadout`` reading where ``readout`` reads at test time.

        Args:
            readout: A built readout with ``read_points(training=False)`` and
                ``features`` ``(C, N)``: a :class:`~keras_sysid.readouts.GaussianReadout`
                or a subclass (the cortex Gaussian readout).
            name: The new layer's name (default: ``readout``'s).

        Returns:
            The new layer, built, holding ``readout``'s mean read positions,
            features and bias.

        Raises:
            ValueError: ``readout`` is not a built point readout.
        """
        if not hasattr(readout, "read_points"):
            raise ValueError(
                "FixedPointReadout.from_point_readout needs a readout that reads at one point per neuron (a "
                f"GaussianReadout or CortexGaussianReadout); got {type(readout).__name__}."
            )
        if not readout.built:
            raise ValueError(f"FixedPointReadout.from_point_readout needs a built {type(readout).__name__}.")
        layer = cls(
            readout.n_neurons,
            bias_initializer=keras.initializers.serialize(readout.bias_initializer),
            name=readout.name if name is None else name,
            dtype=readout.dtype_policy,
        )
        height, width = readout.grid_shape
        layer.build((None, height, width, readout.input_channels))
        rows, columns = readout.read_points(training=False)
        layer.set_points(ops.convert_to_numpy(rows), ops.convert_to_numpy(columns))
        layer.features.assign(ops.convert_to_numpy(readout.features))
        layer.bias.assign(ops.convert_to_numpy(readout.bias))
        return layer

    # -- the contract ---------------------------------------------------------------

    def build_readout(self, height, width, channels):
        n_corners = 4 * self.n_neurons
        # The read's static block count (see _point_read.block_layout).
        n_blocks = -(-n_corners // self.block_size) + min(height * width, n_corners)
        self.features = self.add_weight(
            shape=(channels, self.n_neurons), initializer=self.features_initializer, name="features", trainable=False
        )
        # float32 under any policy: a read point is never rounded to a coarse grid.
        self.corner_weights = self.add_weight(
            shape=(self.n_neurons, 4), initializer="zeros", name="corner_weights", trainable=False, autocast=False
        )

        def index(shape, name):
            return self.add_weight(shape=shape, initializer="zeros", dtype="int32", name=name, trainable=False)

        self.corner_cells = index((self.n_neurons, 4), "corner_cells")
        self.slot_of_corner = index((n_corners,), "slot_of_corner")
        self.corner_of_slot = index((n_blocks * self.block_size,), "corner_of_slot")
        self.block_cell = index((n_blocks,), "block_cell")
        start = np.random.default_rng(0).uniform(0.0, 1.0, (self.n_neurons, 2)) * (np.array([height, width]) - 1.0)
        self.set_points(start[:, 0], start[:, 1])

    def set_points(self, rows, columns) -> None:
        """Fixes each neuron's read point and recomputes the read's layout.

        Args:
            rows: ``(N,)`` row of each point, in grid cells, within ``[0, H - 1]``.
            columns: ``(N,)`` column, within ``[0, W - 1]``.

        Raises:
            ValueError: a shape is wrong, or a point is not finite or lies outside the grid.
        """
        points = self._check_positions(np.stack([np.asarray(rows), np.asarray(columns)], axis=1), inside_grid=True)
        height, width = self.grid_shape
        cells, weights = bilinear_corners(
            ops.convert_to_tensor(points[:, 0], "float32"), ops.convert_to_tensor(points[:, 1], "float32"),
            (height, width))
        slot_of_corner, corner_of_slot, block_cell, _ = block_layout(
            ops.reshape(cells, (-1,)), height * width, self.block_size)
        self.corner_cells.assign(ops.convert_to_numpy(cells))
        self.corner_weights.assign(ops.convert_to_numpy(weights))
        self.slot_of_corner.assign(ops.convert_to_numpy(slot_of_corner))
        self.corner_of_slot.assign(ops.convert_to_numpy(corner_of_slot))
        self.block_cell.assign(ops.convert_to_numpy(block_cell))

    def drive(self, feature_maps, training=False):
        return read_blocks(feature_maps, self.corner_weights, self.features,
                           (self.slot_of_corner, self.corner_of_slot, self.block_cell))

    def rf_positions(self) -> np.ndarray:
        """``(N, 2)`` (row, column) of each neuron's read point, in grid cells."""
        width = self.grid_shape[1]
        top_left = np.asarray(ops.convert_to_numpy(self.corner_cells))[:, 0]
        weights = np.asarray(ops.convert_to_numpy(self.corner_weights), dtype="float64")
        # The weights of the lower row (right column) are how far the point lies below (right of) the top-left cell.
        rows = top_left // width + weights[:, 2] + weights[:, 3]
        columns = top_left % width + weights[:, 1] + weights[:, 3]
        return np.stack([rows, columns], axis=1)

    def place_at(self, positions, **kwargs) -> None:
        """Moves each neuron's read point to a grid position ``(N, 2)`` (row, column), inside the grid."""
        positions = self._check_positions(positions, inside_grid=True)
        self.set_points(positions[:, 0], positions[:, 1])

    def channel_weights(self) -> np.ndarray:
        """How much each neuron reads each channel: ``|features|``, ``(C, N)``."""
        return np.abs(ops.convert_to_numpy(self.features))

    def flops_per_image(self) -> int:
        """The gathered read: four cells x ``C`` channels per neuron."""
        return 2 * 4 * self.input_channels * self.n_neurons

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "block_size": self.block_size,
                "features_initializer": keras.initializers.serialize(self.features_initializer),
            }
        )
        return config
