import keras
import numpy as np
import pytest

from keras_sysid import readouts
from keras_sysid.readouts import _contraction


def _weights(layer):
    return {w.name: keras.ops.convert_to_numpy(w) for w in layer.weights}


@pytest.mark.parametrize("positive", [True, False])
def test_factorized_readout_matches_numpy(positive):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4, 6, 3)).astype("float32")
    layer = readouts.FactorizedReadout(7, l1=0.0, positive_mask=positive, positive_features=positive)
    layer.build(x.shape)
    layer.mask.assign(rng.standard_normal((24, 7)).astype("float32"))
    layer.features.assign(rng.standard_normal((3, 7)).astype("float32"))
    layer.bias.assign(rng.standard_normal(7).astype("float32"))
    w = _weights(layer)
    mask = np.abs(w["mask"]) if positive else w["mask"]
    features = np.abs(w["features"]) if positive else w["features"]
    full = np.einsum("sn,cn->scn", mask, features).reshape(4, 6, 3, 7)
    expected = np.einsum("bhwc,hwcn->bn", x, full) + w["bias"]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-5)


def test_factorized_penalty_matches_hand_computation_and_is_a_layer_loss():
    rng = np.random.default_rng(1)
    layer = readouts.FactorizedReadout(4, l1=0.3)
    x = rng.standard_normal((2, 3, 3, 2)).astype("float32")
    layer(x)
    mask = rng.standard_normal((9, 4)).astype("float32")
    features = rng.standard_normal((2, 4)).astype("float32")
    layer.mask.assign(mask)
    layer.features.assign(features)
    expected = 0.3 * np.sum(np.abs(mask).sum(axis=0) * np.abs(features).sum(axis=0))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.penalty()), expected, rtol=1e-5)
    layer(x)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.losses[0]), expected, rtol=1e-5)


def test_factorized_mask_smoothness_penalises_the_masks_laplacian():
    rng = np.random.default_rng(2)
    layer = readouts.FactorizedReadout(3, l1=0.1, mask_smoothness=0.7)
    layer(rng.standard_normal((2, 5, 6, 2)).astype("float32"))
    mask = rng.standard_normal((30, 3)).astype("float32")
    features = rng.standard_normal((2, 3)).astype("float32")
    layer.mask.assign(mask)
    layer.features.assign(features)
    grid = np.abs(mask).reshape(5, 6, 3)
    laplacian = 4 * grid[1:-1, 1:-1] - grid[:-2, 1:-1] - grid[2:, 1:-1] - grid[1:-1, :-2] - grid[1:-1, 2:]
    per_neuron = 0.1 * grid.sum(axis=(0, 1)) + 0.7 * np.abs(laplacian).sum(axis=(0, 1))
    expected = np.sum(per_neuron * np.abs(features).sum(axis=0))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.penalty()), expected, rtol=1e-5)
    # A constant mask has no Laplacian: only the L1 term is left.
    layer.mask.assign(np.ones((30, 3), "float32"))
    flat = np.sum(0.1 * 30 * np.abs(features).sum(axis=0))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.penalty()), flat, rtol=1e-5)
    assert readouts.FactorizedReadout.from_config(layer.get_config()).mask_smoothness == 0.7
    with pytest.raises(ValueError, match="mask_smoothness"):
        readouts.FactorizedReadout(3, mask_smoothness=-1.0)


def test_factorized_rf_positions_find_planted_masks():
    layer = readouts.FactorizedReadout(3)
    layer.build((None, 10, 12, 2))
    mask = np.zeros((10, 12, 3), "float32")
    mask[2, 3, 0] = 1.0
    mask[7, 10, 1] = -2.0  # sign is ignored: |mask|
    mask[5, 5, 2] = mask[5, 6, 2] = 1.0  # between two cells
    layer.mask.assign(mask.reshape(120, 3))
    np.testing.assert_allclose(layer.rf_positions(), [[2, 3], [7, 10], [5, 5.5]], atol=1e-6)


