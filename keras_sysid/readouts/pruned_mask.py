"""An inference copy of a factorized readout whose mask was pruned: only its non-zero entries are read."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_sysid.positions import peak_positions
from keras_sysid.readouts._contraction import masked_readout
from keras_sysid.readouts.base import Readout, readout_initializer


@keras.saving.register_keras_serializable(package="keras_sysid")
class PrunedMaskReadout(Readout):
    """A factorized readout with a fixed sparse mask, for fast inference.

    Computes exactly what a :class:`~keras_sysid.readouts.FactorizedReadout`
    computes, ``drive[b, n] = sum_{hw, c} mask[hw, n] * features[c, n] *
    x[b, hw, c] + bias[n]``, but reads only the mask's ``n_entries`` non-zero
    entries, stored as a list ``(cell, neuron) -> value``. Make one from a
    fitted (and pruned, see ``FactorizedReadout.prune_mask``) readout with
    :meth:`from_factorized`, or a whole model with
    :func:`keras_sysid.inference_forms.with_pruned_readout`; the effective mask and
    features (``|mask|`` / ``|features|`` where the source readout uses
    them) are copied, so no positivity flag is needed here.

    The list is fixed when the layer is made: it is saved with the model (its
    length ``n_entries`` in the config; the entries' ``indices`` and
    ``mask_values`` as non-trainable weights), and nothing derived from it is
    cached, so the output always follows the weights the layer holds. It is a
    copy: training the source readout afterwards does not change it.

    Inference only: the mask's support and values and the features are
    non-trainable; only the bias is (as every readout's). To fine-tune a
    readout, train the dense ``FactorizedReadout`` and convert it again.

    On TensorFlow the space contraction is one CSR sparse-dense matmul
    ``(N, H * W) @ (H * W, batch * C)`` (the layer opts out of XLA, which has
    no such op). On mouse V1 (15% of
    the mask kept; 2 CPU cores, batch 64) the readout ran in 115-130 ms instead of
    the 203 ms of the dense ``(batch * C, H * W) @ (H * W, N)`` matmul of
    ``FactorizedReadout``; on random masks it broke even near 20% density.
    On other backends the entries are scattered into a dense mask and the
    dense contraction runs: the same result, no faster.

    Args:
        n_neurons: Number of neurons ``N``.
        n_entries: Number of stored mask entries. ``None`` (a layer made
            from defaults) stores every ``(cell, neuron)`` pair, filled at
            build with small random non-negative values.
        features_initializer: Initializer of the ``(C, N)`` features (a
            converted readout gets its source's features instead).
        bias_initializer: Initializer of the ``(N,)`` bias.

    Input shape:
        ``(batch, height, width, channels)`` feature maps of a core.

    Output shape:
        ``(batch, n_neurons)`` drives (before the output nonlinearity).
    """

    type_name = "pruned_mask"

    def __init__(
        self,
        n_neurons: int,
        n_entries: int | None = None,
        features_initializer="truncated_normal_small",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(n_neurons, bias_initializer=bias_initializer, **kwargs)
        if n_entries is not None and int(n_entries) < 1:
            raise ValueError(f"PrunedMaskReadout: n_entries must be >= 1 (or None); got {n_entries}.")
        self.n_entries = None if n_entries is None else int(n_entries)
        self.features_initializer = readout_initializer(features_initializer)
        if keras.backend.backend() == "tensorflow":
            # TensorFlow's CSR sparse matmul has no XLA kernel.
            self.supports_jit = False

    # -- making one ---------------------------------------------------------------

    @classmethod
    def from_factorized(cls, readout, name: str | None = None) -> PrunedMaskReadout:
        """A built ``PrunedMaskReadout`` that computes what ``readout`` computes.

        Args:
            readout: A built :class:`~keras_sysid.readouts.FactorizedReadout`.
            name: The new layer's name (default: ``readout``'s).

        Returns:
            The new layer, built, holding ``readout``'s non-zero effective mask
            entries, effective features and bias.

        Raises:
            ValueError: ``readout`` is not a built factorized readout, or its
                mask is zero everywhere.
        """
        from keras_sysid.readouts.factorized import FactorizedReadout

        if not isinstance(readout, FactorizedReadout):
            raise ValueError(
                f"PrunedMaskReadout.from_factorized needs a FactorizedReadout; got {type(readout).__name__}."
            )
        if not readout.built:
            raise ValueError("PrunedMaskReadout.from_factorized needs a built FactorizedReadout.")
        mask = np.asarray(ops.convert_to_numpy(readout.effective_mask()))
        cells, neurons = _entries(mask)
        if len(cells) == 0:
            raise ValueError("PrunedMaskReadout.from_factorized: the readout's mask is zero everywhere.")
        layer = cls(
            readout.n_neurons,
            n_entries=len(cells),
            bias_initializer=keras.initializers.serialize(readout.bias_initializer),
            name=readout.name if name is None else name,
            dtype=readout.dtype_policy,
        )
        height, width = readout.grid_shape
        layer.build((None, height, width, readout.input_channels))
        layer.features.assign(np.asarray(ops.convert_to_numpy(readout.effective_features())))
        layer.indices.assign(np.stack([cells, neurons], axis=1).astype("int32"))
        layer.mask_values.assign(mask[cells, neurons])
        layer.bias.assign(np.asarray(ops.convert_to_numpy(readout.bias)))
        return layer

    # -- the contract ---------------------------------------------------------------

    def build_readout(self, height, width, channels):
        n_cells = height * width
        if self.n_entries is not None and self.n_entries > n_cells * self.n_neurons:
            raise ValueError(
                f"PrunedMaskReadout: n_entries={self.n_entries} exceeds the {n_cells * self.n_neurons} "
                f"(cell, neuron) pairs of a {height}x{width} grid and {self.n_neurons} neurons."
            )
        n_entries = n_cells * self.n_neurons if self.n_entries is None else self.n_entries
        self.features = self.add_weight(
            shape=(channels, self.n_neurons), initializer=self.features_initializer, name="features", trainable=False
        )
        self.mask_values = self.add_weight(shape=(n_entries,), initializer="zeros", name="mask_values", trainable=False)
        # (cell, neuron) of each entry, neuron-major: what the sparse matmul reads best.
        self.indices = self.add_weight(
            shape=(n_entries, 2), initializer="zeros", dtype="int32", name="indices", trainable=False
        )
        if self.n_entries is None:
            neurons, cells = np.divmod(np.arange(n_entries), n_cells)
            self.indices.assign(np.stack([cells, neurons], axis=1).astype("int32"))
            start = keras.initializers.TruncatedNormal(stddev=0.01)((n_entries,))
            self.mask_values.assign(ops.abs(ops.cast(start, self.mask_values.dtype)))

    def drive(self, feature_maps, training=False):
        if keras.backend.backend() == "tensorflow" and _csr_matrix_ops() is not None:
            return _sparse_drive_tensorflow(feature_maps, self.indices, self.mask_values, self.features)
        # Elsewhere: the entries summed into the dense mask, then the dense contraction. A segment
        # sum over flat indices, not ops.scatter, which Keras' PyTorch backend runs as a Python loop.
        height, width, _ = feature_maps.shape[1:]
        n_slots = height * width * self.n_neurons
        flat = self.indices[:, 0] * self.n_neurons + self.indices[:, 1]
        mask = ops.segment_sum(self.mask_values, flat, num_segments=n_slots)
        return masked_readout(feature_maps, ops.reshape(mask, (height * width, self.n_neurons)), self.features)

    def dense_mask(self) -> np.ndarray:
        """The mask as a dense ``(H * W, N)`` array (zero off the stored entries)."""
        height, width = self.grid_shape
        indices = np.asarray(ops.convert_to_numpy(self.indices))
        mask = np.zeros((height * width, self.n_neurons), dtype="float32")
        mask[indices[:, 0], indices[:, 1]] = np.asarray(ops.convert_to_numpy(self.mask_values))
        return mask

    def rf_positions(self) -> np.ndarray:
        """``(N, 2)`` (row, column): the peak of each neuron's mask, to sub-cell precision."""
        height, width = self.grid_shape
        return peak_positions(np.abs(self.dense_mask()).T.reshape(self.n_neurons, height, width))

    def channel_weights(self) -> np.ndarray:
        """How much each neuron reads each channel: ``|features|``, ``(C, N)``."""
        return np.abs(ops.convert_to_numpy(self.features))

    def flops_per_image(self) -> int:
        """One multiply-add per stored entry and channel, plus the ``(C, N)`` feature product."""
        return 2 * self.input_channels * (int(self.mask_values.shape[0]) + self.n_neurons)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "n_entries": self.n_entries,
                "features_initializer": keras.initializers.serialize(self.features_initializer),
            }
        )
        return config


