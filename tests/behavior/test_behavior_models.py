"""Behaviour-aware models: the state layers, dict inputs, saving, export, ensembles and their errors.

Small shapes and no training beyond single optimizer steps: weights that would
be learned are set to random values instead, so every check is deterministic.
"""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
from static_tree import N_NEURONS, write_tree

import keras_sysid as ks
from keras_sysid import evaluation, export, inference_forms, zoo
from keras_sysid.behavior import GainModulator, Shifter, translate_feature_maps
from keras_sysid.data import RecordingError, load_static
from keras_sysid.ensemble import Ensemble

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SHAPE = (14, 16, 1)
_CORE = {"type": "stacked_conv2d", "channels": 3, "kernel_sizes": [5, 3]}  # grid 10 x 12
_BEHAVIOR_STATS = {"mean": [5.0, 0.0, 1.0], "std": [1.0, 0.3, 1.0]}
_PUPIL_STATS = {"mean": [150.0, 120.0], "std": [8.0, 6.0]}
_TF = keras.backend.backend() == "tensorflow"
needs_tf = pytest.mark.skipif(not _TF, reason="TensorFlow backend only (SavedModel, sparse read, GradientTape)")


def _inputs(n=6, seed=0, shape=_SHAPE):
    rng = np.random.default_rng(seed)
    return {
        "images": rng.uniform(0, 255, (n, *shape)).astype("float32"),
        "behavior": rng.normal(_BEHAVIOR_STATS["mean"], _BEHAVIOR_STATS["std"], (n, 3)).astype("float32"),
        "pupil_center": rng.normal(_PUPIL_STATS["mean"], _PUPIL_STATS["std"], (n, 2)).astype("float32"),
    }


def _randomise(layer, seed, scale=0.4):
    """Random weights in place of learned ones (the state layers start as the identity)."""
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0, scale, w.shape).astype("float32") for w in layer.get_weights()])


def _state_model(readout="factorized", n_neurons=4, seed=0, shape=_SHAPE,
                 behavior_channels=True, shifter=True, modulator=True):
    keras.utils.set_random_seed(seed)
    model = ks.build_model(
        n_neurons, shape, core=_CORE, readout=readout, image_mean=127.5, image_std=70.0,
        behavior_channels=behavior_channels, shifter={} if shifter else None, modulator={} if modulator else None,
        behavior_stats=_BEHAVIOR_STATS, pupil_stats=_PUPIL_STATS,
    )
    for index, part in enumerate((model.shifter, model.modulator)):
        if part is not None:
            _randomise(part, seed + index)
    return model


def _save(model, tmp_path, name="model"):
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    return path


# -- Shifter and GainModulator -----------------------------------------------------


def test_state_layers_have_the_right_shapes_and_start_as_the_identity():
    pupil = np.random.default_rng(0).normal(size=(5, 2)).astype("float32")
    behavior = np.random.default_rng(1).normal(size=(5, 3)).astype("float32")
    shift = keras.ops.convert_to_numpy(Shifter(hidden_units=(4, 3))(pupil))
    gain = keras.ops.convert_to_numpy(GainModulator(n_neurons=6, hidden_units=(4,))(behavior))
    assert shift.shape == (5, 2) and np.all(shift == 0)
    assert gain.shape == (5, 6) and np.all(gain == 1)
    assert Shifter().compute_output_shape((None, 2)) == (None, 2)
    assert GainModulator(7).compute_output_shape((None, 3)) == (None, 7)


