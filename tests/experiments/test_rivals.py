import keras
import numpy as np
import pytest
from static_tree import N_NEURONS, write_tree

from keras_sysid import evaluation
from keras_sysid.experiments import presets, rivals
from keras_sysid.data import load_static
from keras_sysid.training import compile_model


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_static(write_tree(str(tmp_path_factory.mktemp("static"))))


@pytest.mark.parametrize("name", sorted(presets.RIVALS))
def test_rival_shapes_training_and_round_trip(name, data, tmp_path):
    model = rivals.build_rival(name, data, seed=0)
    images, responses = data.tier("train")
    scaled = responses / data.response_scale()
    assert model.predict(images, verbose=0).shape == (len(images), N_NEURONS)
    compile_model(model, learning_rate=0.01, jit_compile=False)
    before = model.evaluate(images, scaled, verbose=0, return_dict=True)["loss"]
    model.fit(images, scaled, epochs=8, batch_size=4, verbose=0)
    after = model.evaluate(images, scaled, verbose=0, return_dict=True)["loss"]
    assert after < before
    model.set_response_scale(data.response_scale())
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded.readout) is type(model.readout)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded.response_scale), data.response_scale(), rtol=1e-6)


def test_fixed_mask_positions_come_from_the_envelope(data):
    model = rivals.build_rival("fixed_mask", data)
    fixed = model.readout.rf_positions()
    assert fixed.shape == (N_NEURONS, 2)
    assert np.all(fixed >= 0) and np.all(fixed <= np.asarray(model.grid_shape) - 1)
    assert len({tuple(p) for p in np.round(fixed, 3)}) > 1  # not all at one default spot


def test_fit_rival_predicts_in_data_units_and_evaluates(data):
    settings = presets.FitSettings(max_epochs=2, batch_size=4)
    model, info = rivals.fit_rival("factorized", data, settings, verbose=0)
    assert info["epochs"] == 2 and np.isfinite(info["best_val_correlation"])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.response_scale), data.response_scale(), rtol=1e-6)
    summary = evaluation.evaluate_model(model, data, "test").summary()
    assert summary["n_neurons"] == N_NEURONS and summary["n_trials"] == 6 and summary["n_images"] == 3
    # Untrained-ish but bias-initialised: predictions are on the data's scale.
    prediction = model.predict(data.tier("train")[0], verbose=0)
    ratio = prediction.mean(axis=0) / data.tier("train")[1].mean(axis=0)
    assert np.all((ratio > 0.2) & (ratio < 5))


def test_unknown_rival_is_named(data):
    with pytest.raises(ValueError, match="Unknown rival 'cnn'"):
        rivals.build_rival("cnn", data)
