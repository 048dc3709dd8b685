"""PrunedMaskReadout and with_pruned_readout: the dense model's predictions, faster, never stale."""

import keras
import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid.readouts import FactorizedReadout, PrunedMaskReadout

_IMAGE_SHAPE = (16, 18, 1)
_CORE = {"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [5, 3]}
_N_NEURONS = 9


def _images(n=6, shape=_IMAGE_SHAPE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *shape)).astype("float32")


def _pruned_model(readout=None, threshold=0.6, seed=0):
    keras.utils.set_random_seed(seed)
    model = ks.build_model(
        _N_NEURONS, _IMAGE_SHAPE, core=_CORE, readout=readout or {"type": "factorized"},
        image_mean=127.5, image_std=70.0, mean_responses=np.linspace(0.5, 2.0, _N_NEURONS),
    )
    # Larger, varied weights than the initial ones, so the drives are far from the bias.
    rng = np.random.default_rng(seed)
    model.readout.mask.assign(rng.normal(size=model.readout.mask.shape).astype("float32"))
    model.readout.features.assign(rng.normal(size=model.readout.features.shape).astype("float32"))
    model.set_response_scale(np.linspace(1.0, 3.0, _N_NEURONS))
    model.readout.prune_mask(threshold)
    return model


@pytest.mark.parametrize(
    "readout",
    [
        {"type": "factorized"},
        {"type": "factorized", "positive_mask": False, "positive_features": False},
        {"type": "factorized", "mask_positivity": "relu"},
    ],
)
def test_pruned_copy_predicts_what_the_dense_model_predicts(readout):
    model = _pruned_model(readout)
    copy = ks.inference_forms.with_pruned_readout(model)
    assert type(copy.readout) is PrunedMaskReadout and copy is not model
    density = float(np.mean(keras.ops.convert_to_numpy(model.readout.effective_mask()) != 0))
    assert copy.readout.n_entries == round(density * model.readout.mask.shape[0] * _N_NEURONS)
    assert copy.readout.flops_per_image() < model.readout.flops_per_image()
    images = _images()
    np.testing.assert_allclose(copy.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(copy.readout.rf_positions(), model.readout.rf_positions())
    np.testing.assert_allclose(copy.readout.channel_weights(), model.readout.channel_weights())
    np.testing.assert_array_equal(copy.readout.dense_mask(), keras.ops.convert_to_numpy(model.readout.effective_mask()))


def test_the_copy_is_a_copy_and_its_readout_is_inference_only():
    model = _pruned_model()
    copy = ks.inference_forms.with_pruned_readout(model)
    images = _images()
    before = copy.predict(images, verbose=0)
    # Changing the source afterwards does not reach the copy (and the copy does not share weights).
    model.readout.mask.assign(np.zeros(model.readout.mask.shape, "float32"))
    model.core.weights[0].assign(np.zeros(model.core.weights[0].shape, "float32"))
    np.testing.assert_array_equal(copy.predict(images, verbose=0), before)
    assert [w.name for w in copy.readout.trainable_weights] == ["bias"]


def test_pruned_model_survives_a_keras_round_trip(tmp_path):
    copy = ks.inference_forms.with_pruned_readout(_pruned_model())
    images = _images()
    expected = copy.predict(images, verbose=0)
    path = str(tmp_path / "pruned.keras")
    copy.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded.readout) is PrunedMaskReadout
    assert loaded.readout.get_config() == copy.readout.get_config()
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), expected)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded.readout.indices),
                                  keras.ops.convert_to_numpy(copy.readout.indices))


def test_refuses_a_readout_that_is_not_factorized():
    keras.utils.set_random_seed(0)
    model = ks.build_model(_N_NEURONS, _IMAGE_SHAPE, core=_CORE, readout="gaussian")
    with pytest.raises(ValueError, match="GaussianReadout.*no spatial mask"):
        ks.inference_forms.with_pruned_readout(model)
    with pytest.raises(ValueError, match="needs a FactorizedReadout"):
        PrunedMaskReadout.from_factorized(model.readout)
    with pytest.raises(ValueError, match="built"):
        PrunedMaskReadout.from_factorized(FactorizedReadout(3))


def test_refuses_a_mask_too_dense_to_win_and_an_empty_one():
    model = _pruned_model(threshold=0.0)  # nothing pruned
    with pytest.raises(ValueError, match="prune the mask first"):
        ks.inference_forms.with_pruned_readout(model)
    model.readout.prune_mask(0.6)
    assert type(ks.inference_forms.with_pruned_readout(model).readout) is PrunedMaskReadout
    with pytest.raises(ValueError, match="max_density"):
        ks.inference_forms.with_pruned_readout(model, max_density=0.01)
    model.readout.mask.assign(np.zeros(model.readout.mask.shape, "float32"))
    with pytest.raises(ValueError, match="zero everywhere"):
        PrunedMaskReadout.from_factorized(model.readout)


def test_layer_refuses_more_entries_than_the_grid_holds():
    with pytest.raises(ValueError, match="n_entries"):
        PrunedMaskReadout(3, n_entries=0)
    with pytest.raises(ValueError, match="exceeds"):
        PrunedMaskReadout(3, n_entries=4 * 5 * 3 + 1).build((None, 4, 5, 2))


def test_zoo_model_pruned_copy_matches_the_dense_prediction():
    model = ks.zoo.load("mouse_v1_factorized")
    copy = ks.inference_forms.with_pruned_readout(model)
    images = _images(4, model.image_shape, seed=1)
    expected = model.predict(images, verbose=0)
    got = copy.predict(images, verbose=0)
    # Within 1e-5, relative where a rate exceeds 1 (float32 rounding of a different summation order).
    assert np.max(np.abs(got - expected) / np.maximum(1.0, np.abs(expected))) < 1e-5
    assert copy.readout.flops_per_image() < 0.2 * model.readout.flops_per_image()


def test_for_inference_reads_a_pruned_zoo_mask_sparsely_and_leaves_other_models_alone():
    factorized = ks.zoo.load("mouse_v1_factorized")
    fast = ks.inference_forms.for_inference(factorized)
    assert isinstance(fast.readout, ks.readouts.PrunedMaskReadout)
    gaussian = ks.zoo.load("mouse_v1_gaussian")
    assert ks.inference_forms.for_inference(gaussian) is gaussian