@needs_tf
@pytest.mark.parametrize("kind", ["shifter", "modulator"])
def test_state_layers_get_finite_non_zero_gradients_after_one_step(kind):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    if kind == "shifter":
        layer, x, target = Shifter(hidden_units=(4,)), rng.normal(size=(8, 2)), rng.normal(size=(8, 2))
    else:
        layer, x, target = GainModulator(5, hidden_units=(4,)), rng.normal(size=(8, 3)), rng.uniform(0.5, 2, (8, 5))
    x, target = tf.constant(x, tf.float32), tf.constant(target, tf.float32)
    layer(x)
    optimizer = keras.optimizers.SGD(0.1)

    def gradients():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((layer(x) - target) ** 2)
        return tape.gradient(loss, layer.trainable_weights)

    # At the start only the (zero) output layer gets gradients; after one step every weight does.
    optimizer.apply_gradients(zip(gradients(), layer.trainable_weights))
    grads = gradients()
    assert len(grads) == 4
    for weight, grad in zip(layer.trainable_weights, grads):
        grad = grad.numpy()
        assert np.all(np.isfinite(grad)) and np.any(grad != 0), weight.path


@pytest.mark.parametrize("make", [lambda: Shifter(hidden_units=(4, 3), activation="elu", name="s"),
                                  lambda: GainModulator(6, hidden_units=(5,), activation="relu", name="g")])
def test_state_layers_round_trip_through_config_and_serialization(make):
    layer = make()
    x = np.random.default_rng(0).normal(size=(4, 2 if isinstance(layer, Shifter) else 3)).astype("float32")
    layer(x)
    _randomise(layer, 3)
    expected = keras.ops.convert_to_numpy(layer(x))
    for again in (type(layer).from_config(layer.get_config()),
                  keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))):
        assert type(again) is type(layer) and again.get_config() == layer.get_config()
        again(x)
        again.set_weights(layer.get_weights())
        np.testing.assert_allclose(keras.ops.convert_to_numpy(again(x)), expected, rtol=1e-6)


def test_state_layers_reject_bad_arguments():
    for bad in ((0,), (4, -1)):
        with pytest.raises(ValueError, match="hidden_units"):
            Shifter(hidden_units=bad)
        with pytest.raises(ValueError, match="hidden_units"):
            GainModulator(3, hidden_units=bad)
    with pytest.raises(ValueError, match="n_neurons"):
        GainModulator(n_neurons=0)
    with pytest.raises(ValueError, match="n_eye_variables"):
        Shifter().build((None, 4, 2))
    with pytest.raises(ValueError, match="n_behavior"):
        GainModulator(3).build((None, None))


# -- translate_feature_maps ---------------------------------------------------------


def _numpy_translate(x, shift):
    """``out[b, i, j] = x[b, i + s0, j + s1]``, bilinear, zeros outside the grid."""
    batch, height, width, _ = x.shape
    out = np.zeros_like(x, dtype="float64")
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                r, c = i + shift[b, 0], j + shift[b, 1]
                r0, c0 = np.floor(r), np.floor(c)
                for rr, wr in ((r0, 1 - (r - r0)), (r0 + 1, r - r0)):
                    for cc, wc in ((c0, 1 - (c - c0)), (c0 + 1, c - c0)):
                        if 0 <= rr < height and 0 <= cc < width:
                            out[b, i, j] += wr * wc * x[b, int(rr), int(cc)]
    return out


def test_integer_shift_is_a_zero_filled_numpy_shift():
    x = np.random.default_rng(0).normal(size=(4, 6, 7, 2)).astype("float32")
    shift = np.array([[0, 0], [1, -2], [-3, 2], [7, 0]], "float32")  # the last moves everything out
    out = keras.ops.convert_to_numpy(translate_feature_maps(x, shift))
    expected = np.zeros_like(x)
    for b, (dr, dc) in enumerate(shift.astype(int)):
        for i in range(6):
            for j in range(7):
                if 0 <= i + dr < 6 and 0 <= j + dc < 7:
                    expected[b, i, j] = x[b, i + dr, j + dc]
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert np.all(out[3] == 0)


