"""Files written so that a crash, even ``kill -9``, leaves the old file or the new one, never half of one.

Each writer writes a temporary sibling, flushes it to disk and renames it over
the destination (a rename within one folder is atomic on POSIX file systems).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable

import numpy as np


def fsync_path(path: str) -> None:
    """Flushes the file at ``path`` to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _temporary_sibling(path: str, suffix: str = "") -> str:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp" + suffix, dir=folder)
    os.close(descriptor)
    return temporary


def _replace(temporary: str, path: str) -> None:
    fsync_path(temporary)
    os.replace(temporary, path)


def json_safe(value):
    """``value`` with every non-finite float as ``None`` and numpy scalars as Python numbers (strict JSON)."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(value, path: str, indent: int | None = None) -> None:
    """Writes ``value`` as strict JSON (NaN and inf become ``null``) to ``path``, atomically."""
    text = json.dumps(json_safe(value), indent=indent, allow_nan=False)
    temporary = _temporary_sibling(path)
    try:
        with open(temporary, "w") as file:
            file.write(text)
    except BaseException:
        os.unlink(temporary)
        raise
    _replace(temporary, path)


def write_npz(path: str, **arrays) -> None:
    """``numpy.savez`` of ``arrays`` to ``path``, atomically."""
    temporary = _temporary_sibling(path, suffix=".npz")
    try:
        np.savez(temporary, **arrays)
    except BaseException:
        os.unlink(temporary)
        raise
    _replace(temporary, path)


def save_model(model, path: str) -> None:
    """``model.save(path)`` (a ``.keras`` file), atomically: a reader never sees half a file."""
    temporary = _temporary_sibling(path, suffix=".keras")
    try:
        model.save(temporary)
    except BaseException:
        os.unlink(temporary)
        raise
    _replace(temporary, path)


def write_folder(path: str, write: Callable[[str], None]) -> None:
    """Calls ``write(folder)`` on a new temporary folder, then puts it at ``path`` (replacing what was there).

    The old folder is moved aside before the new one moves in and is deleted
    after, so ``path`` holds a complete folder except for the instant between
    two renames. Only folders this function made are ever deleted.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        write(temporary)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    old = None
    if os.path.exists(path):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old", dir=parent)
        os.rmdir(old)
        os.replace(path, old)
    os.replace(temporary, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
