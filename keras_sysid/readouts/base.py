"""The contract every readout keeps, and the registry derived from it."""

from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar

import keras
import numpy as np
from keras import ops

from keras_sysid.registry import Registry

REGISTRY = Registry("readout")


def check_feature_maps(layer_name: str, input_shape) -> tuple[int, int, int]:
    """``(height, width, channels)`` of a ``(batch, H, W, C)`` shape, or a clear error."""
    if len(input_shape) != 4 or any(d is None for d in input_shape[1:]):
        raise ValueError(
            f"{layer_name} expects feature maps of shape (batch, height, width, channels) "
            f"with known height, width and channels; got {tuple(input_shape)}."
        )
    return int(input_shape[1]), int(input_shape[2]), int(input_shape[3])


def readout_initializer(identifier):
    """Keras initializer by identifier; ``"truncated_normal_small"`` is N(0, 0.01) truncated.

    Readout weights start small so the penalty does not dominate the first
    steps and no neuron begins committed to a location.
    """
    if identifier == "truncated_normal_small":
        return keras.initializers.TruncatedNormal(stddev=0.01)
    return keras.initializers.get(identifier)


@dataclasses.dataclass
class NeuronEvidence:
    """What the training data say about each neuron: what a readout sets itself up from before fitting.

    ``SystemIdentificationModel.adapt`` makes one (:meth:`of`) and hands it
    to :meth:`Readout.setup_from_data`. Positions are estimated only when a
    readout asks for them (readouts without positions cost nothing).

    Attributes:
        neurons: The neurons' metadata ``{key: (N, ...)}`` (e.g.
            ``cell_motor_coordinates``, ``roi_centroid``); empty if none was given.
        locate: Returns ``(N, 2)`` (row, column) positions on the readout's
            grid where the data place each neuron; ``None`` without responses.
    """

    neurons: dict = dataclasses.field(default_factory=dict)
    locate: Callable[[], np.ndarray] | None = None
    _positions: np.ndarray | None = dataclasses.field(default=None, repr=False)  # the first locate()'s, kept

    @classmethod
    def of(cls, model, images, responses=None, neurons: dict | None = None, behavior=None) -> "NeuronEvidence":
        """The evidence of a model's training data, for its readout's :meth:`Readout.setup_from_data`.

        Args:
            model: A :class:`~keras_sysid.models.SystemIdentificationModel`.
            images: ``(T, *image_shape)`` training images in the data's units.
            responses: ``(T, N)`` their responses (``None``: no positions to give).
            neurons: The neurons' metadata ``{key: (N, ...)}``.
            behavior: ``(T, n_behavior)``, for a core that takes behaviour channels.
        """
        from keras_sysid.positions import locate_neurons

        locate = None if responses is None else (
            lambda: locate_neurons(model, images, responses, behavior=behavior))
        return cls(neurons=dict(neurons or {}), locate=locate)

    def grid_positions(self) -> np.ndarray:
        """``(N, 2)`` (row, column) grid positions from the data, estimated on the first call.

        Raises:
            ValueError: no responses were given to estimate them from.
        """
        if self._positions is None:
            if self.locate is None:
                raise ValueError("the neurons' positions need their training responses (adapt(images, responses)).")
            self._positions = np.asarray(self.locate(), dtype="float64")
        return self._positions


