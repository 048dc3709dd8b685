"""One shared core, one readout per session: model, stream, training, saving, export, new sessions."""

import keras
import numpy as np
import pytest
from static_tree import write_tree

import keras_sysid as ks
from keras_sysid.data.pipeline import SessionStream
from keras_sysid.data import select_neurons
from keras_sysid.multisession import MultiSessionModel, build_multisession_model, session_name_for
from keras_sysid.training import fit_sessions

_CORE = {"type": "stacked_conv2d", "channels": 3, "kernel_sizes": [5], "paddings": "same"}
_SHAPE = (12, 14)


def _session(n_trials, n_neurons, seed, offset=128.0):
    rng = np.random.default_rng(seed)
    images = (offset + 40 * rng.normal(size=(n_trials, *_SHAPE, 1))).astype("float32")
    # Each neuron sees the mean of a patch: learnable, and different per session.
    drive = images[:, 3:9, 3:9, 0].mean(axis=(1, 2)) - offset
    rates = 2 * np.log1p(np.exp(np.outer(drive / 4, np.linspace(0.5, 1.5, n_neurons))))
    return images, rng.poisson(rates).astype("float32")


def _model(sizes=None):
    sizes = sizes or {"a": 6, "b": 4}
    keras.utils.set_random_seed(0)
    return build_multisession_model({name: {"n_neurons": n, "image_shape": _SHAPE} for name, n in sizes.items()},
                                    core=_CORE, readout={"type": "factorized", "l1": 0.001})


def test_sessions_share_one_core_and_keep_their_own_parts():
    model = _model()
    assert model.session_names == ("a", "b") and model.n_neurons == {"a": 6, "b": 4}
    assert all(session.core is model.core for session in model.sessions.values())
    model.adapt({"a": _session(40, 6, 0, offset=100.0), "b": _session(30, 4, 1, offset=150.0)})
    # Own image standardisation and response scale per session.
    assert model.sessions["a"].image_mean != pytest.approx(model.sessions["b"].image_mean, abs=10)
    out = model({"a": np.zeros((3, *_SHAPE, 1), "float32"), "b": np.zeros((2, *_SHAPE, 1), "float32")})
    assert tuple(out["a"].shape) == (3, 6) and tuple(out["b"].shape) == (2, 4)
    # Core weights are counted once.
    core_weights = len(model.core.weights)
    assert len(model.weights) == core_weights + sum(len(s.weights) - core_weights for s in model.sessions.values())


def test_bad_sessions_and_inputs_are_named():
    with pytest.raises(ValueError, match="Session name 'scan-1'"):
        _model({"scan-1": 3})
    assert session_name_for("static20457-5-9-preproc0") == "static20457_5_9_preproc0"
    assert session_name_for("2021_scan") == "s_2021_scan"
    model = _model()
    with pytest.raises(ValueError, match=r"Unknown sessions \['c'\]"):
        model({"c": np.zeros((1, *_SHAPE, 1), "float32")})
    with pytest.raises(ValueError, match="takes a dict"):
        model(np.zeros((1, *_SHAPE, 1), "float32"))
    images, responses = _session(20, 5, 0)  # 5 neurons for session "a", which has 6
    with pytest.raises(ValueError, match="session 'a' training responses have 5 neurons but the model predicts 6"):
        fit_sessions(model, {"a": (images, responses)}, {"a": (images, responses)}, max_epochs=1, verbose=0)
    good = _session(20, 6, 0)
    with pytest.raises(ValueError, match="validation sessions"):
        fit_sessions(model, {"a": good}, {"b": _session(20, 4, 0)}, max_epochs=1, verbose=0)
    with pytest.raises(ValueError, match="same input channels"):
        build_multisession_model({"a": {"n_neurons": 2, "image_shape": (8, 8, 1)},
                                  "b": {"n_neurons": 2, "image_shape": (8, 8, 3)}}, core=_CORE)


