"""Resumable training: a fit interrupted mid-epoch, resumed, equals an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_sysid.data.synthetic import make_population
from keras_sysid.experiments.presets import SyntheticRunConfig
from keras_sysid.data.readers.synthetic import from_population
from keras_sysid.recipes.synthetic import model_for
from keras_sysid.resume import BackupError, TrainingBackup
from keras_sysid.training import fit_with_schedule

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Crash(Exception):
    pass


class _CrashAt(keras.callbacks.Callback):
    """Raises in the middle of an epoch, like a crash would."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise _Crash()


def _fit(population, backup_dir=None, callbacks=(), fingerprint=None):
    config = SyntheticRunConfig(n_neurons=30, image_size=20, n_train=512, seed=0)
    keras.utils.set_random_seed(0)
    model = model_for(config, from_population(population, "synthetic_dog"))
    history = fit_with_schedule(
        model, population.epoch_stream("train", 64, seed=0), population.dataset("validation", 256),
        max_epochs=6, learning_rate=0.01, patience=1, n_decays=1, verbose=0,
        callbacks=callbacks, backup_dir=backup_dir, fingerprint=fingerprint or {"run": 1},
    )
    return model, history


@pytest.fixture(scope="module")
def population():
    return make_population("dog", n_neurons=30, n_types=2, image_size=20, n_train=512, n_validation=128, n_test=128, seed=0)


def test_resumed_fit_equals_uninterrupted_fit(population, tmp_path):
    reference, reference_history = _fit(population)
    backup = str(tmp_path / "backup")
    with pytest.raises(_Crash):
        _fit(population, backup, callbacks=[_CrashAt(epoch=2, batch=3)])
    with open(os.path.join(backup, "progress.json")) as file:
        progress = json.load(file)
    assert progress["completed_epochs"] == 2 and progress["seconds"] > 0
    resumed, resumed_history = _fit(population, backup)
    # The training time of the crashed run counts towards the fit's.
    assert TrainingBackup(backup).training_seconds() > progress["seconds"]
    assert len(resumed_history.epoch) == len(reference_history.epoch)
    np.testing.assert_allclose(resumed_history.history["val_loss"], reference_history.history["val_loss"], rtol=1e-5)
    images = population.test.images[:16]
    np.testing.assert_allclose(resumed.predict(images, verbose=0), reference.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    # A finished run is not trained again: the same call just loads its result.
    again, again_history = _fit(population, backup, callbacks=[_CrashAt(epoch=0, batch=0)])
    np.testing.assert_allclose(again.predict(images, verbose=0), reference.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    assert again_history.history["val_loss"] == resumed_history.history["val_loss"]


def test_backup_of_another_run_is_refused(population, tmp_path):
    backup = str(tmp_path / "backup")
    with pytest.raises(_Crash):
        _fit(population, backup, callbacks=[_CrashAt(epoch=1, batch=0)], fingerprint={"run": 1})
    with pytest.raises(BackupError, match="different run"):
        _fit(population, backup, fingerprint={"run": 2})


def test_corrupt_backup_names_the_file(population, tmp_path):
    backup = tmp_path / "backup"
    with pytest.raises(_Crash):
        _fit(population, str(backup), callbacks=[_CrashAt(epoch=1, batch=0)])
    (backup / "progress.json").write_text("{not json")
    with pytest.raises(BackupError, match="progress.json"):
        _fit(population, str(backup))


def _train_command(out):
    return [
        sys.executable, os.path.join(_ROOT, "tools", "train.py"), "--n_neurons", "40", "--image_size", "24",
        "--n_train", "4096", "--epochs", "8", "--patience", "2", "--out", str(out),
    ]


def test_train_tool_resumes_after_kill_9(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    reference = subprocess.run(_train_command(tmp_path / "reference"), capture_output=True, text=True, env=env)
    assert reference.returncode == 0, reference.stderr[-2000:]
    expected = json.loads(reference.stdout.strip().splitlines()[-1])

    out = tmp_path / "killed"
    process = subprocess.Popen(_train_command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    progress = out / "backup" / "progress.json"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if progress.exists() and json.loads(progress.read_text())["completed_epochs"] >= 2:
            break
        time.sleep(0.02)
    assert process.poll() is None, "training ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = json.loads(progress.read_text())["completed_epochs"]
    assert 2 <= killed_at < expected["epochs"]

    resumed = subprocess.run(_train_command(out), capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"after epoch {killed_at}" in resumed.stdout
    result = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert result["epochs"] == expected["epochs"]
    for key in ("fev", "corr_test", "final_loss", "best_val_loss", "rf_error_px"):
        assert result[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key