def _entries(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(cells, neurons)`` of the non-zero entries of an ``(H * W, N)`` mask, neuron-major."""
    neurons, cells = np.nonzero(mask.T)
    return cells, neurons


def _csr_matrix_ops():
    """TensorFlow's CSR sparse-matrix ops, or ``None`` where this TensorFlow lacks them.

    They live in a module outside TensorFlow's public API (Keras' own sparse
    support imports the same one); if a release moves it, the layer falls
    back to the dense contraction: the same result, no faster.
    """
    try:
        from tensorflow.python.ops.linalg.sparse import sparse_csr_matrix_ops
    except ImportError:
        return None
    return sparse_csr_matrix_ops


def _sparse_drive_tensorflow(feature_maps, indices, values, features):
    """``(B, H, W, C) -> (B, N)`` through ``(N, H * W)`` CSR sparse ``@ (H * W, B * C)`` dense.

    TensorFlow's CSR matmul (the kernel Keras itself uses for sparse x
    sparse); ``tf.sparse.sparse_dense_matmul`` was 25x slower here (3.1 s vs
    127 ms on mouse V1, batch 64, 2 CPU cores). The CSR matrix is made from
    the layer's weights on every call (indices are stored neuron-major, the
    order it needs), so it can never be stale.
    """
    import tensorflow as tf

    sparse_csr_matrix_ops = _csr_matrix_ops()

    dtype = feature_maps.dtype
    # The sparse kernel is float32/float64 only: reduced precision computes in float32.
    compute = dtype if dtype in (tf.float32, tf.float64) else tf.float32
    batch = tf.shape(feature_maps)[0]
    height, width, channels = feature_maps.shape[1:]
    n_cells = height * width
    n_neurons = int(features.shape[1])
    cells = tf.reshape(
        tf.transpose(tf.reshape(tf.cast(feature_maps, compute), (batch, n_cells, channels)), (1, 0, 2)),
        (n_cells, -1),
    )  # (H * W, B * C)
    indices = tf.reverse(tf.cast(tf.convert_to_tensor(indices), tf.int64), axis=[1])  # (neuron, cell)
    mask = sparse_csr_matrix_ops.sparse_tensor_to_csr_sparse_matrix(
        indices, tf.cast(tf.convert_to_tensor(values), compute), tf.constant([n_neurons, n_cells], tf.int64)
    )
    pooled = tf.reshape(sparse_csr_matrix_ops.sparse_matrix_mat_mul(mask, cells), (n_neurons, batch, channels))
    weights = tf.transpose(tf.cast(tf.convert_to_tensor(features), compute))  # (N, C)
    drive = tf.reduce_sum(pooled * weights[:, None, :], axis=2)  # (N, B)
    return tf.cast(tf.transpose(drive), dtype)