def test_fit_evaluate_and_predict_check_every_session_as_a_single_model_does():
    model = _model()
    model.compile(optimizer="adam", loss={"a": ks.PoissonLoss(), "b": ks.PoissonLoss()})
    images, responses = _session(8, 6, 0)
    with pytest.raises(ValueError, match=r"session 'b' prediction images"):
        model.predict({"a": images, "b": np.zeros((4, 5, 5, 1), "float32")}, verbose=0)
    with pytest.raises(ValueError, match=r"session 'a' evaluation .*NaN"):
        model.evaluate({"a": np.where(images > 200, np.nan, images)}, {"a": responses}, verbose=0)
    with pytest.raises(ValueError, match=r"training responses must be a dict with the inputs' sessions \['a'\]"):
        model.fit({"a": images}, responses, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="got one array"):
        model.predict(images, verbose=0)
    assert model.predict({"a": images}, verbose=0)["a"].shape == (8, 6)


def test_session_stream_interleaves_every_session_and_resumes_at_any_epoch():
    data = {"a": _session(100, 3, 0), "b": _session(30, 2, 1)}
    even = SessionStream(data, batch_size=16, seed=3, interleave="even")
    assert even.batch_sizes == {"a": 16, "b": 16} and even.steps_per_epoch == 7
    assert even.loss_weights == {"a": 1.0, "b": 1.0}
    proportional = SessionStream(data, batch_size=16, seed=3)
    assert proportional.batch_sizes == {"a": 25, "b": 7}  # 32 trials a step, split 100:30
    assert proportional.loss_weights["a"] == pytest.approx(2 * 100 / 130)
    batches = proportional.batches()
    epoch = [next(batches) for _ in range(proportional.steps_per_epoch)]
    # Within one pass, every trial of a session exactly once.
    rows = np.concatenate([x["a"][:, 0, 0, 0] for x, _ in epoch[:proportional.batches_per_pass["a"]]])
    assert sorted(rows.tolist()) == sorted(data["a"][0][:, 0, 0, 0].tolist())
    second = [next(batches) for _ in range(proportional.steps_per_epoch)]
    resumed = proportional.batches(first_epoch=1)
    for x, y in second:
        x_resumed, y_resumed = next(resumed)
        np.testing.assert_array_equal(y["b"], y_resumed["b"])
        np.testing.assert_array_equal(x["a"], x_resumed["a"])
    with pytest.raises(ValueError, match="interleave"):
        SessionStream(data, interleave="random")


