"""A Gaussian readout whose positions are predicted from where each neuron sits on cortex."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_sysid.readouts.gaussian import GaussianReadout


@keras.saving.register_keras_serializable(package="keras_sysid")
class CortexGaussianReadout(GaussianReadout):
    """Gaussian readout with ``mu_n = MLP(cortical position of neuron n)``, shared by all neurons.

    Visual cortex is retinotopic: neighbouring neurons look at neighbouring
    places. Instead of ``N`` free positions, a small MLP maps each neuron's
    (standardised) cortical coordinates to its mean read position, trained end
    to end (the ``grid_mean_predictor`` of neuralpredictors' Gaussian readout,
    used by Lurz et al. 2021 and the SENSORIUM baselines). A neuron with few
    reliable responses then inherits its neighbours' position. Sampling
    around ``mu_n`` in training, the spreads ``sigma_n``, the features and the
    L1 penalty are those of :class:`GaussianReadout`.

    Set the coordinates once, before training, with
    :meth:`set_cortical_coordinates`; they are stored (standardised) in a
    non-trainable weight, so saved models carry them.

    Args:
        n_neurons: Number of neurons ``N``.
        cortical_dims: How many leading columns of the coordinates to use
            (2: the cortical surface, x and y).
        hidden_units: Widths of the MLP's hidden layers.
        activation: Their nonlinearity; the output layer is ``tanh``, so
            positions stay in ``[-1, 1]``.
        l1: As :class:`GaussianReadout`.
        init_sigma: As :class:`GaussianReadout`.
        features_initializer: As :class:`GaussianReadout`.
        bias_initializer: As :class:`GaussianReadout`.
        seed: As :class:`GaussianReadout`.

    Input shape:
        ``(batch, height, width, channels)`` feature maps.

    Output shape:
        ``(batch, n_neurons)`` drives.

    Example:
        >>> readout = CortexGaussianReadout(n_neurons=100)
        >>> readout.build((None, 24, 52, 48))
        >>> readout.set_cortical_coordinates(coordinates)   # (100, 3), e.g. cell_motor_coordinates
        >>> readout(np.ones((8, 24, 52, 48), "float32")).shape
        (8, 100)
    """

    type_name = "cortex_gaussian"
    # The neuron metadata it reads (meta/neurons/cell_motor_coordinates.npy in the published layout).
    coordinates_key = "cell_motor_coordinates"

    def __init__(
        self,
        n_neurons: int,
        cortical_dims: int = 2,
        hidden_units=(30,),
        activation: str = "elu",
        l1: float = 0.001,
        init_sigma: float = 0.2,
        features_initializer="truncated_normal_small",
        bias_initializer="zeros",
        seed: int | None = None,
        **kwargs,
    ):
        kwargs.pop("init_mu_range", None)  # positions are predicted, not initialised
        super().__init__(n_neurons, l1=l1, init_mu_range=0.0, init_sigma=init_sigma,
                         features_initializer=features_initializer, bias_initializer=bias_initializer,
                         seed=seed, **kwargs)
        if int(cortical_dims) < 1:
            raise ValueError(f"CortexGaussianReadout: cortical_dims must be >= 1; got {cortical_dims}.")
        self.cortical_dims = int(cortical_dims)
        self.hidden_units = [int(u) for u in hidden_units]
        if any(u < 1 for u in self.hidden_units):
            raise ValueError(f"CortexGaussianReadout: hidden_units must all be >= 1; got {list(hidden_units)}.")
        self.activation = activation
        self._activation_fn = keras.activations.get(activation)

    def build_location(self, height, width):
        self.cortical_coordinates = self.add_weight(
            shape=(self.n_neurons, self.cortical_dims), initializer="zeros", trainable=False,
            name="cortical_coordinates", autocast=False,
        )
        # The MLP's weights are the readout's own (no sublayers), so the bias
        # stays its last weight, and stay float32 under any policy, as the
        # free positions of GaussianReadout do.
        self.position_weights = []
        widths = [self.cortical_dims] + self.hidden_units + [2]
        for index, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            kernel = self.add_weight(shape=(n_in, n_out), initializer=keras.initializers.GlorotUniform(),
                                     name=f"position_kernel{index}", autocast=False)
            offset = self.add_weight(shape=(n_out,), initializer="zeros", name=f"position_bias{index}", autocast=False)
            self.position_weights.append((kernel, offset))
        self.sigma = self.add_weight(
            shape=(self.n_neurons,), initializer=keras.initializers.Constant(self.init_sigma), name="sigma",
            autocast=False,
        )

    def set_cortical_coordinates(self, coordinates) -> None:
        """Stores each neuron's cortical position, standardised per axis.

        Args:
            coordinates: ``(N, D)`` with ``D >= cortical_dims``, e.g. the
                data set's ``meta/neurons/cell_motor_coordinates`` (x, y, depth
                in micrometres); the first ``cortical_dims`` columns are used.
        """
        coordinates = np.asarray(coordinates, dtype="float64")
        if coordinates.ndim != 2 or coordinates.shape[0] != self.n_neurons or coordinates.shape[1] < self.cortical_dims:
            raise ValueError(
                f"CortexGaussianReadout: cortical coordinates must have shape ({self.n_neurons}, >= "
                f"{self.cortical_dims}), one row per neuron; got {coordinates.shape}."
            )
        bad = ~np.isfinite(coordinates).all(axis=1)
        if bad.any():
            raise ValueError(f"CortexGaussianReadout: cortical coordinates are NaN or inf for {int(bad.sum())} of "
                             f"{self.n_neurons} neurons (first: neuron {int(np.argmax(bad))}); every neuron needs a "
                             "position on cortex, or use a readout without one (gaussian).")
        used = coordinates[:, : self.cortical_dims]
        spread = used.std(axis=0)
        standardised = (used - used.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
        self.cortical_coordinates.assign(standardised.astype("float32"))

    def setup_from_neurons(self, neurons: dict) -> None:
        """Sets the cortical coordinates from ``neurons[coordinates_key]``; raises ``ValueError`` if absent or bad."""
        if self.coordinates_key not in neurons:
            raise ValueError(f"CortexGaussianReadout needs each neuron's cortical position, "
                             f"neurons[{self.coordinates_key!r}] (meta/neurons/{self.coordinates_key}.npy), which "
                             f"this recording lacks (it has {sorted(neurons)}).")
        self.set_cortical_coordinates(neurons[self.coordinates_key])

    def mean_positions(self):
        x = self.cortical_coordinates
        last = len(self.position_weights) - 1
        for index, (kernel, offset) in enumerate(self.position_weights):
            x = ops.matmul(x, kernel) + offset
            x = ops.tanh(x) if index == last else self._activation_fn(x)
        return x

    def place_at(self, positions) -> None:
        raise NotImplementedError(
            "CortexGaussianReadout predicts its positions from cortical coordinates; they cannot be placed, "
            "only trained (set_cortical_coordinates, then fit)."
        )

    def get_config(self):
        config = super().get_config()
        config.pop("init_mu_range")
        config.update({"cortical_dims": self.cortical_dims, "hidden_units": self.hidden_units,
                       "activation": self.activation})
        return config
