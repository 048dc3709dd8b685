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

    The coordinates are set before training by the model's ``adapt(...,
    neurons=...)`` (or :meth:`set_cortical_coordinates`); they are stored
    (standardised) in a non-trainable weight, so saved models carry them.

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
        start_from_data: Start each neuron where the training data place it when the model is adapted
            (:meth:`~keras_sysid.readouts.base.Readout.setup_from_data`); ``False``:
            the MLP's random start (positions near the grid's centre).

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
    # The neuron metadata it reads, the first present: the published layout's
    # meta/neurons/cell_motor_coordinates.npy, or an NWB file's ROI centroids on the imaging plane.
    coordinates_keys = ("cell_motor_coordinates", "roi_centroid")

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
        start_from_data: bool = True,
        **kwargs,
    ):
        kwargs.pop("init_mu_range", None)  # positions are predicted, not initialised
        super().__init__(n_neurons, l1=l1, init_mu_range=0.0, init_sigma=init_sigma,
                         features_initializer=features_initializer, bias_initializer=bias_initializer,
                         seed=seed, start_from_data=start_from_data, **kwargs)
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

    def setup_from_data(self, evidence) -> None:
        """Sets the cortical coordinates from the neurons' metadata, then (``start_from_data``) the position map.

        The coordinates are the first of :attr:`coordinates_keys` present in
        ``evidence.neurons``. With ``start_from_data`` the MLP then starts as
        the smooth map from cortex to the positions the data give
        (:meth:`place_at`), so training refines a retinotopic map instead of
        searching from the grid's centre.

        Raises:
            ValueError: metadata was given but holds no cortical position, or a bad one.
        """
        key = next((key for key in self.coordinates_keys if key in evidence.neurons), None)
        if key is None:
            if not evidence.neurons:
                return  # no metadata given (adapt without neurons): set_cortical_coordinates is the caller's
            raise ValueError(f"CortexGaussianReadout needs each neuron's cortical position, one of "
                             f"neurons{list(self.coordinates_keys)} (meta/neurons/{self.coordinates_keys[0]}.npy, "
                             f"or an NWB file's ROI masks), which this recording lacks (it has {sorted(evidence.neurons)}).")
        self.set_cortical_coordinates(evidence.neurons[key])
        super().setup_from_data(evidence)

    def mean_positions(self):
        x = self.cortical_coordinates
        last = len(self.position_weights) - 1
        for index, (kernel, offset) in enumerate(self.position_weights):
            x = ops.matmul(x, kernel) + offset
            x = ops.tanh(x) if index == last else self._activation_fn(x)
        return x

    def place_at(self, positions, ridge: float = 1e-3) -> None:
        """Sets the MLP's output layer so the positions it predicts from cortex best match ``positions``.

        The positions are predicted, not free: the hidden layers stay as they
        are and the output layer is the ridge regression of the target
        positions (through ``arctanh``, the output's inverse) on the last
        hidden layer's activations. The result is the smooth retinotopic map
        closest to the given positions, so noisy positions of single neurons
        are averaged over their cortical neighbours. Set the cortical
        coordinates first.

        Args:
            positions: ``(N, 2)`` (row, column) in grid cells, inside the grid.
            ridge: Ridge penalty relative to the activations' mean square.
        """
        positions = self._check_positions(positions, inside_grid=True)
        if np.ptp(keras.ops.convert_to_numpy(self.cortical_coordinates), axis=0).max() == 0:
            raise ValueError("CortexGaussianReadout: set the cortical coordinates first (adapt(..., neurons=...) or "
                             "set_cortical_coordinates): positions are predicted from them.")
        height, width = self.grid_shape
        scale = np.maximum(np.array([height, width]) - 1.0, 1.0)
        target = np.arctanh(np.clip(2.0 * positions / scale - 1.0, -0.98, 0.98))
        hidden = keras.ops.convert_to_numpy(self.cortical_coordinates).astype("float64")
        for kernel, offset in self.position_weights[:-1]:
            hidden = keras.ops.convert_to_numpy(
                self._activation_fn(keras.ops.convert_to_tensor(
                    hidden @ keras.ops.convert_to_numpy(kernel) + keras.ops.convert_to_numpy(offset), "float32")))
            hidden = hidden.astype("float64")
        mean = hidden.mean(axis=0)
        centred = hidden - mean
        gram = centred.T @ centred
        penalty = ridge * np.trace(gram) / max(len(gram), 1) + 1e-12
        kernel = np.linalg.solve(gram + penalty * np.eye(len(gram)), centred.T @ (target - target.mean(axis=0)))
        offset = target.mean(axis=0) - mean @ kernel
        last_kernel, last_offset = self.position_weights[-1]
        last_kernel.assign(kernel.astype("float32"))
        last_offset.assign(offset.astype("float32"))

    def get_config(self):
        config = super().get_config()
        config.pop("init_mu_range")
        config.update({"cortical_dims": self.cortical_dims, "hidden_units": self.hidden_units,
                       "activation": self.activation})
        return config