def test_fit_sessions_learns_every_session_and_resumes_to_the_same_weights(tmp_path):
    train = {"a": _session(96, 6, 0), "b": _session(64, 4, 1, offset=150.0)}
    validation = {"a": _session(48, 6, 2), "b": _session(48, 4, 3, offset=150.0)}
    model = _model().adapt(train)
    before = ks.multisession.session_correlations(model, validation)
    history = fit_sessions(model, train, validation, max_epochs=6, learning_rate=0.01, verbose=0, jit_compile=False)
    after = ks.multisession.session_correlations(model, validation)
    assert {"val_correlation", "val_correlation_a", "val_correlation_b", "a_loss", "b_loss"} <= set(history.history)
    assert after["a"] > max(before["a"], 0.3) and after["b"] > max(before["b"], 0.3)
    assert history.history["val_correlation"][0] == pytest.approx(
        (history.history["val_correlation_a"][0] + history.history["val_correlation_b"][0]) / 2)

    class Crash(Exception):
        pass

    class CrashAfterEpoch2(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise Crash()

    def fit(folder, callbacks=()):
        fitted = _model().adapt(train)
        fit_sessions(fitted, train, validation, max_epochs=4, learning_rate=0.01, verbose=0, jit_compile=False,
                     backup_dir=str(folder), fingerprint={"run": 1}, patience=50, callbacks=callbacks)
        return fitted

    class Epochs(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.run = []

        def on_epoch_begin(self, epoch, logs=None):
            self.run.append(epoch)

    whole = fit(tmp_path / "whole")
    with pytest.raises(Crash):
        fit(tmp_path / "parts", [CrashAfterEpoch2()])  # killed after its backup of epoch 2
    epochs = Epochs()
    resumed = fit(tmp_path / "parts", [epochs])  # goes on from epoch 2
    assert epochs.run == [2, 3]
    for left, right in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(left, right, rtol=1e-5, atol=1e-6)
    # The same sessions in another order (their weights are stored by position) do not resume that backup.
    swapped = _model({"b": 4, "a": 6}).adapt(train)
    with pytest.raises(ks.resume.BackupError, match="different run"):
        fit_sessions(swapped, {"b": train["b"], "a": train["a"]}, {"b": validation["b"], "a": validation["a"]},
                     max_epochs=4, verbose=0, backup_dir=str(tmp_path / "parts"), fingerprint={"run": 1})


def test_round_trips_through_keras_and_per_session_saved_model(tmp_path):
    import tensorflow as tf

    model = _model().adapt({"a": _session(40, 6, 0), "b": _session(30, 4, 1)})
    images = _session(5, 4, 9)[0]
    expected = model.sessions["b"].predict(images, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, MultiSessionModel) and loaded.sessions["b"].core is loaded.core
    np.testing.assert_allclose(loaded.sessions["b"].predict(images, verbose=0), expected, rtol=1e-6)
    np.testing.assert_allclose(ks.load_model(path).predict_sessions({"b": images})["b"], expected, rtol=1e-6)
    ks.export.export_saved_model(model, str(tmp_path / "served"))
    served = tf.saved_model.load(str(tmp_path / "served"))
    assert {"serving_a", "serving_b"} <= set(served.signatures)
    first = served.signatures["serving_default"](images=tf.constant(_session(5, 6, 8)[0]))["responses"]
    assert first.shape == (5, 6)  # the default signature is the first session's
    np.testing.assert_allclose(served.signatures["serving_b"](images=tf.constant(images))["responses"].numpy(),
                               expected, rtol=1e-5)


def test_a_new_session_learns_on_the_frozen_core_or_fine_tunes_it():
    train = {"a": _session(96, 6, 0), "b": _session(64, 4, 1)}
    model = _model().adapt(train)
    fit_sessions(model, train, {"a": _session(32, 6, 2), "b": _session(32, 4, 3)}, max_epochs=2, verbose=0,
                 jit_compile=False)
    new_train, new_validation = _session(80, 5, 4), _session(40, 5, 5)
    session = model.add_session("c", n_neurons=5)
    assert type(session.readout) is type(model.sessions["a"].readout) and session.core is model.core
    session.adapt(*new_train)
    core_before = [w.copy() for w in model.core.get_weights()]
    others_before = model.sessions["a"].readout.get_weights()
    fit_sessions(model, {"c": new_train}, {"c": new_validation}, max_epochs=4, learning_rate=0.01, freeze_core=True,
                 verbose=0, jit_compile=False)
    for left, right in zip(core_before, model.core.get_weights()):
        np.testing.assert_array_equal(left, right)
    for left, right in zip(others_before, model.sessions["a"].readout.get_weights()):
        np.testing.assert_array_equal(left, right)
    assert ks.multisession.session_correlations(model, {"c": new_validation})["c"] > 0.3
    fit_sessions(model, {"c": new_train}, {"c": new_validation}, max_epochs=1, verbose=0, jit_compile=False)
    assert any(not np.array_equal(a, b) for a, b in zip(core_before, model.core.get_weights()))
    with pytest.raises(ValueError, match="exists already"):
        model.add_session("c", n_neurons=2)
    with pytest.raises(ValueError, match="same input channels"):
        model.add_session("rgb", n_neurons=2, image_shape=(*_SHAPE, 3))
    with pytest.raises(ValueError, match="same input channels"):
        model.add_session("state", n_neurons=2, behavior_channels=True,
                          behavior_stats={"mean": [0.0, 0.0], "std": [1.0, 1.0]})


def test_evaluate_sessions_scores_each_on_its_own_data(tmp_path):
    data = ks.data.load_static(write_tree(str(tmp_path), n_neurons=6))
    halves = {"x": select_neurons(data, np.arange(0, 6, 2)), "y": select_neurons(data, [5, 3, 1])}
    np.testing.assert_array_equal(halves["y"].responses, data.responses[:, [5, 3, 1]])
    np.testing.assert_array_equal(halves["y"].neurons["unit_ids"], [6, 4, 2])
    keras.utils.set_random_seed(0)
    model = build_multisession_model({name: {"n_neurons": half.n_neurons, "image_shape": half.image_shape}
                                      for name, half in halves.items()}, core=_CORE)
    model.adapt({name: half.tier("train") for name, half in halves.items()})
    scores = ks.multisession.evaluate_sessions(model, halves, "test")
    for name, half in halves.items():
        assert scores[name].summary() == ks.evaluation.evaluate_model(model.sessions[name], half, "test").summary()
    with pytest.raises(ValueError, match="Neuron indices"):
        select_neurons(data, np.array([6]))


def test_synthetic_proof_fits_every_row_and_reads_them_back(tmp_path):
    from keras_sysid.experiments import multisession as proof

    config = proof.MultiSessionSyntheticConfig(n_train=(40, 80), n_neurons=4, n_validation=24, n_test=48,
                                               ground_truth="dog", n_types=2, core="linear", max_epochs=2)
    population, sessions = proof.synthetic_sessions(config)
    neurons = np.concatenate([s[0] for s in sessions.values()])
    assert sorted(neurons.tolist()) == list(range(8))  # every neuron in exactly one session
    assert [len(s[1]) for s in sessions.values()] == [40, 80]
    assert not set(sessions["session0"][1]) & set(sessions["session1"][1])
    lines = []
    rows = proof.run_multisession_synthetic(config, out=str(tmp_path), log=lines.append)
    assert [row["model"] for row in rows] == ["separate", "shared_core_proportional", "shared_core_even", "pooled"]
    assert all(np.isfinite(row["fev"]) and set(row["fev_per_session"]) == set(sessions) for row in rows)
    assert (tmp_path / "multisession_synthetic.csv").exists()
    again = proof.run_multisession_synthetic(config, out=str(tmp_path), log=lines.append)
    assert [row["fev"] for row in again] == [row["fev"] for row in rows]
    assert sum("read" in line for line in lines) == 4


def test_mouse_v1_split_halves_have_disjoint_neurons_and_training_trials(tmp_path):
    from keras_sysid.experiments import multisession as proof

    data = ks.data.load_static(write_tree(str(tmp_path), n_neurons=6))
    halves = proof.split_recording(data, seed=0)
    a, b = halves["half_a"], halves["half_b"]
    assert a.n_neurons + b.n_neurons == 6
    assert not set(a.neurons["unit_ids"].tolist()) & set(b.neurons["unit_ids"].tolist())
    train_a, train_b = (set(h.trials["trial_idx"][h.indices("train")].tolist()) for h in (a, b))
    assert not train_a & train_b and len(train_a | train_b) == len(data.indices("train"))
    for half in (a, b):  # validation and test tiers kept whole
        assert len(half.indices("test")) == len(data.indices("test"))
        assert len(half.indices("validation")) == len(data.indices("validation"))
    rows = proof.run_multisession_mouse_v1(data, str(tmp_path / "run"), settings=proof.FitSettings(max_epochs=1),
                                           verbose=0, log=lambda line: None)
    assert [(row["model"], row["session"]) for row in rows] == [
        ("separate", "half_a"), ("separate", "half_b"), ("joint", "half_a"), ("joint", "half_b")]
    assert all(np.isfinite(row["corr_single"]) for row in rows)
    assert (tmp_path / "run" / "multisession_mouse_v1.csv").exists()
