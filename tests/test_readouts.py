import keras
import numpy as np
import pytest

from keras_sysid import readouts


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
