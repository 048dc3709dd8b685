"""Behaviour -> a positive gain per neuron and trial (the SENSORIUM+ baseline's modulator)."""

from __future__ import annotations

import keras
from keras import ops

from keras_sysid.behavior._mlp import build_mlp, check_hidden_units, mlp_layers, run_mlp


@keras.saving.register_keras_serializable(package="keras_sysid")
class GainModulator(keras.layers.Layer):
    """An MLP from (standardised) behaviour to a positive gain on each neuron's rate.

    Arousal and locomotion scale visual responses up and down, neuron by
    neuron. ``gain = elu(mlp(behavior)) + 1`` is positive, and exactly 1 before
    training (the output layer starts at zero), so the modulated model starts
    where the image-only one does.

    Args:
        n_neurons: Number of neurons ``N``.
        hidden_units: Widths of the hidden layers.
        activation: Their nonlinearity.
        l2: Penalty on the output layer's kernel (0: none). Without it, gains
            fit to noise cost accuracy when behaviour does not modulate.

    Input shape:
        ``(batch, n_behavior)``, standardised.

    Output shape:
        ``(batch, n_neurons)`` positive gains.

    Example:
        >>> GainModulator(n_neurons=100)(np.zeros((4, 3), "float32")).shape
        (4, 100)
    """

    def __init__(self, n_neurons: int, hidden_units=(16,), activation: str = "elu", l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if int(n_neurons) < 1:
            raise ValueError(f"GainModulator: n_neurons must be >= 1; got {n_neurons}.")
        self.n_neurons = int(n_neurons)
        self.hidden_units = check_hidden_units("GainModulator", hidden_units)
        self.activation = activation
        if l2 < 0:
            raise ValueError(f"GainModulator: l2 must be >= 0; got {l2}.")
        self.l2 = float(l2)
        self.mlp = mlp_layers(self.hidden_units, activation, self.n_neurons, "modulator", self.l2)

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(f"GainModulator expects (batch, n_behavior); got {tuple(input_shape)}.")
        build_mlp(self.mlp, input_shape)

    def call(self, behavior):
        return ops.elu(run_mlp(self.mlp, behavior)) + 1.0

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_neurons)

    def get_config(self):
        config = super().get_config()
        config.update({"n_neurons": self.n_neurons, "hidden_units": self.hidden_units, "activation": self.activation,
                       "l2": self.l2})
        return config
