"""Eye position -> a per-trial shift of every neuron's read position (Sinz et al. 2018's shifter)."""

from __future__ import annotations

import keras
from keras import ops

from keras_sysid.behavior._mlp import build_mlp, check_hidden_units, mlp_layers, run_mlp


def translate_feature_maps(feature_maps, shift):
    """Reads each trial's feature maps at positions shifted by that trial's ``shift``.

    ``out[b, i, j] = x[b, i + shift[b, 0], j + shift[b, 1]]`` with bilinear
    interpolation and zeros outside the grid. Reading every position ``p`` at
    ``p + shift`` is what moving every neuron's read position by ``shift``
    does, whatever the readout (Gaussian, factorized...), so one shifter serves
    all of them. Written as two small interpolation matmuls per trial
    (``H x H`` then ``W x W``), which ``keras.ops`` differentiates with respect
    to the shift.

    Args:
        feature_maps: ``(batch, H, W, C)``.
        shift: ``(batch, 2)`` (rows, columns) in grid cells.

    Returns:
        ``(batch, H, W, C)``, same dtype as ``feature_maps``.
    """
    height, width = int(feature_maps.shape[1]), int(feature_maps.shape[2])
    shift = ops.cast(shift, "float32")

    def interpolation(size, offset):
        # (batch, size, size): output cell i reads source cells floor(i + offset) and the one
        # after, weighted 1 - t and t. Written with floor, not as the triangle
        # relu(1 - |k - i - offset|), so the gradient w.r.t. the offset is not
        # zero at whole-cell offsets, where a zero-initialised shifter starts.
        cells = ops.arange(size, dtype="float32")
        source = cells[None, :] + offset[:, None]
        first = ops.floor(source)
        t = (source - first)[:, :, None]
        picks = lambda index: ops.cast(ops.equal(cells[None, None, :], index[:, :, None]), "float32")
        weights = (1.0 - t) * picks(first) + t * picks(first + 1.0)
        return ops.cast(weights, feature_maps.dtype)

    rows = interpolation(height, shift[:, 0])
    columns = interpolation(width, shift[:, 1])
    x = ops.einsum("bik,bkwc->biwc", rows, feature_maps)
    return ops.einsum("bjl,bilc->bijc", columns, x)


@keras.saving.register_keras_serializable(package="keras_sysid")
class Shifter(keras.layers.Layer):
    """An MLP from (standardised) pupil centre to a shift of the read positions, in grid cells.

    When the eye moves, the image moves on the retina, and every neuron's
    receptive field moves over the screen by the same amount. The shifter
    learns that shift from the pupil centre, per trial; the model applies it
    with :func:`translate_feature_maps`. Its output layer starts at zero (no
    shift).

    Args:
        hidden_units: Widths of the hidden layers.
        activation: Their nonlinearity.
        l2: Penalty on the output layer's kernel (0: none).

    Input shape:
        ``(batch, n_eye_variables)``, e.g. the pupil centre ``(batch, 2)``, standardised.

    Output shape:
        ``(batch, 2)``: (rows, columns) shift in grid cells.

    Example:
        >>> Shifter()(np.zeros((4, 2), "float32")).shape
        (4, 2)
    """

    def __init__(self, hidden_units=(5, 5), activation: str = "tanh", l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = check_hidden_units("Shifter", hidden_units)
        self.activation = activation
        if l2 < 0:
            raise ValueError(f"Shifter: l2 must be >= 0; got {l2}.")
        self.l2 = float(l2)
        self.mlp = mlp_layers(self.hidden_units, activation, 2, "shifter", self.l2)

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(f"Shifter expects (batch, n_eye_variables); got {tuple(input_shape)}.")
        build_mlp(self.mlp, input_shape)

    def call(self, eye_position):
        return run_mlp(self.mlp, eye_position)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2)

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_units": self.hidden_units, "activation": self.activation, "l2": self.l2})
        return config
