"""The run store (keras_sysid.runs), atomic files, and backups that prove their run."""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid import atomic_files, runs
from keras_sysid.resume import BackupError


def test_a_second_run_into_a_locked_folder_stops_at_once_naming_the_holder(tmp_path):
    first = runs.Run(tmp_path / "run", {"a": 1})
    with first:
        with pytest.raises(runs.RunLockedError, match=rf"in use by process {os.getpid()} on {socket.gethostname()}"):
            runs.Run(tmp_path / "run", {"a": 1}).lock()
    with runs.Run(tmp_path / "run", {"a": 1}):  # released at the end of the first
        pass
    assert not os.path.exists(tmp_path / "run" / ".lock")


def test_the_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "since": "x"}))
    with runs.Run(folder, {"a": 1}):
        assert json.loads((folder / ".lock").read_text())["pid"] == os.getpid()
    # Another host's lock is respected: its process cannot be seen from here.
    (folder / ".lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": "x"}))
    with pytest.raises(runs.RunLockedError, match="on elsewhere"):
        runs.Run(folder, {"a": 1}).lock()


def test_a_folder_of_another_key_is_refused_with_the_differences_and_a_finished_run_is_read_back(tmp_path):
    run = runs.Run(tmp_path / "run", {"data": "abc", "settings": {"patience": 4}})
    assert run.finished() is None
    written = run.write_results({"corr": float("nan"), "max_epochs": 5, "stopped_early": True})
    assert run.finished() is None  # no model.keras: its finished backup writes it again
    (tmp_path / "run" / "model.keras").touch()
    assert written["corr"] is None and written["key"] == run.key
    assert json.loads((tmp_path / "run" / "results.json").read_text())["corr"] is None  # strict JSON, no NaN
    assert runs.Run(tmp_path / "run", run.key).finished()["max_epochs"] == 5
    with pytest.raises(runs.RunKeyError, match=r"settings.patience: stored 4, this run 5"):
        runs.Run(tmp_path / "run", {"data": "abc", "settings": {"patience": 5}}).finished()


def test_a_run_that_ran_out_of_epochs_goes_on_when_given_more(tmp_path):
    run = runs.Run(tmp_path / "run", {"k": 1})
    run.write_results({"max_epochs": 5, "stopped_early": False})
    (tmp_path / "run" / "model.keras").touch()
    assert run.finished(max_epochs=5) is not None
    assert run.finished(max_epochs=8) is None  # continue from the backup
    run.write_results({"max_epochs": 5, "stopped_early": True})
    assert run.finished(max_epochs=8) is not None  # stopped early: more epochs change nothing


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    atomic_files.write_json({"x": np.float32(1.5), "y": [np.inf]}, str(tmp_path / "a.json"))
    atomic_files.write_npz(str(tmp_path / "a.npz"), v=np.arange(3))
    atomic_files.write_folder(str(tmp_path / "folder"), lambda f: open(os.path.join(f, "x"), "w").close())
    atomic_files.write_folder(str(tmp_path / "folder"), lambda f: open(os.path.join(f, "y"), "w").close())
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1.5, "y": [None]}
    assert sorted(os.listdir(tmp_path)) == ["a.json", "a.npz", "folder"]
    assert os.listdir(tmp_path / "folder") == ["y"]


def _tiny_fit(images, responses, backup_dir, epochs=2):
    keras.utils.set_random_seed(0)
    model = ks.build_model(n_neurons=responses.shape[1], image_shape=images.shape[1:3],
                           core={"type": "stacked_conv2d", "channels": 2, "kernel_sizes": [5], "paddings": "same"},
                           readout={"type": "gaussian"})
    model.adapt(images, responses)
    history = ks.fit_with_schedule(model, (images[:48], responses[:48]), (images[48:], responses[48:]),
                                   max_epochs=epochs, verbose=0, backup_dir=backup_dir)
    return model, history


def test_fit_with_schedule_never_restores_the_backup_of_another_run(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(64, 12, 12, 1)).astype("float32")
    responses = rng.poisson(2.0, size=(64, 4)).astype("float32")
    backup = str(tmp_path / "backup")
    model, _ = _tiny_fit(images, responses, backup)
    again, history = _tiny_fit(images, responses, backup)  # the same run: read back, not refitted
    np.testing.assert_array_equal(again.predict(images, verbose=0), model.predict(images, verbose=0))
    assert len(history.epoch) == 2
    with pytest.raises(BackupError, match="belongs to a different run"):
        _tiny_fit(images, responses * 2 + 1, backup)  # other data
    more, history = _tiny_fit(images, responses, backup, epochs=3)  # ran out of epochs: goes on
    assert len(history.epoch) == 3


def test_a_backup_of_a_tf_data_fit_needs_a_fingerprint(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.normal(size=(16, 12, 12, 1)).astype("float32")
    responses = rng.poisson(2.0, size=(16, 4)).astype("float32")
    model = ks.build_model(n_neurons=4, image_shape=(12, 12), core={"type": "identity"}, readout={"type": "gaussian"})
    dataset = tf.data.Dataset.from_tensor_slices((images, responses)).batch(8)
    with pytest.raises(ValueError, match="cannot be hashed .* pass fingerprint="):
        ks.fit_with_schedule(model, dataset, dataset, max_epochs=1, verbose=0, backup_dir=str(tmp_path / "b"))