def test_fully_connected_readout_matches_numpy_and_penalties():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 5, 2)).astype("float32")
    layer = readouts.FullyConnectedReadout(6, l2=0.1)
    out = keras.ops.convert_to_numpy(layer(x))
    w = _weights(layer)
    np.testing.assert_allclose(out, x.reshape(3, -1) @ w["kernel"] + w["bias"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.losses[0]), 0.1 * np.sum(w["kernel"] ** 2), rtol=1e-5
    )


@pytest.mark.parametrize("cls", [readouts.FactorizedReadout, readouts.FullyConnectedReadout])
def test_readouts_reject_bad_input_and_round_trip_config(cls):
    with pytest.raises(ValueError, match="n_neurons"):
        cls(0)
    layer = cls(3, name="r")
    with pytest.raises(ValueError, match="feature maps"):
        layer.build((None, 10, 3))
    clone = cls.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_fully_connected_dropout_acts_only_in_training():
    x = np.ones((4, 3, 3, 2), "float32")
    layer = readouts.FullyConnectedReadout(5, dropout=0.5)
    inference = keras.ops.convert_to_numpy(layer(x, training=False))
    w = _weights(layer)
    np.testing.assert_allclose(inference, x.reshape(4, -1) @ w["kernel"] + w["bias"], rtol=1e-5, atol=1e-6)
    training = keras.ops.convert_to_numpy(layer(x, training=True))
    assert not np.allclose(training, inference)


def _bilinear(x, row, col):
    r0, c0 = int(np.floor(row)), int(np.floor(col))
    dr, dc = row - r0, col - c0
    value = 0.0
    for rr, wr in ((r0, 1 - dr), (r0 + 1, dr)):
        for cc, wc in ((c0, 1 - dc), (c0 + 1, dc)):
            if 0 <= rr < x.shape[1] and 0 <= cc < x.shape[2]:
                value = value + wr * wc * x[:, rr, cc, :]
    return value


def test_gaussian_readout_reads_bilinearly_at_the_mean_in_inference():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 5, 7, 4)).astype("float32")
    layer = readouts.GaussianReadout(2, l1=0.0)
    layer.build(x.shape)
    mu = np.array([[-0.3, 0.45], [0.9, -1.0]], "float32")
    layer.mu.assign(mu)
    features = rng.standard_normal((4, 2)).astype("float32")
    layer.features.assign(features)
    layer.bias.assign(np.array([0.5, -0.2], "float32"))
    rows = (mu[:, 0] + 1) / 2 * 4
    cols = (mu[:, 1] + 1) / 2 * 6
    expected = np.stack([_bilinear(x, rows[n], cols[n]) @ features[:, n] for n in range(2)], axis=1) + [0.5, -0.2]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x, training=False)), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.rf_positions(), np.stack([rows, cols], axis=1), rtol=1e-6)


def test_gaussian_readout_samples_positions_in_training_and_learns_them():
    grid_rows, grid_cols = np.mgrid[:9, :9]
    blob = np.exp(-((grid_rows - 6.0) ** 2 + (grid_cols - 2.0) ** 2) / 8.0)
    x = blob[None, :, :, None].astype("float32")
    layer = readouts.GaussianReadout(1, l1=0.0, init_mu_range=0.0, init_sigma=0.3, seed=3)
    layer.build(x.shape)
    layer.features.assign(np.ones((1, 1), "float32"))
    a = keras.ops.convert_to_numpy(layer.positions(training=True))
    b = keras.ops.convert_to_numpy(layer.positions(training=True))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.positions(training=False)), [[0.0, 0.0]])
    # Gradient ascent on the response moves the mean onto the blob's peak.
    layer.features.trainable = False
    layer.bias.trainable = False
    _ascend(layer, x, optimizer=keras.optimizers.Adam(0.05), steps=150)
    np.testing.assert_allclose(layer.rf_positions()[0], [6.0, 2.0], atol=1.0)


