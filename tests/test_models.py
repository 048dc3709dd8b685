import keras
import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid.training import compile_model


def _small_model(**kwargs):
    spec = dict(
        n_neurons=5,
        image_shape=(16, 20),
        core={"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [5, 3]},
        readout={"type": "factorized", "l1": 0.01},
    )
    spec.update(kwargs)
    return ks.build_model(**spec)


def test_output_shape_and_positivity():
    model = _small_model()
    images = np.random.default_rng(0).standard_normal((3, 16, 20, 1)).astype("float32")
    out = model.predict(images, verbose=0)
    assert out.shape == (3, 5)
    assert np.all(out >= 0)


@pytest.mark.parametrize("nonlinearity", ["softplus", "elu_plus_one"])
def test_mean_responses_set_the_initial_prediction(nonlinearity):
    means = np.array([0.01, 0.5, 1.0, 2.0, 7.0])
    model = _small_model(nonlinearity=nonlinearity, mean_responses=means)
    # Zero readout weights leave only the bias, so the prediction is the mean.
    model.readout.mask.assign(np.zeros_like(model.readout.mask))
    out = model.predict(np.zeros((2, 16, 20, 1), "float32"), verbose=0)
    np.testing.assert_allclose(out, np.tile(means, (2, 1)), rtol=1e-4)


def test_keras_file_round_trip_gives_identical_predictions(tmp_path):
    model = _small_model(image_mean=3.0, image_std=2.0, mean_responses=np.ones(5))
    compile_model(model)
    rng = np.random.default_rng(1)
    images = rng.standard_normal((8, 16, 20, 1)).astype("float32")
    model.fit(images, rng.poisson(1.0, (8, 5)).astype("float32"), epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, ks.SystemIdentificationModel)
    assert loaded.image_mean == 3.0 and loaded.image_std == 2.0
    np.testing.assert_array_equal(model.predict(images, verbose=0), loaded.predict(images, verbose=0))


def test_any_keras_layer_works_as_a_core(tmp_path):
    core = keras.Sequential(
        [keras.layers.Conv2D(6, 5, activation="elu"), keras.layers.Conv2D(3, 3, padding="same")], name="core"
    )
    model = ks.build_model(n_neurons=4, image_shape=(12, 12), core=core)
    assert model.grid_shape == (8, 8)
    assert model.predict(np.zeros((2, 12, 12, 1), "float32"), verbose=0).shape == (2, 4)
    model.save(tmp_path / "m.keras")
    keras.saving.load_model(tmp_path / "m.keras")


def test_fully_connected_ln_model():
    model = ks.build_model(
        n_neurons=3, image_shape=(10, 10), core={"type": "identity"},
        readout={"type": "fully_connected", "smoothness": 0.1},
    )
    assert model.predict(np.zeros((2, 10, 10, 1), "float32"), verbose=0).shape == (2, 3)


def test_bad_builder_arguments():
    with pytest.raises(ValueError, match="Unknown core type"):
        ks.build_model(3, (10, 10), core={"type": "resnet"})
    with pytest.raises(ValueError, match="Unknown readout type"):
        ks.build_model(3, (10, 10), readout={"type": "gaussian2"})
    with pytest.raises(ValueError, match="Bad arguments for readout"):
        ks.build_model(3, (10, 10), readout={"type": "factorized", "lambda": 1})
    with pytest.raises(ValueError, match="nonlinearity"):
        ks.build_model(3, (20, 20), nonlinearity="relu")
    with pytest.raises(ValueError, match="mean_responses"):
        ks.build_model(3, (20, 20), mean_responses=np.ones(4))


@pytest.fixture(scope="module")
def compiled_model():
    model = _small_model()
    compile_model(model)
    return model


class TestBadInput:
    @pytest.fixture
    def model(self, compiled_model):
        return compiled_model

    def test_wrong_rank(self, model):
        with pytest.raises(ValueError, match=r"rank 4.*images\[\.\.\., None\]"):
            model.predict(np.zeros((2, 16, 20), "float32"))

    def test_wrong_channels_or_size(self, model):
        with pytest.raises(ValueError, match=r"shape \(batch, 16, 20, 1\)"):
            model.predict(np.zeros((2, 16, 20, 3), "float32"))
        with pytest.raises(ValueError, match=r"shape \(batch, 16, 20, 1\)"):
            model.predict(np.zeros((2, 20, 16, 1), "float32"))

    def test_neuron_count_mismatch(self, model):
        with pytest.raises(ValueError, match="6 neurons but the model predicts 5"):
            model.fit(np.zeros((4, 16, 20, 1), "float32"), np.zeros((4, 6), "float32"), verbose=0)

    def test_trial_count_mismatch(self, model):
        with pytest.raises(ValueError, match="3 trials but there are 4 images"):
            model.evaluate(np.zeros((4, 16, 20, 1), "float32"), np.zeros((3, 5), "float32"), verbose=0)

    def test_nan_and_inf(self, model):
        images = np.zeros((4, 16, 20, 1), "float32")
        images[1, 2, 3, 0] = np.nan
        with pytest.raises(ValueError, match="images contain 1 NaN or inf"):
            model.fit(images, np.zeros((4, 5), "float32"), verbose=0)
        responses = np.zeros((4, 5), "float32")
        responses[0, 0] = np.inf
        with pytest.raises(ValueError, match="responses contain 1 NaN or inf"):
            model.fit(np.zeros((4, 16, 20, 1), "float32"), responses, verbose=0)
        with pytest.raises(ValueError, match="validation responses contain"):
            model.fit(
                np.zeros((4, 16, 20, 1), "float32"), np.zeros((4, 5), "float32"),
                validation_data=(np.zeros((2, 16, 20, 1), "float32"), responses[:2]), verbose=0,
            )

    def test_empty_and_non_numeric(self, model):
        with pytest.raises(ValueError, match="empty"):
            model.predict(np.zeros((0, 16, 20, 1), "float32"))
        with pytest.raises(ValueError, match="numeric"):
            model.predict(np.full((1, 16, 20, 1), "a"))

    def test_small_negative_responses_are_valid(self, model):
        responses = np.full((4, 5), -0.01, "float32")
        history = model.fit(np.zeros((4, 16, 20, 1), "float32"), responses, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])


