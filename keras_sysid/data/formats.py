"""``load``: any recording, whatever its format, as a :class:`~keras_sysid.data.recording.Recording`.

Each format is one reader module in :mod:`keras_sysid.data.readers` that
registers itself with :func:`register_format`: a function that reads a source
into a ``Recording``, and a test of whether a source is its kind. Adding a
format is adding one such file; :func:`load` finds it.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import pkgutil
from collections.abc import Callable

from keras_sysid.data.recording import Recording, RecordingError

_FORMATS: dict = {}


@dataclasses.dataclass(frozen=True)
class Format:
    """A registered reader.

    Attributes:
        name: The format's name (``load(..., format=name)``).
        read: ``read(source, **options) -> Recording``.
        claims: ``claims(source) -> bool``: whether ``source`` is of this format.
        description: One line for listings and errors.
    """

    name: str
    read: Callable
    claims: Callable
    description: str

    def options(self) -> list[str]:
        """The keyword options ``read`` takes."""
        parameters = list(inspect.signature(self.read).parameters.values())[1:]
        return [p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def register_format(name: str, claims: Callable, description: str):
    """Decorator that registers ``read(source, **options) -> Recording`` as format ``name``."""

    def register(read):
        if name in _FORMATS and _FORMATS[name].read is not read:
            raise ValueError(f"A recording format named {name!r} is registered already.")
        _FORMATS[name] = Format(name, read, claims, description)
        return read

    return register


def registered_formats() -> dict[str, Format]:
    """Every registered format by name (the reader modules are imported on first use)."""
    readers = importlib.import_module("keras_sysid.data.readers")
    for module in pkgutil.iter_modules(readers.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{readers.__name__}.{module.name}")
    return dict(sorted(_FORMATS.items()))


def is_path(source) -> bool:
    """Whether ``source`` names a file or folder (a ``str`` or ``os.PathLike``)."""
    return isinstance(source, (str, os.PathLike))


def load(source, format: str | None = None, **options) -> Recording:
    """Reads a recording, whatever its format.

    Args:
        source: A ``static*-preproc0`` zip or folder, an ``.nwb`` file,
            ``(images, responses)`` or a dict of arrays (``images``,
            ``responses``, and optionally ``image_ids``, ``tiers``,
            ``behavior``, ``pupil_center``, ``neurons``), or
            ``"synthetic"`` / ``"synthetic:cnn"`` for the built-in ground truth.
        format: A name of :func:`registered_formats`; default: the one that claims ``source``.
        **options: The reader's options (e.g. NWB's ``window``); an option
            the reader does not take is refused by name.

    Returns:
        A :class:`~keras_sysid.data.recording.Recording`.

    Raises:
        RecordingError: no such file, no reader for it, an option the reader
            does not take, or whatever the reader finds wrong (named).

    Example:
        >>> recording = ks.data.load("static20457-5-9-preproc0.zip")
        >>> recording = ks.data.load("session.nwb", window=(0.1, 0.35))
        >>> recording = ks.data.load((images, responses))
    """
    registered = registered_formats()
    if format is not None:
        if format not in registered:
            raise RecordingError(f"Unknown recording format {format!r}; the formats are {sorted(registered)}.")
        reader = registered[format]
    else:
        claiming = [reader for reader in registered.values() if reader.claims(source)]
        if not claiming:
            if is_path(source) and not os.path.exists(source):
                raise RecordingError(f"{os.fspath(source)}: no such file or folder.")
            described = "; ".join(f"{r.name}: {r.description}" for r in registered.values())
            raise RecordingError(f"No reader for {_describe(source)}. The formats are: {described}.")
        reader = claiming[0]
    unknown = sorted(set(options) - set(reader.options()))
    if unknown:
        raise RecordingError(f"The {reader.name} reader takes no option {', '.join(unknown)}; its options are "
                             f"{', '.join(reader.options()) or 'none'}.")
    return reader.read(source, **options)


def _describe(source) -> str:
    if is_path(source):
        return repr(os.fspath(source))
    return f"a {type(source).__name__}"
