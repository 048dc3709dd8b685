"""GaussianMaskReadout (Höfling et al. 2024): mask, gradients, recovery, config, errors.

The contract every readout keeps (registration, Keras round trip, placement,
FLOPs...) is checked in ``tests/test_layer_contracts.py``; this file checks
what is particular to the Gaussian mask. Every test runs under TensorFlow and JAX.
"""

import keras
import numpy as np
import pytest

from keras_sysid import readouts
from keras_sysid.readouts.gaussian_mask import ChannelAverage, GaussianMaskReadout


def _numpy_masks(centres, widths, grid_shape):
    """``(H, W, N)`` normalised isotropic Gaussians."""
    rows, columns = np.mgrid[: grid_shape[0], : grid_shape[1]]
    centres = np.asarray(centres, "float64")
    widths = np.asarray(widths, "float64")
    squared = (rows[..., None] - centres[:, 0]) ** 2 + (columns[..., None] - centres[:, 1]) ** 2
    masks = np.exp(-0.5 * squared / widths**2)
    return masks / masks.sum(axis=(0, 1))


def _fit(layer, x, y, optimizer, steps, loss="mse"):
    """Fits ``layer`` alone to ``y`` with full-batch steps (``fit`` works under every backend)."""
    inputs = keras.Input(x.shape[1:])
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer=optimizer, loss=loss)
    model.fit(x, y, batch_size=len(x), epochs=steps, verbose=0, shuffle=False)
    return model


def test_masks_are_normalised_isotropic_gaussians_at_their_centres():
    layer = GaussianMaskReadout(3, init_width=2.0, min_width=0.25, seed=0)
    layer.build((None, 10, 12, 3))
    centres = [[2.0, 3.0], [7.5, 9.0], [0.0, 11.0]]  # the last one in a corner: truncated, still sums to 1
    layer.place_at(centres, width=1.5)
    mask = keras.ops.convert_to_numpy(layer.read_mask())
    assert mask.shape == (120, 3)
    mask = mask.reshape(10, 12, 3)
    np.testing.assert_allclose(mask.sum(axis=(0, 1)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(mask, _numpy_masks(centres, [1.5] * 3, (10, 12)), rtol=1e-4, atol=1e-7)
    assert np.unravel_index(mask[..., 0].argmax(), (10, 12)) == (2, 3)
    np.testing.assert_allclose(layer.rf_positions(), centres, atol=1e-5)
    np.testing.assert_allclose(layer.mask_widths(), 1.5, rtol=1e-5)
    # Isotropic: the same spread along rows and columns (away from the edges).
    row_profile, column_profile = mask[2, :, 0], mask[:, 3, 0]
    np.testing.assert_allclose(row_profile[3:6], column_profile[2:5], rtol=1e-5)
    # Location weights first, then features, then the bias; the mask itself is not a weight.
    assert [w.name for w in layer.weights] == ["mu", "log_width", "features", "bias"]


def test_initial_centres_are_seeded_and_central_and_widths_start_at_init_width():
    def built(seed):
        layer = GaussianMaskReadout(200, init_mu_range=0.5, init_width=3.0, seed=seed)
        layer.build((None, 21, 41, 2))
        return layer

    positions = built(7).rf_positions()
    np.testing.assert_array_equal(positions, built(7).rf_positions())
    assert not np.allclose(positions, built(8).rf_positions())
    # The central half of the grid along each axis.
    assert positions[:, 0].min() >= 5.0 and positions[:, 0].max() <= 15.0
    assert positions[:, 1].min() >= 10.0 and positions[:, 1].max() <= 30.0
    np.testing.assert_allclose(built(7).mask_widths(), 3.0, rtol=1e-5)


def test_by_default_every_mask_starts_broad_at_the_centre_reading_the_channels_average():
    layer = GaussianMaskReadout(50)
    layer.build((None, 21, 41, 4))
    np.testing.assert_allclose(layer.rf_positions(), np.tile([10.0, 20.0], (50, 1)), atol=1e-5)
    np.testing.assert_allclose(layer.mask_widths(), layer.init_width, rtol=1e-5)
    features = keras.ops.convert_to_numpy(layer.features)
    assert np.all(features > 0) and abs(features.mean() - 0.25) < 0.005 and features.std() < 0.02
    # The initializer takes the channel count from the weight's shape, and round-trips.
    initializer = ChannelAverage(stddev=0.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(initializer((8, 3))), 0.125)
    assert isinstance(keras.initializers.deserialize(keras.initializers.serialize(initializer)), ChannelAverage)


def test_drive_and_penalty_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6, 7, 3)).astype("float32")
    layer = GaussianMaskReadout(2, l1=0.3, seed=1)
    layer.build(x.shape)
    layer.place_at([[1.2, 5.5], [4.0, 2.0]], width=0.9)
    features = rng.standard_normal((3, 2)).astype("float32")
    layer.features.assign(features)
    layer.bias.assign(np.array([0.5, -0.2], "float32"))
    masks = _numpy_masks([[1.2, 5.5], [4.0, 2.0]], [0.9, 0.9], (6, 7))
    expected = np.einsum("bhwc,hwn,cn->bn", x, masks, features) + [0.5, -0.2]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-5)
    penalty = 0.3 * np.abs(features).sum()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.penalty()), penalty, rtol=1e-5)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.losses[0]), penalty, rtol=1e-5)
    np.testing.assert_allclose(layer.channel_weights(), np.abs(features))


