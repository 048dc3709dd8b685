"""The small multilayer perceptron behind the shifter and the modulator."""

from __future__ import annotations

import keras


def check_hidden_units(owner: str, hidden_units) -> list[int]:
    """``hidden_units`` as a list of positive ints, or a ``ValueError`` naming ``owner``."""
    units = [int(u) for u in hidden_units]
    if any(u < 1 for u in units):
        raise ValueError(f"{owner}: hidden_units must all be >= 1; got {list(hidden_units)}.")
    return units


def mlp_layers(hidden_units: list[int], activation: str, outputs: int, prefix: str, l2: float = 0.0) -> list[keras.layers.Layer]:
    """Dense layers ``hidden_units... -> outputs``; the output layer starts at zero.

    A zero output layer makes the network's initial output exactly 0 whatever
    its input, so a shifter starts with no shift and a modulator with unit gain.
    ``l2`` penalises the output layer's kernel (``l2 * sum W^2``, a layer
    loss), so the output leaves 0 only as far as the data pull it.
    """
    layers = [keras.layers.Dense(units, activation=activation, name=f"{prefix}{i}") for i, units in enumerate(hidden_units)]
    layers.append(keras.layers.Dense(
        outputs, kernel_initializer="zeros", bias_initializer="zeros", name=f"{prefix}_out",
        kernel_regularizer=keras.regularizers.L2(l2) if l2 > 0 else None,
    ))
    return layers


def build_mlp(layers, input_shape) -> None:
    shape = tuple(input_shape)
    for layer in layers:
        layer.build(shape)
        shape = layer.compute_output_shape(shape)


def run_mlp(layers, x):
    """``x`` through ``layers`` in order."""
    for layer in layers:
        x = layer(x)
    return x
