"""FixedPointReadout and with_fixed_point_readout: a Gaussian model's inference predictions, with no sort per call."""

import keras
import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid import inference_forms
from keras_sysid.readouts import FixedPointReadout, GaussianReadout

_IMAGE_SHAPE = (16, 18, 1)
_CORE = {"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [5, 3]}
_N_NEURONS = 40  # more corners than one block, several neurons per grid cell


def _images(n=6, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *_IMAGE_SHAPE)).astype("float32")


def _gaussian_model(readout="gaussian", seed=0):
    keras.utils.set_random_seed(seed)
    model = ks.build_model(_N_NEURONS, _IMAGE_SHAPE, core=_CORE, readout={"type": readout, "init_mu_range": 0.9}
                           if readout == "gaussian" else readout, image_mean=127.5, image_std=70.0)
    rng = np.random.default_rng(seed)
    model.readout.features.assign(rng.normal(size=model.readout.features.shape).astype("float32"))
    model.set_response_scale(np.linspace(1.0, 3.0, _N_NEURONS))
    return model


@pytest.mark.parametrize("readout", ["gaussian", "cortex_gaussian"])
def test_the_copy_predicts_what_the_gaussian_model_predicts_and_reads_at_its_mean_positions(readout):
    model = _gaussian_model(readout)
    if readout == "cortex_gaussian":
        model.readout.set_cortical_coordinates(np.random.default_rng(1).uniform(-300, 300, (_N_NEURONS, 3)))
    copy = inference_forms.with_fixed_point_readout(model)
    assert type(copy.readout) is FixedPointReadout and copy is not model
    images = _images()
    expected = model.predict(images, verbose=0)
    assert np.std(expected) > 0
    np.testing.assert_allclose(copy.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(copy.rf_positions(), model.rf_positions(), atol=1e-4)
    np.testing.assert_allclose(copy.readout.channel_weights(), np.abs(keras.ops.convert_to_numpy(
        model.readout.features)))
    assert copy.readout.flops_per_image() == model.readout.flops_per_image()


def test_the_copy_is_fixed_and_saved_with_its_layout(tmp_path):
    model = _gaussian_model()
    copy = inference_forms.with_fixed_point_readout(model)
    images = _images(seed=2)
    before = copy.predict(images, verbose=0)
    # Training the source afterwards does not reach the copy.
    model.readout.mu.assign(np.zeros(model.readout.mu.shape, "float32"))
    np.testing.assert_array_equal(copy.predict(images, verbose=0), before)
    assert not [weight for weight in copy.readout.trainable_weights if weight.name != "bias"]
    path = str(tmp_path / "fixed.keras")
    copy.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded.readout) is FixedPointReadout
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), before)


def test_placing_points_moves_the_read_and_off_grid_points_are_refused():
    readout = FixedPointReadout(3)
    readout.build((None, 5, 6, 2))
    maps = np.random.default_rng(0).normal(size=(2, 5, 6, 2)).astype("float32")
    readout.features.assign(np.ones((2, 3), "float32"))
    readout.place_at(np.array([[0.0, 0.0], [4.0, 5.0], [1.5, 2.25]]))
    np.testing.assert_allclose(readout.rf_positions(), [[0.0, 0.0], [4.0, 5.0], [1.5, 2.25]], atol=1e-6)
    drive = keras.ops.convert_to_numpy(readout(maps))
    bilinear = 0.5 * (0.75 * maps[:, 1, 2] + 0.25 * maps[:, 1, 3]) + 0.5 * (0.75 * maps[:, 2, 2] + 0.25 * maps[:, 2, 3])
    np.testing.assert_allclose(drive, np.stack([maps[:, 0, 0].sum(1), maps[:, 4, 5].sum(1), bilinear.sum(1)], 1),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="positions must lie in the grid"):
        readout.place_at(np.array([[0.0, 0.0], [5.0, 0.0], [1.0, 1.0]]))


def test_only_point_readouts_convert():
    factorized = ks.build_model(3, _IMAGE_SHAPE, core=_CORE, readout="factorized")
    with pytest.raises(ValueError, match="needs a model with a GaussianReadout .* FactorizedReadout"):
        inference_forms.with_fixed_point_readout(factorized)
    with pytest.raises(ValueError, match="one point per neuron"):
        FixedPointReadout.from_point_readout(factorized.readout)
    assert inference_forms.for_export(factorized) is factorized
    with pytest.raises(ValueError, match="needs a built GaussianReadout"):
        FixedPointReadout.from_point_readout(GaussianReadout(3))


def test_for_export_converts_each_member_of_an_ensemble():
    members = [_gaussian_model(seed=seed) for seed in (0, 1)]
    ensemble = ks.Ensemble(members)
    exported = inference_forms.for_export(ensemble)
    assert [type(member.readout) for member in exported.members] == [FixedPointReadout] * 2
    images = _images(seed=3)
    np.testing.assert_allclose(exported.predict(images, verbose=0), ensemble.predict(images, verbose=0),
                               rtol=1e-5, atol=1e-6)
