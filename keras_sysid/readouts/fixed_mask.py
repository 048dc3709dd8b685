"""The fixed-location readout of Batty et al. (2017): fixed masks, learned features."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_sysid.readouts._located import LocatedFeatureReadout


@keras.saving.register_keras_serializable(package="keras_sysid")
class FixedMaskReadout(LocatedFeatureReadout):
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
        start_from_data: Start each neuron where the training data place it when the model is adapted
            (:meth:`~keras_sysid.readouts.base.Readout.setup_from_data`); ``False``:
            every neuron at the grid's centre until :meth:`set_positions`.

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

    type_name = "fixed_mask"

    def __init__(
        self,
        n_neurons: int,
        mask_sigma: float = 1.0,
        l1: float = 0.001,
        features_initializer="truncated_normal_small",
        bias_initializer="zeros",
        start_from_data: bool = True,
        **kwargs,
    ):
        super().__init__(n_neurons, l1, features_initializer, bias_initializer, start_from_data=start_from_data,
                         **kwargs)
        if mask_sigma <= 0:
            raise ValueError(f"FixedMaskReadout needs mask_sigma > 0; got {mask_sigma}.")
        self.mask_sigma = float(mask_sigma)

    def build_location(self, height, width):
        centre = [(height - 1) / 2.0, (width - 1) / 2.0]
        self.positions = self.add_weight(
            shape=(self.n_neurons, 2),
            initializer=keras.initializers.Constant(np.tile(centre, (self.n_neurons, 1))),
            trainable=False,
            name="positions",
            # Float32 under a mixed policy too: bfloat16 would move a position by up to 1/8 cell.
            autocast=False,
        )

    def set_positions(self, positions) -> None:
        """Fixes each neuron's location.

        Args:
            positions: ``(N, 2)`` (row, column) in grid cells, inside the grid.
        """
        positions = self._check_positions(positions, inside_grid=True)
        self.positions.assign(positions.astype(self.positions.dtype))

    def place_at(self, positions) -> None:
        """Fixes each neuron's location: :meth:`set_positions`."""
        self.set_positions(positions)

    def read_mask(self, dtype="float32", training=False):
        """The fixed masks, ``(H * W, N)``, each summing to 1."""
        del training  # the mask does not depend on it
        height, width = self.grid_shape
        # Computed in the positions' float32, then cast: the mask, not the positions, is rounded.
        positions = self.positions
        rows = ops.cast(ops.arange(height), positions.dtype)[:, None] - positions[None, :, 0]
        columns = ops.cast(ops.arange(width), positions.dtype)[:, None] - positions[None, :, 1]
        scale = -0.5 / self.mask_sigma**2
        mask = ops.exp(scale * ops.square(rows))[:, None, :] * ops.exp(scale * ops.square(columns))[None, :, :]
        mask = ops.reshape(mask, (height * width, self.n_neurons))
        return ops.cast(mask / ops.sum(mask, axis=0, keepdims=True), dtype)

    def rf_positions(self) -> np.ndarray:
        """The fixed ``(N, 2)`` (row, column) positions, in grid cells."""
        return keras.ops.convert_to_numpy(self.positions).astype("float64")

    def get_config(self):
        config = super().get_config()
        config.update({"mask_sigma": self.mask_sigma})
        return config