class Readout(keras.layers.Layer):
    """Base class of readouts: the per-neuron *where* (and which features).

    A readout maps a core's feature maps ``(batch, H, W, C)`` to one linear
    drive per neuron ``(batch, n_neurons)``; the model's output nonlinearity
    turns drives into rates. Every readout keeps this contract:

    - ``n_neurons`` is set at construction (``>= 1``).
    - ``build`` checks the input is ``(batch, H, W, C)``, sets ``grid_shape``,
      calls :meth:`build_readout` for the subclass's weights, then creates the
      ``(N,)`` ``bias`` last (the model sets it from mean responses, see
      ``SystemIdentificationModel.set_mean_responses``).
    - ``call`` adds :meth:`penalty` as a float32 layer loss whenever
      :meth:`has_penalty` is true, and returns ``drive(x) + bias``.
    - :meth:`rf_positions` ``(N, 2)`` and :meth:`channel_weights` ``(C, N)``
      say where each neuron looks and what it reads, or raise
      ``NotImplementedError`` naming the readout.
    - :meth:`place_at` puts (or starts) neurons at given grid positions where
      the readout has positions; otherwise ``NotImplementedError``.
    - :meth:`setup_from_data` takes, before fitting, what the readout needs
      from the training data (a :class:`NeuronEvidence`: the neurons'
      metadata, where the responses place each neuron); the model's
      ``adapt`` calls it, so no caller checks a readout's type.
    - :meth:`flops_per_image` counts the multiply-adds its math needs.
    - ``get_config`` returns every constructor argument.

    A subclass sets a class attribute ``type_name`` (e.g. ``"factorized"``);
    defining the class registers it, so ``build_model(readout={"type":
    "factorized"})`` and :func:`keras_sysid.readouts.get` find it. Decorate it
    with ``@keras.saving.register_keras_serializable(package="keras_sysid")``.

    Args:
        n_neurons: Number of neurons ``N``.
        bias_initializer: Initializer of the ``(N,)`` bias.
        **kwargs: Keras layer arguments (``name``, ``dtype``...).
    """

    type_name: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "type_name" in cls.__dict__ and cls.type_name is not None:
            REGISTRY.add(cls)

    def __init__(self, n_neurons: int, bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if int(n_neurons) < 1:
            raise ValueError(f"{type(self).__name__}: n_neurons must be >= 1; got {n_neurons}.")
        self.n_neurons = int(n_neurons)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    # -- what a subclass implements --------------------------------------------

    def build_readout(self, height: int, width: int, channels: int) -> None:
        """Creates the subclass's weights for a ``(H, W, C)`` grid."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_readout(height, width, channels).")

    def drive(self, feature_maps, training=False):
        """``(batch, H, W, C) -> (batch, N)``, without the bias."""
        raise NotImplementedError(f"{type(self).__name__} must implement drive(feature_maps, training).")

    def has_penalty(self) -> bool:
        """Whether :meth:`penalty` can be non-zero (skips the loss otherwise)."""
        return False

    def penalty(self):
        """The readout's regularisation penalty, a scalar (0 by default)."""
        return ops.zeros(())

    def rf_positions(self) -> np.ndarray:
        """``(N, 2)`` (row, column) receptive-field centres in grid cells."""
        raise NotImplementedError(f"{type(self).__name__} has no notion of receptive-field position.")

    def channel_weights(self) -> np.ndarray:
        """``(C, N)`` non-negative: how much each neuron reads each channel."""
        raise NotImplementedError(f"{type(self).__name__} does not say which channels each neuron reads.")

    def place_at(self, positions, **kwargs) -> None:
        """Puts each neuron at (or starts it from) a grid position ``(N, 2)`` (row, column)."""
        raise NotImplementedError(f"{type(self).__name__} has no positions to place neurons at.")

    def flops_per_image(self) -> int:
        """FLOPs (2 per multiply-add) of one image's forward pass through the readout."""
        raise NotImplementedError(f"{type(self).__name__} does not count its FLOPs.")

    def setup_from_data(self, evidence: NeuronEvidence) -> None:
        """Sets up, before fitting, what this readout takes from the training data (default: nothing).

        ``SystemIdentificationModel.adapt`` calls it (after building the
        readout) with the neurons' metadata and a lazy estimate of where the
        responses place each neuron, so a readout that needs metadata, or
        starts its positions from the data, does so here instead of anyone
        checking its type.

        Args:
            evidence: A :class:`NeuronEvidence`.

        Raises:
            ValueError: the metadata it needs is missing or unusable (named).
        """

    # -- the contract, kept here ------------------------------------------------

    def build(self, input_shape):
        height, width, channels = check_feature_maps(type(self).__name__, input_shape)
        self.grid_shape = (height, width)
        self.input_channels = channels
        self.build_readout(height, width, channels)
        # Last, so that weight files keep the order (..., bias) of every readout.
        self.bias = self.add_weight(shape=(self.n_neurons,), initializer=self.bias_initializer, name="bias")

    def call(self, feature_maps, training=False):
        if self.has_penalty():
            # In float32 even under a mixed-precision policy: losses are summed in float32.
            self.add_loss(ops.cast(self.penalty(), "float32"))
        return self.drive(feature_maps, training=training) + ops.cast(self.bias, feature_maps.dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_neurons)

    def _check_positions(self, positions, inside_grid: bool = False) -> np.ndarray:
        positions = np.asarray(positions, dtype="float64")
        name = type(self).__name__
        if positions.shape != (self.n_neurons, 2):
            raise ValueError(f"{name}: positions must have shape ({self.n_neurons}, 2); got {positions.shape}.")
        if not np.all(np.isfinite(positions)):
            raise ValueError(f"{name}: positions contain NaN or inf.")
        if inside_grid:
            limit = np.asarray(self.grid_shape) - 1.0
            if np.any(positions < 0) or np.any(positions > limit):
                raise ValueError(f"{name}: positions must lie in the grid [0, {limit[0]}] x [0, {limit[1]}].")
        return positions

    def get_config(self):
        config = super().get_config()
        config.update(
            {"n_neurons": self.n_neurons, "bias_initializer": keras.initializers.serialize(self.bias_initializer)}
        )
        return config
