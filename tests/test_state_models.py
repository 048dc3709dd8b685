"""Models that take the animal's state (behaviour, pupil centre), their layers, and ensembles."""

import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
from static_tree import N_NEURONS, write_tree

import keras_sysid as ks
from keras_sysid import evaluation, export, models, zoo
from keras_sysid.behavior import GainModulator, Shifter
from keras_sysid.data.static import StaticDataError, load_static
from keras_sysid.ensemble import Ensemble
from keras_sysid.models import variable_stats

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SHAPE = (16, 18, 1)
_CORE = {"type": "stacked_conv2d", "channels": 3, "kernel_sizes": [5, 3]}


def _state(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "images": rng.uniform(0, 255, (n, *_SHAPE)).astype("float32"),
        "behavior": rng.normal([5, 0, 1], [1, 0.3, 1], (n, 3)).astype("float32"),
        "pupil_center": rng.normal([150, 120], [8, 6], (n, 2)).astype("float32"),
    }


def _state_model(readout="factorized", seed=0, n_neurons=4, **parts):
    keras.utils.set_random_seed(seed)
    x = _state(32, seed=seed + 100)
    parts = parts or {"behavior_channels": True, "shifter": {}, "modulator": {}}
    return ks.build_model(
        n_neurons, _SHAPE, core=_CORE, readout=readout, image_mean=127.5, image_std=70.0,
        behavior_stats=variable_stats(x["behavior"]), pupil_stats=variable_stats(x["pupil_center"]), **parts,
    )


def _trained(model, seed=0, epochs=3):
    x = _state(32, seed)
    y = np.random.default_rng(seed).poisson(2.0, (32, model.n_neurons)).astype("float32")
    ks.compile_model(model, learning_rate=0.01, jit_compile=False)
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, shuffle=False)
    return model


# -- the layers -----------------------------------------------------------------


def test_shifter_and_modulator_start_as_the_identity_and_round_trip():
    shifter, modulator = Shifter(hidden_units=(4,)), GainModulator(n_neurons=6)
    pupil, behavior = np.ones((5, 2), "float32"), np.ones((5, 3), "float32")
    assert np.asarray(shifter(pupil)).shape == (5, 2) and np.all(np.asarray(shifter(pupil)) == 0)
    assert np.asarray(modulator(behavior)).shape == (5, 6) and np.allclose(np.asarray(modulator(behavior)), 1.0)
    for layer in (shifter, modulator):
        again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(again) is type(layer) and again.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="hidden_units"):
        Shifter(hidden_units=(0,))
    with pytest.raises(ValueError, match="n_neurons"):
        GainModulator(n_neurons=0)
    with pytest.raises(ValueError, match="batch, n_behavior"):
        GainModulator(n_neurons=2).build((None, 4, 3))


def test_every_part_gets_gradients_and_learns():
    model = _state_model()
    before = [keras.ops.convert_to_numpy(w) for w in model.shifter.trainable_weights + model.modulator.trainable_weights]
    _trained(model)
    after = [keras.ops.convert_to_numpy(w) for w in model.shifter.trainable_weights + model.modulator.trainable_weights]
    assert all(not np.allclose(a, b) for a, b in zip(before, after))
    assert all(np.all(np.isfinite(w)) for w in after)
    gains = np.asarray(model.modulator(np.random.default_rng(1).normal(size=(8, 3)).astype("float32")))
    assert np.all(gains > 0) and np.ptp(gains) > 0


# -- dict inputs ------------------------------------------------------------------