def test_fractional_shift_is_bilinear_interpolation():
    x = np.random.default_rng(1).normal(size=(3, 5, 6, 2)).astype("float32")
    shift = np.array([[0.25, -0.5], [-1.75, 2.4], [0.5, 0.0]], "float32")
    out = keras.ops.convert_to_numpy(translate_feature_maps(x, shift))
    np.testing.assert_allclose(out, _numpy_translate(x, shift), atol=1e-5)


@needs_tf
def test_translation_gradient_with_respect_to_the_shift_is_finite_and_non_zero():
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(2).normal(size=(2, 5, 6, 3)), tf.float32)
    weights = tf.constant(np.random.default_rng(3).normal(size=(2, 5, 6, 3)), tf.float32)
    # Whole cells (where a zero-initialised shifter starts) and a fractional shift.
    for value in ([[0.0, 0.0], [1.0, -1.0]], [[0.3, -0.6], [-1.2, 0.7]]):
        shift = tf.Variable(value, dtype=tf.float32)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(translate_feature_maps(x, shift) * weights)
        grad = tape.gradient(loss, shift).numpy()
        assert np.all(np.isfinite(grad)) and np.all(grad != 0), grad


# -- dict-input models: .keras and SavedModel ---------------------------------------


def test_state_model_round_trips_through_keras_and_saved_model(tmp_path):
    model = _state_model(readout="cortex_gaussian")
    model.readout.set_cortical_coordinates(np.random.default_rng(0).uniform(-300, 300, (4, 3)))
    assert model.input_names == ("images", "behavior", "pupil_center") and model.takes_state
    assert model.input_shapes() == {"images": _SHAPE, "behavior": (3,), "pupil_center": (2,)}
    x = _inputs(5, seed=4)
    expected = model.predict(x, verbose=0)
    # The state changes the prediction (random shifter and modulator weights).
    other = dict(x, behavior=x["behavior"][::-1].copy(), pupil_center=x["pupil_center"][::-1].copy())
    assert not np.allclose(model.predict(other, verbose=0), expected, rtol=1e-3)

    loaded = keras.saving.load_model(_save(model, tmp_path), safe_mode=True)
    assert loaded.input_names == model.input_names and loaded.behavior_stats == model.behavior_stats
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    if not _TF:
        return
    import tensorflow as tf

    export.export_saved_model(model, str(tmp_path / "served"))
    loaded = tf.saved_model.load(str(tmp_path / "served"))
    served = loaded.signatures["serving_default"]
    # The signature takes any shape and checks it itself (tests/zoo/test_export.py); the artefact states them.
    assert set(served.structured_input_signature[1]) == {"images", "behavior", "pupil_center"}
    manifest = json.loads(loaded.signatures["metadata"]()["keras_sysid_json"].numpy())
    assert {name: spec["shape"] for name, spec in manifest["signatures"]["serving_default"]["inputs"].items()} == {
        "images": [None, *_SHAPE], "behavior": [None, 3], "pupil_center": [None, 2]}
    out = served(**{name: tf.constant(value) for name, value in x.items()})["responses"].numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


@needs_tf
def test_export_tool_prints_every_input(tmp_path):
    model = _state_model(behavior_channels=False, shifter=False, modulator=True)
    path = _save(model, tmp_path)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, os.path.join(_ROOT, "tools", "export.py"), "--model", path,
                             "--out", str(tmp_path / "served")], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("serving_default: images float32 [batch, 14, 16, 1], behavior float32 [batch, 3] -> responses float32 "
            "[batch, 4]") in result.stdout


# -- ensembles --------------------------------------------------------------------