def test_rf_positions_combine_mask_peak_and_kernel_offset():
    model = ks.build_model(
        n_neurons=2, image_shape=(15, 15),
        core={"type": "stacked_conv2d", "channels": 1, "kernel_sizes": [5], "batch_norm": False},
    )
    kernel = np.zeros((5, 5, 1, 1), "float32")
    kernel[1, 3, 0, 0] = 1.0  # looks 1 row up and 1 column right of the cell's centre
    model.core.conv_layers[0].kernel.assign(kernel)
    mask = np.zeros((11, 11, 2), "float32")
    mask[4, 6, 0] = 1.0
    mask[0, 10, 1] = 1.0
    model.readout.mask.assign(mask.reshape(121, 2))
    model.readout.features.assign(np.ones((1, 2), "float32"))
    # Grid cell (r, c) is centred on pixel (r + 2, c + 2); the kernel adds (-1, +1).
    np.testing.assert_allclose(model.rf_positions(), [[5, 9], [1, 13]], atol=1e-6)


def test_pixels_to_grid_undoes_the_valid_crop_and_clips():
    model = ks.build_model(3, (20, 24), core={"type": "stacked_conv2d", "channels": 2, "kernel_sizes": [13]})
    assert model.grid_shape == (8, 12)
    np.testing.assert_allclose(model.pixels_to_grid([[6.0, 6.0], [9.5, 10.0], [100.0, -5.0]]),
                               [[0.0, 0.0], [3.5, 4.0], [7.0, 0.0]])
