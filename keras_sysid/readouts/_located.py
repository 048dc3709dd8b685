"""The part shared by readouts that read ``C`` features through a per-neuron spatial mask."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_sysid.readouts._contraction import masked_readout
from keras_sysid.readouts.base import NeuronEvidence, Readout, readout_initializer


class LocatedFeatureReadout(Readout):
    """A readout that reads ``C`` learned features at one place per neuron.

    Subclasses create their location weights in :meth:`build_location`
    and implement ``read_mask(dtype, training)`` returning ``(H * W, N)``
    weights; the drive is ``sum_{hw,c} mask[hw,n] features[c,n] x[b,hw,c]``
    (plus the bias), the penalty ``l1 * sum |features|``.

    With ``start_from_data`` (the default), :meth:`setup_from_data` starts
    each neuron where the training data place it (:meth:`start_at`): a
    location found by gradient descent must start within reach of the cell,
    and a cell far from where a generic start puts it is otherwise never
    found.

    Args:
        n_neurons: Number of neurons ``N``.
        l1: Strength of the L1 penalty on the features.
        features_initializer: Initializer of the ``(C, N)`` features.
        bias_initializer: Initializer of the ``(N,)`` bias.
        start_from_data: Start each neuron at its position from the data when
            the model is adapted (``False``: the subclass's own start).
    """

    def __init__(self, n_neurons: int, l1: float, features_initializer, bias_initializer,
                 start_from_data: bool = True, **kwargs):
        super().__init__(n_neurons, bias_initializer=bias_initializer, **kwargs)
        if l1 < 0:
            raise ValueError(f"{type(self).__name__}: l1 must be >= 0; got {l1}.")
        self.l1 = float(l1)
        self.features_initializer = readout_initializer(features_initializer)
        self.start_from_data = bool(start_from_data)

    def setup_from_data(self, evidence: NeuronEvidence) -> None:
        """With ``start_from_data`` and responses, starts each neuron at ``evidence.grid_positions()`` (:meth:`start_at`)."""
        if self.start_from_data and evidence.locate is not None:
            self.start_at(evidence.grid_positions())

    def start_at(self, positions) -> None:
        """Starts each neuron at a grid position ``(N, 2)`` before fitting (default: :meth:`place_at`)."""
        self.place_at(positions)

    def build_location(self, height: int, width: int) -> None:
        """Creates the location weights (before the features, which keeps weight files' order)."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_location(height, width).")

    def read_mask(self, dtype="float32", training=False):
        """``(H * W, N)`` spatial read weights."""
        raise NotImplementedError(f"{type(self).__name__} must implement read_mask(dtype, training).")

    def build_readout(self, height, width, channels):
        self.build_location(height, width)
        self.features = self.add_weight(
            shape=(channels, self.n_neurons), initializer=self.features_initializer, name="features"
        )

    def drive(self, feature_maps, training=False):
        return masked_readout(feature_maps, self.read_mask(feature_maps.dtype, training=training), self.features)

    def has_penalty(self) -> bool:
        return self.l1 > 0

    def penalty(self):
        """``l1 * sum |features|`` (a scalar)."""
        return self.l1 * ops.sum(ops.abs(self.features))

    def channel_weights(self) -> np.ndarray:
        """How much each neuron reads each channel: ``|features|``, ``(C, N)``."""
        return np.abs(keras.ops.convert_to_numpy(self.features))

    def flops_per_image(self) -> int:
        """As the factorized readout: the ``(C, H * W) @ (H * W, N)`` read plus the feature product."""
        height, width = self.grid_shape
        return 2 * self.input_channels * self.n_neurons * (height * width + 1)

    def get_config(self):
        config = super().get_config()
        config.update({"l1": self.l1, "features_initializer": keras.initializers.serialize(self.features_initializer),
                       "start_from_data": self.start_from_data})
        return config