def test_ensemble_averages_its_members_and_checks_them():
    state = _state_model(seed=0)
    plain = ks.build_model(4, _SHAPE, core=_CORE, image_mean=127.5, image_std=70.0)
    ensemble = Ensemble([state, plain])
    assert ensemble.input_names == ("images", "behavior", "pupil_center") and ensemble.takes_state
    assert ensemble.input_shapes() == state.input_shapes()
    x = _inputs(5)
    expected = (state.predict(x, verbose=0) + plain.predict(x["images"], verbose=0)) / 2
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert Ensemble([plain]).input_shapes() == {"images": _SHAPE}
    with pytest.raises(ValueError, match="needs 'behavior'"):
        ensemble.predict(x["images"], verbose=0)
    with pytest.raises(ValueError, match="same neurons"):
        Ensemble([plain, ks.build_model(5, _SHAPE, core=_CORE)])
    two_variables = ks.build_model(4, _SHAPE, core=_CORE, modulator={}, behavior_stats={"mean": [0, 0], "std": [1, 1]})
    with pytest.raises(ValueError, match="'behavior' of one shape"):
        Ensemble([state, two_variables])
    # Members taking different state: each one's input is checked, not only the widest member's.
    shifted = _state_model(seed=1, behavior_channels=False, shifter=True, modulator=False)
    modulated = _state_model(seed=2, behavior_channels=False, shifter=False, modulator=True)
    pair = Ensemble([modulated, shifted])
    bad = dict(x, pupil_center=np.where(np.eye(5, 2) > 0, np.nan, x["pupil_center"]).astype("float32"))
    with pytest.raises(ValueError, match="pupil_center contain 2 NaN"):
        pair.predict(bad, verbose=0)