def _ascend(layer, x, optimizer, steps):
    """Maximises the layer's summed output (plus its penalties as losses) with
    ``fit``, which works under every Keras backend."""
    inputs = keras.Input(x.shape[1:])
    model = keras.Model(inputs, layer(inputs, training=True))
    model.compile(optimizer=optimizer, loss=lambda y_true, y_pred: -keras.ops.sum(y_pred, axis=-1))
    model.fit(x, np.zeros((len(x), 1), "float32"), batch_size=len(x), epochs=steps, verbose=0, shuffle=False)


def test_fixed_mask_readout_masks_are_fixed_normalised_and_centred():
    layer = readouts.FixedMaskReadout(2, mask_sigma=1.0, l1=0.0)
    layer.build((None, 10, 12, 3))
    layer.set_positions([[2.0, 3.0], [7.5, 9.0]])
    mask = keras.ops.convert_to_numpy(layer.read_mask()).reshape(10, 12, 2)
    np.testing.assert_allclose(mask.sum(axis=(0, 1)), 1.0, rtol=1e-5)
    assert np.unravel_index(mask[..., 0].argmax(), (10, 12)) == (2, 3)
    assert [w.name for w in layer.trainable_weights] == ["features", "bias"]
    x = np.random.default_rng(0).standard_normal((4, 10, 12, 3)).astype("float32")
    features = keras.ops.convert_to_numpy(layer.features)
    expected = np.einsum("bhwc,hwn,cn->bn", x, mask, features)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="must lie in the grid"):
        layer.set_positions([[2.0, 3.0], [10.0, 1.0]])
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        layer.set_positions([[2.0, 3.0]])


def test_fully_connected_pooling_matches_numpy():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 6, 8, 3)).astype("float32")
    layer = readouts.FullyConnectedReadout(5, pool_size=2)
    layer.build(x.shape)
    assert layer.kernel.shape == (3 * 4 * 3, 5)
    pooled = x.reshape(2, 3, 2, 4, 2, 3).mean(axis=(2, 4))
    expected = pooled.reshape(2, -1) @ keras.ops.convert_to_numpy(layer.kernel)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-5)