def test_the_width_is_bounded_below_and_does_not_scale_the_drive():
    layer = GaussianMaskReadout(1, init_width=2.0, min_width=0.3)
    layer.build((None, 15, 15, 1))
    layer.place_at([[7.0, 7.0]])
    layer.log_width.assign(np.array([-50.0], "float32"))  # as far down as an optimiser could push it
    np.testing.assert_allclose(layer.mask_widths(), 0.3, rtol=1e-5)
    ones = np.ones((1, 15, 15, 1), "float32")
    layer.features.assign(np.ones((1, 1), "float32"))
    for width in (0.5, 2.0, 3.0):
        layer.place_at([[7.0, 7.0]], width=width)
        # A constant map reads the same whatever the width: each mask sums to 1.
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(ones)), [[1.0]], rtol=1e-5)


def test_gradients_reach_the_centre_and_the_width():
    # One neuron whose drive is the map at (6, 2); its mask starts at (4, 4), 2 cells wide.
    x = np.random.default_rng(3).standard_normal((64, 9, 9, 1)).astype("float32")
    y = x[:, 6, 2, :]
    layer = GaussianMaskReadout(1, l1=0.0, init_width=2.0, min_width=0.25)
    layer.build(x.shape)
    layer.place_at([[4.0, 4.0]])
    layer.features.assign(np.ones((1, 1), "float32"))
    mu, log_width = (keras.ops.convert_to_numpy(w).copy() for w in (layer.mu, layer.log_width))
    _fit(layer, x, y, keras.optimizers.SGD(0.01), steps=1)
    moved = keras.ops.convert_to_numpy(layer.mu) - mu
    # Plain gradient descent: the centre moves toward (6, 2), the width changes.
    assert moved[0, 0] > 0 and moved[0, 1] < 0
    assert not np.allclose(keras.ops.convert_to_numpy(layer.log_width), log_width)


def test_a_placed_readout_recovers_a_neuron_driven_by_one_feature():
    # Two channels of white noise; the neuron reads channel 1 at (7, 4). The readout
    # starts 2 to 3 cells away, 2.5 cells wide, and must find the place and the channel.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 12, 12, 2)).astype("float32")
    y = 2.0 * x[:, 7, 4, 1:2]
    layer = GaussianMaskReadout(1, l1=0.0, min_width=0.25)
    layer.build(x.shape)
    layer.place_at([[5.0, 6.0]], width=2.5)
    _fit(layer, x, y, keras.optimizers.Adam(0.05), steps=150)
    np.testing.assert_allclose(layer.rf_positions()[0], [7.0, 4.0], atol=0.25)
    assert layer.mask_widths()[0] < 0.6  # the mask has narrowed onto one cell
    weights = layer.channel_weights()[:, 0]
    assert weights[1] > 1.5 and weights[0] < 0.2


def test_location_is_kept_in_float32_under_mixed_precision():
    # Under a bfloat16 policy a centre near row 40 would be read in steps of ~0.1 cells.
    row = 40.3
    layer = GaussianMaskReadout(1, l1=0.0, dtype="mixed_bfloat16")
    layer.build((None, 48, 48, 1))
    layer.place_at([[row, 20.0]], width=1.0)
    layer.features.assign(np.ones((1, 1), "float32"))
    assert layer.mu.dtype == "float32" and layer.log_width.dtype == "float32"
    # A map equal to (row index - 40): the drive is the mask's centre of mass minus 40.
    offsets = (np.arange(48, dtype="float32") - 40.0)[None, :, None, None] * np.ones((1, 48, 48, 1), "float32")
    drive = float(keras.ops.convert_to_numpy(layer(offsets))[0, 0])
    assert drive == pytest.approx(row - 40.0, abs=0.01)


def test_config_round_trip_and_registry():
    layer = readouts.get(
        {"type": "gaussian_mask", "l1": 0.02, "init_mu_range": 0.3, "init_width": 4.0, "min_width": 0.5, "seed": 5},
        n_neurons=6,
    )
    assert isinstance(layer, GaussianMaskReadout) and readouts.registry()["gaussian_mask"] is GaussianMaskReadout
    config = layer.get_config()
    for key, value in {"n_neurons": 6, "l1": 0.02, "init_mu_range": 0.3, "init_width": 4.0, "min_width": 0.5,
                       "seed": 5}.items():
        assert config[key] == value
    assert config["features_initializer"]["class_name"] == "ChannelAverage" and "bias_initializer" in config
    again = GaussianMaskReadout.from_config(config)
    assert again.get_config() == config
    x = np.random.default_rng(0).standard_normal((2, 8, 9, 3)).astype("float32")
    layer(x)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is GaussianMaskReadout and restored.get_config() == config
    restored(x)
    restored.set_weights(layer.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(x)), keras.ops.convert_to_numpy(layer(x)), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_neurons": 0}, "n_neurons"),
        ({"n_neurons": 2, "l1": -0.1}, "l1"),
        ({"n_neurons": 2, "init_width": 0.0}, "init_width"),
        ({"n_neurons": 2, "init_width": -1.0}, "init_width"),
        ({"n_neurons": 2, "init_width": 0.2, "min_width": 0.25}, "init_width"),
        ({"n_neurons": 2, "min_width": 0.0}, "min_width"),
        ({"n_neurons": 2, "init_mu_range": 1.5}, "init_mu_range"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMaskReadout(**kwargs)


def test_bad_placements_raise():
    layer = GaussianMaskReadout(2)
    layer.build((None, 6, 8, 1))
    with pytest.raises(ValueError, match="width"):
        layer.place_at([[1.0, 1.0], [2.0, 2.0]], width=0.1)
    with pytest.raises(ValueError, match="must lie in the grid"):
        layer.place_at([[1.0, 1.0], [6.0, 2.0]])
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        layer.place_at([[1.0, 1.0]])
    with pytest.raises(ValueError, match="feature maps"):
        GaussianMaskReadout(2)(np.zeros((2, 6, 8), "float32"))
