"""Resumable training: a fit killed at any moment continues where it stopped.

:class:`TrainingBackup` writes, after every completed epoch, everything a fit
needs to go on: model and optimizer weights, the epoch count, the history and
the state of an :class:`~keras_sysid.training.EarlyStoppingWithDecay` schedule
(its best weights, patience counter and learning-rate steps). A backup is a
new folder that a small pointer file (``progress.json``) names; the pointer is
replaced atomically, so a ``kill -9`` in the middle of writing leaves the
previous complete backup in place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import keras
import numpy as np

from keras_sysid import atomic_files

_POINTER = "progress.json"


class BackupError(RuntimeError):
    """A backup folder cannot be used to resume this fit."""


def fingerprint_differences(saved, current, prefix: str = "", labels=("saved", "current")) -> list[str]:
    """Where two JSON-like fingerprints differ, one line per differing entry.

    Nested dicts are compared entry by entry and named by dotted paths, e.g.
    ``["settings.max_epochs: saved 5, current 40"]`` (``labels`` names the two
    sides); an empty list means equal.
    """
    was, now = labels
    if isinstance(saved, dict) and isinstance(current, dict):
        lines = []
        for key in list(saved) + [k for k in current if k not in saved]:
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in saved:
                lines.append(f"{path}: not {was}, {now} {json.dumps(current[key])}")
            elif key not in current:
                lines.append(f"{path}: {was} {json.dumps(saved[key])}, not {now}")
            else:
                lines.extend(fingerprint_differences(saved[key], current[key], path, labels))
        return lines
    if saved == current:
        return []
    return [f"{prefix or 'fingerprint'}: {was} {json.dumps(saved)}, {now} {json.dumps(current)}"]


class TrainingBackup(keras.callbacks.Callback):
    """Keeps a ``fit`` resumable after a crash, a pre-emption or ``kill -9``.

    Use it through :func:`~keras_sysid.training.fit_with_schedule`'s
    ``backup_dir``, which also passes ``initial_epoch`` to ``fit`` and starts
    an :class:`~keras_sysid.data.pipeline.EpochStream` at that epoch, so a
    resumed run sees the same batches as an uninterrupted one.

    Args:
        directory: Folder of the backups (created if missing).
        schedule: The run's :class:`~keras_sysid.training.EarlyStoppingWithDecay`,
            whose state is saved and restored with the weights.
        fingerprint: A JSON-serialisable description of the run (its config);
            resuming from a backup with a different fingerprint fails instead
            of silently mixing two runs.

    Example:
        >>> backup = TrainingBackup("runs/a/backup", schedule, {"lr": 0.003})
        >>> model.fit(train, epochs=100, initial_epoch=backup.completed_epochs(),
        ...           callbacks=[schedule, backup])
    """

    def __init__(self, directory, schedule=None, fingerprint=None):
        super().__init__()
        self.directory = os.fspath(directory)
        self.schedule = schedule
        self.fingerprint = json.loads(json.dumps(fingerprint)) if fingerprint is not None else None
        self._progress = self._read_progress()

    def _read_progress(self) -> dict | None:
        path = os.path.join(self.directory, _POINTER)
        if not os.path.exists(path):
            return None
        try:
            with open(path) as file:
                progress = json.load(file)
            epochs = int(progress["completed_epochs"])
            folder = os.path.join(self.directory, progress["folder"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise BackupError(f"Backup pointer {path} is unreadable ({error}); delete {self.directory} to start over.")
        if not os.path.isfile(os.path.join(folder, "model.weights.h5")):
            raise BackupError(f"Backup {folder} named by {path} has no model.weights.h5; delete {self.directory}.")
        if self.fingerprint is not None and progress.get("fingerprint") != self.fingerprint:
            differences = fingerprint_differences(progress.get("fingerprint"), self.fingerprint)
            raise BackupError(
                f"Backup in {self.directory} belongs to a different run:\n  " + "\n  ".join(differences)
                + "\nUse another folder, or delete it to start over."
            )
        progress["completed_epochs"] = epochs
        return progress

    def completed_epochs(self) -> int:
        """Epochs finished by earlier runs (0 when there is no backup)."""
        return 0 if self._progress is None else self._progress["completed_epochs"]

    def finished(self) -> bool:
        """Whether an earlier run already ended (stopped early or ran out of epochs)."""
        return bool(self._progress and self._progress.get("finished"))

    def continues_to(self, max_epochs: int) -> bool:
        """Whether a finished run goes on under ``max_epochs``: it ran out of fewer epochs, it did not stop early.

        Backups written before this was recorded count as stopped early.
        """
        progress = self._progress or {}
        return (self.finished() and progress.get("stopped_early") is False
                and progress["completed_epochs"] < int(max_epochs))

    def history(self) -> dict:
        """The logs of the finished epochs, ``{metric: [value per epoch]}``."""
        return {} if self._progress is None else {k: list(v) for k, v in self._progress["history"].items()}

    def logs(self) -> dict:
        """Every epoch's logs so far, the finished runs' and this one's."""
        return {key: list(values) for key, values in getattr(self, "_history", self.history()).items()}

    def restore(self, model: keras.Model) -> None:
        """Loads the backed-up model and optimizer weights, and the schedule's state, into ``model``."""
        if self._progress is None:
            return
        folder = os.path.join(self.directory, self._progress["folder"])
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(os.path.join(folder, "model.weights.h5"))
        except Exception as error:  # h5py and Keras raise many types for a damaged file
            raise BackupError(f"Cannot load {folder}/model.weights.h5 ({type(error).__name__}: {error}).") from error
        if model.optimizer is not None:
            model.optimizer.learning_rate.assign(self._progress["learning_rate"])
        if self.schedule is not None and self._progress.get("schedule") is not None:
            with np.load(os.path.join(folder, "schedule_best_weights.npz"), allow_pickle=False) as arrays:
                best_weights = [arrays[f"w{i}"] for i in range(len(arrays.files))] or None
            self.schedule.set_state(self._progress["schedule"], best_weights)

    def training_seconds(self) -> float:
        """Wall-clock seconds spent training so far, summed over every run of this fit."""
        return 0.0 if self._progress is None else float(self._progress.get("seconds", 0.0))

    def on_train_begin(self, logs=None):
        # Runs after the schedule's own on_train_begin (which resets it).
        self.restore(self.model)
        self._history = self.history()
        self._seconds_before = self.training_seconds()
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self._history.setdefault(key, []).append(float(value))
        self._write(epoch + 1, finished=False)

    def on_train_end(self, logs=None):
        # stop_training: the schedule (or a NaN) ended the fit, not the epoch limit.
        self._write(len(next(iter(self._history.values()), [])), finished=True,
                    stopped_early=bool(getattr(self.model, "stop_training", False)))

    def _write(self, completed_epochs: int, finished: bool, stopped_early: bool | None = None) -> None:
        os.makedirs(self.directory, exist_ok=True)
        name = f"epoch{completed_epochs:05d}" + ("-final" if finished else "")
        # Written in full under a temporary name, flushed to disk, then renamed: the pointer only
        # ever names a complete folder.
        staging = tempfile.mkdtemp(prefix=f".{name}.", dir=self.directory)
        self.model.save_weights(os.path.join(staging, "model.weights.h5"))
        schedule_state = None
        if self.schedule is not None:
            schedule_state, best_weights = self.schedule.get_state()
            np.savez(os.path.join(staging, "schedule_best_weights.npz"),
                     **{f"w{i}": w for i, w in enumerate(best_weights or [])})
        for entry in os.listdir(staging):
            atomic_files.fsync_path(os.path.join(staging, entry))
        folder = os.path.join(self.directory, name)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
        progress = {
            "completed_epochs": completed_epochs,
            "finished": finished,
            "folder": name,
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "schedule": schedule_state,
            "history": self._history,
            "fingerprint": self.fingerprint,
            # Earlier runs' time plus this run's: a resumed fit reports its whole cost.
            "seconds": round(self._seconds_before + time.perf_counter() - self._started, 1),
            "max_epochs": int(self.params.get("epochs", 0)) if self.params else None,
            "stopped_early": stopped_early,
        }
        atomic_files.write_json(progress, os.path.join(self.directory, _POINTER))
        for entry in os.listdir(self.directory):
            if (entry.startswith("epoch") and entry != name) or (entry.startswith(".epoch") and entry != name):
                shutil.rmtree(os.path.join(self.directory, entry), ignore_errors=True)