def test_factorized_mask_can_start_at_given_locations():
    layer = readouts.FactorizedReadout(2, l1=0.0)
    layer.build((None, 10, 12, 3))
    layer.initialize_mask_at([[2.0, 3.0], [7.0, 9.0]], sigma=1.0)
    mask = keras.ops.convert_to_numpy(layer.mask)
    np.testing.assert_allclose(mask.sum(axis=0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(layer.rf_positions(), [[2.0, 3.0], [7.0, 9.0]], atol=1e-3)
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        layer.initialize_mask_at([[2.0, 3.0]])


def test_relu_mask_positivity_keeps_zeroed_entries_at_zero():
    layer = readouts.FactorizedReadout(2, l1=0.5, mask_positivity="relu")
    x = np.random.default_rng(0).standard_normal((4, 3, 3, 2)).astype("float32")
    layer(x)
    assert np.all(keras.ops.convert_to_numpy(layer.mask) >= 0)  # every entry starts alive
    mask = np.full((9, 2), 0.1, "float32")
    mask[0, 0] = -0.2
    layer.mask.assign(mask)
    assert keras.ops.convert_to_numpy(layer.effective_mask())[0, 0] == 0.0
    # One plain gradient step: the dead entry gets no gradient, the live ones do.
    _ascend(layer, x, optimizer=keras.optimizers.SGD(0.01), steps=1)
    stepped = keras.ops.convert_to_numpy(layer.mask)
    assert stepped[0, 0] == np.float32(-0.2) and np.all(stepped[1:, 0] != np.float32(0.1))
    with pytest.raises(ValueError, match="mask_positivity"):
        readouts.FactorizedReadout(2, mask_positivity="square")


def test_masked_readout_gradient_equals_automatic_differentiation():
    # The hand-written backward pass of the readout contraction (TF and JAX)
    # against autodiff of the same contraction.
    rng = np.random.default_rng(5)
    per_channel = keras.ops.convert_to_tensor(rng.standard_normal((3 * 4, 10)).astype("float32"))
    mask = keras.ops.convert_to_tensor(rng.standard_normal((10, 6)).astype("float32"))
    features = keras.ops.convert_to_tensor(rng.standard_normal((4, 6)).astype("float32"))
    upstream = rng.standard_normal((3, 6)).astype("float32")

    gradients = {}
    for name, contract in (("lean", _contraction._contract_with_lean_gradient), ("auto", _contraction._contract)):
        if name == "lean" and keras.backend.backend() not in ("tensorflow", "jax"):
            pytest.skip("the hand-written gradient is used on TensorFlow and JAX only")
        gradients[name] = _gradients(contract, [per_channel, mask, features], upstream)
    for lean, auto in zip(gradients["lean"], gradients["auto"]):
        np.testing.assert_allclose(lean, auto, rtol=1e-4, atol=1e-5)


def _gradients(contract, inputs, upstream):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        variables = [tf.Variable(x) for x in inputs]
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(contract(*variables) * upstream)
        return [g.numpy() for g in tape.gradient(loss, variables)]
    if backend == "jax":
        import jax

        return [np.asarray(g) for g in jax.grad(lambda *xs: (contract(*xs) * upstream).sum(), argnums=(0, 1, 2))(*inputs)]
    import torch

    tensors = [torch.tensor(keras.ops.convert_to_numpy(x), requires_grad=True) for x in inputs]
    (contract(*tensors) * torch.tensor(upstream)).sum().backward()
    return [t.grad.numpy() for t in tensors]


def test_prune_mask_zeroes_entries_below_a_fraction_of_each_neurons_peak():
    layer = readouts.FactorizedReadout(2, l1=0.0, positive_mask=False)
    layer.build((None, 2, 2, 3))
    layer.mask.assign(np.array([[1.0, -0.2], [0.05, 0.1], [-0.5, -0.01], [0.009, 0.03]], "float32"))
    assert layer.prune_mask(0.1) == 5 / 8
    np.testing.assert_array_equal(
        np.asarray(layer.mask), np.array([[1.0, -0.2], [0.0, 0.1], [-0.5, 0.0], [0.0, 0.03]], "float32")
    )
    with pytest.raises(ValueError, match="relative_threshold"):
        layer.prune_mask(1.5)


def test_a_relu_masks_negative_entries_neither_place_nor_keep_a_neuron():
    layer = readouts.FactorizedReadout(1, positive_mask=True, mask_positivity="relu")
    layer.build((None, 4, 5, 2))
    mask = np.zeros((20, 1), "float32")
    mask[3, 0] = -5.0  # reads nothing under relu
    mask[12, 0] = 1.0  # row 2, column 2
    mask[13, 0] = 0.005
    layer.mask.assign(mask)
    np.testing.assert_allclose(layer.rf_positions(), [[2.0, 2.0 + 0.005 / 1.005]], atol=1e-6)
    layer.prune_mask(0.01)
    kept = keras.ops.convert_to_numpy(layer.mask)[:, 0]
    assert kept[12] == 1.0 and kept[13] == 0.0 and kept[3] == 0.0


def test_fixed_mask_positions_stay_float32_under_a_mixed_policy():
    layer = readouts.FixedMaskReadout(1, mask_sigma=1.0, l1=0.0, dtype="mixed_bfloat16")
    layer.build((None, 40, 60, 2))
    # bfloat16 has no 20.1: its neighbours there are 20.0 and 20.125.
    layer.set_positions([[20.1, 30.0]])
    layer.features.assign(np.array([[1.0], [0.0]], "float32"))
    # Channel 0 holds (row - 20), so the drive is the mask's centre row minus 20.
    x = np.zeros((1, 40, 60, 2), "float32")
    x[0, :, :, 0] = (np.arange(40) - 20.0)[:, None]
    drive = float(keras.ops.convert_to_numpy(keras.ops.cast(layer(x), "float32"))[0, 0])
    assert abs(drive - 0.1) < 0.01