def test_state_model_round_trips_through_keras_and_saved_model(tmp_path):
    tf = pytest.importorskip("tensorflow")
    model = _trained(_state_model(readout="cortex_gaussian", behavior_channels=True, shifter={}, modulator={}))
    x = _state(6, seed=5)
    expected = model.predict(x, verbose=0)
    loaded = keras.saving.load_model(_save(model, tmp_path), safe_mode=True)
    assert loaded.input_names == ("images", "behavior", "pupil_center")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    if keras.backend.backend() != "tensorflow":
        return
    export.export_saved_model(model, str(tmp_path / "served"))
    served = tf.saved_model.load(str(tmp_path / "served")).signatures["serving_default"]
    out = served(images=tf.constant(x["images"]), behavior=tf.constant(x["behavior"]),
                 pupil_center=tf.constant(x["pupil_center"]))["responses"]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


def _save(model, tmp_path, name="model"):
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    return path


def test_missing_or_bad_state_is_named_before_any_work():
    model = _state_model()
    x = _state(4)
    with pytest.raises(ValueError, match="needs 'behavior', 'pupil_center' besides the images"):
        model.predict(x["images"], verbose=0)
    with pytest.raises(ValueError, match="needs 'pupil_center'"):
        model.predict({"images": x["images"], "behavior": x["behavior"]}, verbose=0)
    bad = dict(x, behavior=np.where(np.eye(4, 3) > 0, np.nan, x["behavior"]).astype("float32"))
    with pytest.raises(ValueError, match="prediction behavior contain 3 NaN"):
        model.predict(bad, verbose=0)
    with pytest.raises(ValueError, match=r"behavior must have shape \(trials, 3\)"):
        model.predict(dict(x, behavior=x["behavior"][:, :2]), verbose=0)
    with pytest.raises(ValueError, match="behavior have 3 trials but there are 4 images"):
        model.predict(dict(x, behavior=x["behavior"][:3]), verbose=0)
    with pytest.raises(ValueError, match="needs behavior_stats"):
        ks.build_model(4, _SHAPE, core=_CORE, modulator={})
    # An image-only model takes images or the dict.
    plain = ks.build_model(4, _SHAPE, core=_CORE)
    np.testing.assert_allclose(plain.predict(x, verbose=0), plain.predict(x["images"], verbose=0), rtol=1e-6)


def test_data_without_behaviour_fails_clearly_for_models_that_need_it(tmp_path):
    tree = write_tree(str(tmp_path))
    shutil.rmtree(os.path.join(tree, "data", "behavior"))
    data = load_static(tree)
    model = ks.build_model(N_NEURONS, data.image_shape, core=_CORE, behavior_channels=True,
                           behavior_stats={"mean": [0, 0, 0], "std": [1, 1, 1]})
    with pytest.raises(StaticDataError, match="has no behavior"):
        evaluation.evaluate_model(model, data, "test")
    plain = ks.build_model(N_NEURONS, data.image_shape, core=_CORE)
    assert np.isfinite(evaluation.evaluate_model(plain, data, "test").summary()["corr_single"])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for saved, fails in ((model, True), (plain, False)):
        path = _save(saved, tmp_path, f"fails_{fails}")
        result = subprocess.run([sys.executable, os.path.join(_ROOT, "tools", "evaluate.py"), "--model", path,
                                 "--data", tree], capture_output=True, text=True, env=env, timeout=600)
        if fails:
            last = result.stderr.strip().splitlines()[-1]
            assert result.returncode == 1 and last.startswith("error: ") and "has no behavior" in last
            assert "Traceback" not in result.stderr
        else:
            assert result.returncode == 0, result.stderr


# -- helpers that must keep working with state -----------------------------------


