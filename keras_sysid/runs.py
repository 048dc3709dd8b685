"""The run store: one folder per run, keyed by everything that determines it, locked while in use.

A run folder holds ``results.json`` (written last: it marks the run finished,
and carries the run's key), ``model.keras``, other result files and
``backup/`` (the per-epoch backups of :class:`~keras_sysid.resume.TrainingBackup`
that make a killed fit resumable). Every file is written atomically
(:mod:`keras_sysid.atomic_files`).

- **Key**: a JSON-able dict of everything that determines the result (data
  fingerprints, model and fit settings, keras_sysid version, backend,
  precision). A folder holding a run of another key is refused with the
  differences, never silently reused. ``max_epochs`` is not part of a key:
  a run given more epochs continues from its backup.
- **Lock**: ``.lock`` in the folder, made exclusively, naming the holder's pid
  and host. A second run into a locked folder stops at once with
  :class:`RunLockedError`; the lock of a process that has died on this host
  is stale and taken over.

Example:
    >>> run = Run("runs/session", key)
    >>> with run:                       # locked; RunLockedError if in use
    ...     results = run.finished()    # None, or the stored results of this key
    ...     if results is None:
    ...         model = fit(backup_dir=run.backup_dir)
    ...         run.save_model(model)
    ...         run.write_results({...})
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import socket
import time

from keras_sysid import atomic_files
from keras_sysid.resume import TrainingBackup, fingerprint_differences

RESULTS = "results.json"
_LOCK = ".lock"


class RunLockedError(RuntimeError):
    """The run folder is in use by another process."""


class RunKeyError(RuntimeError):
    """The run folder holds a run of another key."""


class RunInterrupted(KeyboardInterrupt):
    """A fit stopped by Ctrl-C; its message names the last epoch kept, from which the same call resumes."""


def key_digest(key: dict, length: int = 8) -> str:
    """A short hex digest of ``key`` (its sorted JSON)."""
    return hashlib.sha256(json.dumps(atomic_files.json_safe(key), sort_keys=True).encode()).hexdigest()[:length]


def default_folder(kind: str, label: str, key: dict, root: str = "runs") -> str:
    """``<root>/<kind>/<label>_<digest of key>``: one folder per distinct run, so the same command finds it again."""
    return os.path.join(root, kind, f"{label}_{key_digest(key)}")


class Run:
    """A run folder with its key (see the module docstring).

    Args:
        folder: The run's folder (created when the run is locked).
        key: Everything that determines the run, JSON-able.
    """

    def __init__(self, folder, key: dict):
        self.folder = os.fspath(folder)
        self.key = json.loads(json.dumps(atomic_files.json_safe(key)))
        self._locked = False

    @property
    def backup_dir(self) -> str:
        return os.path.join(self.folder, "backup")

    def path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    # -- the lock -------------------------------------------------------------

    def __enter__(self) -> "Run":
        self.lock()
        return self

    def __exit__(self, *exc_info) -> None:
        self.unlock()

    def lock(self) -> None:
        """Takes the folder's lock, or raises :class:`RunLockedError` naming its holder."""
        os.makedirs(self.folder, exist_ok=True)
        path = self.path(_LOCK)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_lock(path)
                if holder is not None and _is_stale(holder):
                    _remove(path)  # its process died: take the lock over
                    continue
                if holder is None:
                    # Being written this instant, or left empty by a crash: wait a moment, then judge it again.
                    time.sleep(0.2)
                    holder = _read_lock(path)
                    if holder is None:
                        _remove(path)
                        continue
                    if _is_stale(holder):
                        _remove(path)
                        continue
                raise RunLockedError(
                    f"{self.folder} is in use by process {holder.get('pid')} on {holder.get('host')} "
                    f"(since {holder.get('since')}): wait for it to finish, or give another folder.") from None
            with os.fdopen(descriptor, "w") as file:
                json.dump(me, file)
            self._locked = True
            return
        raise RunLockedError(f"{self.folder}: could not take its lock ({path}).")

    def unlock(self) -> None:
        if self._locked:
            self._locked = False
            holder = _read_lock(self.path(_LOCK))
            if holder is not None and holder.get("pid") == os.getpid():
                _remove(self.path(_LOCK))

    @contextlib.contextmanager
    def resumable(self):
        """Turns Ctrl-C inside into :class:`RunInterrupted` naming the last epoch the backup kept."""
        try:
            yield
        except KeyboardInterrupt:
            epochs = TrainingBackup(self.backup_dir).completed_epochs() if os.path.isdir(self.backup_dir) else 0
            raise RunInterrupted(f"interrupted after epoch {epochs}: rerun the same command to resume.") from None

    # -- what the folder holds ------------------------------------------------

    def stored_key(self):
        """The key of what the folder holds: its results' key, else its backup's, else ``None``."""
        results = self.stored_results()
        if results is not None:
            return results.get("key")
        pointer = os.path.join(self.backup_dir, "progress.json")
        if os.path.exists(pointer):
            try:
                with open(pointer) as file:
                    return json.load(file).get("fingerprint")
            except (OSError, ValueError):
                return None  # TrainingBackup names an unreadable pointer itself
        return None

    def stored_results(self) -> dict | None:
        """``results.json`` as stored (any key), or ``None`` where there is none."""
        path = self.path(RESULTS)
        if not os.path.exists(path):
            return None
        try:
            with open(path) as file:
                results = json.load(file)
        except (OSError, ValueError) as error:
            raise RunKeyError(f"{path} is unreadable ({error}); delete it to fit again.") from None
        if not isinstance(results, dict):
            raise RunKeyError(f"{path} is not a JSON object; delete it to fit again.")
        return results

    def differences(self) -> list[str]:
        """How the folder's stored run differs from this key, one line each; empty when the same or empty."""
        stored = self.stored_key()
        if stored is None:
            if self.stored_results() is not None:
                return ["the stored results carry no key (written by an older keras_sysid)"]
            return []
        return fingerprint_differences(stored, self.key, labels=("stored", "this run"))

    def check(self) -> None:
        """Raises :class:`RunKeyError` when the folder holds a run of another key."""
        differences = self.differences()
        if differences:
            raise RunKeyError(f"{self.folder} holds another run:\n  " + "\n  ".join(differences)
                              + "\nGive another folder, or delete this one to start over.")

    def finished(self, max_epochs: int | None = None, files=("model.keras",)) -> dict | None:
        """The stored results of this key, or ``None`` when the run is still to be (or being) fitted.

        A run that stopped because it reached fewer epochs than ``max_epochs``
        (not by early stopping) is not finished: it continues from its backup.
        Nor is one that lacks any of ``files``: its finished backup writes them again.

        Raises:
            RunKeyError: the folder holds a run of another key.
        """
        self.check()
        results = self.stored_results()
        if results is None or not all(os.path.exists(self.path(name)) for name in files):
            return None
        stopped_at = results.get("max_epochs")
        if (max_epochs is not None and stopped_at is not None and not results.get("stopped_early", True)
                and int(max_epochs) > int(stopped_at)):
            return None
        return results

    # -- writing --------------------------------------------------------------

    def write_results(self, results: dict) -> dict:
        """Writes ``results.json`` (with the run's key), last: it marks the run finished. Returns what was written."""
        results = {**results, "key": self.key}
        atomic_files.write_json(results, self.path(RESULTS), indent=2)
        return atomic_files.json_safe(results)

    def save_model(self, model, name: str = "model.keras") -> None:
        atomic_files.save_model(model, self.path(name))

    def write_json(self, name: str, value) -> None:
        atomic_files.write_json(value, self.path(name), indent=2)

    def write_npz(self, name: str, **arrays) -> None:
        atomic_files.write_npz(self.path(name), **arrays)

    def write_folder(self, name: str, write) -> None:
        atomic_files.write_folder(self.path(name), write)


def _read_lock(path: str) -> dict | None:
    try:
        with open(path) as file:
            holder = json.load(file)
        return holder if isinstance(holder, dict) else None
    except (OSError, ValueError):
        return None


def _is_stale(holder: dict) -> bool:
    """Whether the lock's process is gone (only judged on this host; another host's lock is respected)."""
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder.get("pid")), 0)
    except (TypeError, ValueError):
        return True
    except OSError as error:
        return error.errno == errno.ESRCH
    return False


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