def test_ensemble_round_trips_through_keras_zoo_and_saved_model(tmp_path):
    members = [_state_model(seed=0), _state_model(seed=1, behavior_channels=False, modulator=False)]
    ensemble = Ensemble(members, name="pair")
    x = _inputs(4, seed=7)
    expected = ensemble.predict(x, verbose=0)
    np.testing.assert_allclose(expected, np.mean([m.predict(x, verbose=0) for m in members], axis=0), rtol=1e-5)
    loaded = keras.saving.load_model(_save(ensemble, tmp_path), safe_mode=True)
    assert isinstance(loaded, Ensemble) and loaded.input_names == ensemble.input_names
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    zoo.save(ensemble, str(tmp_path / "entry"), {"name": "pair"})
    from_zoo = zoo.load(str(tmp_path / "entry"))
    assert isinstance(from_zoo, Ensemble)
    np.testing.assert_allclose(from_zoo.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    if not _TF:
        return
    import tensorflow as tf

    export.export_saved_model(ensemble, str(tmp_path / "served"))
    served = tf.saved_model.load(str(tmp_path / "served")).signatures["serving_default"]
    out = served(**{name: tf.constant(value) for name, value in x.items()})["responses"].numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


# -- missing or bad state ---------------------------------------------------------


def test_missing_or_nan_behaviour_is_named():
    model = _state_model()
    ks.compile_model(model, learning_rate=0.01, jit_compile=False)
    x = _inputs(4)
    y = np.ones((4, 4), "float32")
    with pytest.raises(ValueError, match="'behavior'"):
        model.predict(x["images"], verbose=0)
    with pytest.raises(ValueError, match="'behavior'"):
        model.predict({"images": x["images"], "pupil_center": x["pupil_center"]}, verbose=0)
    nan = dict(x, behavior=np.where(np.eye(4, 3) > 0, np.nan, x["behavior"]).astype("float32"))
    with pytest.raises(ValueError, match="behavior contain 3 NaN"):
        model.predict(nan, verbose=0)
    with pytest.raises(ValueError, match="training behavior contain 3 NaN"):
        model.fit(nan, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="validation behavior"):
        model.fit(x, y, validation_data=(nan, y), epochs=1, verbose=0)


def test_data_without_behaviour_fails_clearly_and_image_only_models_still_work(tmp_path):
    tree = write_tree(str(tmp_path))
    shutil.rmtree(os.path.join(tree, "data", "behavior"))
    data = load_static(tree)
    model = ks.build_model(N_NEURONS, data.image_shape, core=_CORE, behavior_channels=True,
                           behavior_stats=_BEHAVIOR_STATS)
    with pytest.raises(RecordingError, match="behavior"):
        evaluation.evaluate_model(model, data, "test")
    plain = ks.build_model(N_NEURONS, data.image_shape, core=_CORE)
    assert np.isfinite(evaluation.evaluate_model(plain, data, "test").summary()["corr_single"])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for saved, fails in ((model, True), (plain, False)):
        path = _save(saved, tmp_path, f"fails_{fails}")
        result = subprocess.run([sys.executable, os.path.join(_ROOT, "tools", "evaluate.py"), "--model", path,
                                 "--data", tree], capture_output=True, text=True, env=env, timeout=300)
        if fails:
            # TensorFlow's C++ start-up notices may come first; the tool's own output is one line.
            errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
            assert result.returncode == 1, result.stderr[-2000:]
            assert len(errors) == 1 and errors[0] == result.stderr.strip().splitlines()[-1], result.stderr[-2000:]
            assert "behavior" in errors[0] and "Traceback" not in result.stderr
        else:
            assert result.returncode == 0, result.stderr[-2000:]
            assert "trial_corr" not in result.stdout.splitlines()[-1]  # an image-only model predicts no repeat differences


# -- helpers that must keep working with state ------------------------------------


@needs_tf
def test_pruned_inference_copy_keeps_behaviour_channels_shifter_and_modulator():
    model = _state_model(readout={"type": "factorized", "l1": 0.01})
    rng = np.random.default_rng(5)
    mask = rng.uniform(0.1, 1.0, model.readout.mask.shape) * (rng.uniform(size=model.readout.mask.shape) < 0.1)
    model.readout.mask.assign(mask.astype("float32"))
    model.readout.features.assign(rng.normal(0, 1, model.readout.features.shape).astype("float32"))
    model.set_response_scale(np.linspace(0.5, 2.0, 4))
    copy = inference_forms.for_inference(model)  # density ~0.1: the pruned copy
    assert isinstance(copy.readout, ks.readouts.PrunedMaskReadout)
    assert copy.input_names == model.input_names and copy.behavior_channels
    assert copy.shifter is not model.shifter and copy.modulator is not model.modulator
    assert copy.behavior_stats == model.behavior_stats and copy.pupil_stats == model.pupil_stats
    x = _inputs(6, seed=3)
    np.testing.assert_allclose(copy.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_feature_maps_take_the_behaviour_when_the_core_does():
    model = _state_model(shifter=False, modulator=False)
    x = _inputs(5)
    with pytest.raises(ValueError, match="behaviour channels"):
        model.feature_maps(x["images"])
    with pytest.raises(ValueError, match=r"behavior must have shape \(trials, 3\)"):
        model.feature_maps(x["images"], behavior=x["behavior"][:, :2])
    maps = model.feature_maps(x["images"], behavior=x["behavior"], batch_size=2)
    assert maps.shape == (5, *model.grid_shape, 3) == (5, 10, 12, 3)
    planes = (x["behavior"] - _BEHAVIOR_STATS["mean"]) / _BEHAVIOR_STATS["std"]
    core_input = np.concatenate([(x["images"] - 127.5) / 70.0,
                                 np.broadcast_to(planes[:, None, None, :], (5, *_SHAPE[:2], 3))], axis=-1)
    full = keras.ops.convert_to_numpy(model.core(core_input.astype("float32"), training=False))
    np.testing.assert_allclose(maps, full, rtol=1e-5, atol=1e-5)
    plain = ks.build_model(4, _SHAPE, core=_CORE)
    assert plain.feature_maps(x["images"]).shape == (5, 10, 12, 3)


def test_rf_positions_with_behaviour_channels_are_those_of_the_image_channel():
    state = _state_model(shifter=False, modulator=False)
    plain = ks.build_model(4, _SHAPE, core=_CORE, image_mean=127.5, image_std=70.0)
    # The same weights for the image channel; the behaviour channels' kernels keep their random values.
    for own, image_only in zip(state.core.weights, plain.core.weights):
        value = keras.ops.convert_to_numpy(own)
        image_only.assign(value if own.shape == image_only.shape else value[..., :1, :])
        assert own.shape == image_only.shape or own.shape[-2] == 4
    plain.readout.set_weights(state.readout.get_weights())
    positions = state.rf_positions()
    assert positions.shape == (4, 2) and np.all(np.isfinite(positions))
    np.testing.assert_allclose(positions, plain.rf_positions(), atol=1e-6)


# -- the cortex readout and the SE core ---------------------------------------------


def test_cortex_readout_checks_its_coordinates_and_keeps_them(tmp_path):
    model = ks.build_model(3, _SHAPE, core=_CORE, readout="cortex_gaussian")
    readout = model.readout
    for bad in (np.zeros((2, 3)), np.zeros((3, 1)), np.zeros(3)):
        with pytest.raises(ValueError, match="shape"):
            readout.set_cortical_coordinates(bad)
    with pytest.raises(ValueError, match="NaN"):
        readout.set_cortical_coordinates(np.array([[0, 0], [1, np.nan], [2, 2]], "float64"))
    readout.set_cortical_coordinates([[0.0, 0.0, 5.0], [100.0, 0.0, 6.0], [0.0, 200.0, 7.0]])
    first = keras.ops.convert_to_numpy(readout.mean_positions())
    assert first.shape == (3, 2) and len({tuple(np.round(p, 6)) for p in first}) == 3
    readout.set_cortical_coordinates([[0.0, 200.0, 5.0], [100.0, 0.0, 6.0], [0.0, 0.0, 7.0]])
    second = keras.ops.convert_to_numpy(readout.mean_positions())
    assert not np.allclose(first, second)
    np.testing.assert_allclose(second[[2, 1, 0]], first, rtol=1e-6)  # the positions follow the coordinates
    x = _inputs(3)["images"]
    loaded = keras.saving.load_model(_save(model, tmp_path), safe_mode=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded.readout.cortical_coordinates),
                               keras.ops.convert_to_numpy(readout.cortical_coordinates))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)