def test_pruned_inference_copy_keeps_shifter_and_modulator():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the sparse read is TensorFlow's")
    model = _trained(_state_model(readout={"type": "factorized", "l1": 0.01}))
    model.readout.prune_mask(0.5)
    copy = models.with_pruned_readout(model, max_density=1.0)
    assert copy.input_names == model.input_names and copy.shifter is not model.shifter
    x = _state(6, seed=3)
    np.testing.assert_allclose(copy.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_feature_maps_and_rf_positions_with_behaviour_channels():
    model = _state_model(behavior_channels=True)
    x = _state(5)
    with pytest.raises(ValueError, match="behaviour channels"):
        model.feature_maps(x["images"])
    maps = model.feature_maps(x["images"], behavior=x["behavior"])
    assert maps.shape == (5, *model.grid_shape, 3)
    full = keras.ops.convert_to_numpy(model.core(keras.ops.concatenate([
        (x["images"] - 127.5) / 70.0,
        np.ones((5, *_SHAPE[:2], 1), "float32") * ((x["behavior"] - model.behavior_stats["mean"]) / model.behavior_stats["std"])[:, None, None, :].astype("float32"),
    ], axis=-1)))
    np.testing.assert_allclose(maps, full, rtol=1e-5, atol=1e-5)
    assert model.rf_positions().shape == (4, 2)


# -- the cortex readout and the core ----------------------------------------------


def test_cortex_readout_checks_and_keeps_its_coordinates(tmp_path):
    model = ks.build_model(3, _SHAPE, core=_CORE, readout="cortex_gaussian")
    readout = model.readout
    with pytest.raises(ValueError, match=r"shape \(3, >= 2\)"):
        readout.set_cortical_coordinates(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        readout.set_cortical_coordinates(np.full((3, 3), np.nan))
    readout.set_cortical_coordinates([[0.0, 0.0, 1.0], [100.0, 0.0, 2.0], [0.0, 200.0, 3.0]])
    positions = np.asarray(readout.mean_positions())
    assert len({tuple(np.round(p, 6)) for p in positions}) == 3 and np.all(np.abs(positions) <= 1)
    with pytest.raises(NotImplementedError, match="cortical coordinates"):
        readout.place_at(np.ones((3, 2)))
    loaded = keras.saving.load_model(_save(model, tmp_path), safe_mode=True)
    np.testing.assert_allclose(np.asarray(loaded.readout.cortical_coordinates), np.asarray(readout.cortical_coordinates))


def test_se2d_core_options():
    from keras_sysid.cores import SE2DCore

    with pytest.raises(ValueError, match="input_padding"):
        SE2DCore(input_padding="full")
    with pytest.raises(ValueError, match="smaller than"):
        SE2DCore(input_kernel=21).build((None, 16, 18, 1))
    plain = SE2DCore(channels=4, n_layers=3, depth_separable=False, n_se_blocks=0)
    out = plain(np.zeros((2, 16, 18, 1), "float32"))
    assert tuple(out.shape) == (2, 8, 10, 4)
    assert not any(type(layer).__name__ == "SqueezeExcitation" for layer in plain._flatten_layers())
    same = SE2DCore(channels=4, n_layers=2, input_padding="same")
    assert tuple(same.compute_output_shape((2, 16, 18, 1))) == (2, 16, 18, 4)


# -- ensembles --------------------------------------------------------------------


def test_ensemble_averages_saves_and_exports(tmp_path):
    members = [_state_model(seed=0), ks.build_model(4, _SHAPE, core=_CORE, image_mean=127.5, image_std=70.0)]
    ensemble = Ensemble(members, name="pair")
    assert ensemble.input_names == ("images", "behavior", "pupil_center")
    x = _state(5)
    expected = (members[0].predict(x, verbose=0) + members[1].predict(x["images"], verbose=0)) / 2
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="needs 'behavior'"):
        ensemble.predict(x["images"], verbose=0)
    loaded = keras.saving.load_model(_save(ensemble, tmp_path), safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    zoo.save(ensemble, str(tmp_path / "entry"), {"name": "pair", "input_names": list(ensemble.input_names)})
    from_zoo = zoo.load(str(tmp_path / "entry"))
    assert isinstance(from_zoo, Ensemble)
    np.testing.assert_allclose(from_zoo.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert export.input_shapes(ensemble) == {"images": _SHAPE, "behavior": (3,), "pupil_center": (2,)}
    with pytest.raises(ValueError, match="same neurons"):
        Ensemble([members[1], ks.build_model(5, _SHAPE, core=_CORE)])