def test_se2d_core_options():
    from keras_sysid.cores import SE2DCore

    with pytest.raises(ValueError, match="input_padding"):
        SE2DCore(input_padding="full")
    with pytest.raises(ValueError, match="n_se_blocks"):
        SE2DCore(n_layers=2, n_se_blocks=3)
    with pytest.raises(ValueError, match="smaller than"):
        SE2DCore(input_kernel=15).build((None, *_SHAPE))
    full = SE2DCore(channels=4, n_layers=3, input_kernel=5, hidden_kernel=3, depth_separable=False)
    out = keras.ops.convert_to_numpy(full(np.random.default_rng(0).normal(size=(2, *_SHAPE)).astype("float32")))
    assert out.shape == (2, 10, 12, 4) and np.all(np.isfinite(out))
    assert not any("depthwise" in layer.name for layer in full._flatten_layers())
    plain = SE2DCore(channels=4, n_layers=3, input_kernel=5, hidden_kernel=3, n_se_blocks=0)
    assert tuple(plain(np.zeros((2, *_SHAPE), "float32")).shape) == (2, 10, 12, 4)
    assert not any(type(layer).__name__ == "SqueezeExcitation" for layer in plain._flatten_layers())
    default = SE2DCore(channels=4, n_layers=3, input_kernel=5, hidden_kernel=3)
    default.build((None, *_SHAPE))
    assert sum(type(layer).__name__ == "SqueezeExcitation" for layer in default._flatten_layers()) == 2
    same = SE2DCore(channels=4, n_layers=2, input_kernel=5, input_padding="same")
    assert tuple(same.compute_output_shape((2, *_SHAPE))) == (2, *_SHAPE[:2], 4)
