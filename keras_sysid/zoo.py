"""Pretrained models: list them, load one in a line, or save your own in the same format.

A zoo entry is a folder (the layout of KerasHub presets)::

    <name>/
      config.json         the model's Keras config (no code)
      model.weights.h5    its weights (HDF5 arrays, no pickle)
      metadata.json       the model card's facts: data, units, licence, command, metrics
      README.md           the model card, for people
      SHA256SUMS          sha256 of each file above

Shipped entries live in the ``keras_sysid_zoo`` package (the repository's
``zoo/`` folder) and are found with :mod:`importlib.resources`, so they work
from an installed wheel. :func:`load` verifies every checksum before reading
anything, deserialises in Keras safe mode and never unpickles.

Example:
    >>> import keras_sysid as ks
    >>> ks.zoo.list_models()
    [...]
    >>> model = ks.zoo.load("mouse_v1_factorized")     # or a folder path
    >>> model.predict(images).shape                      # images: (n, 36, 64, 1), 0..255
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os

import keras

from keras_sysid.cloning import clone

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
CARD_FILE = "README.md"
CHECKSUM_FILE = "SHA256SUMS"
_CHECKED_FILES = (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE, CARD_FILE)
_ZOO_PACKAGE = "keras_sysid_zoo"


class ZooError(ValueError):
    """A zoo entry is unknown, incomplete, altered or unreadable."""


def _shipped_root():
    try:
        return importlib.resources.files(_ZOO_PACKAGE)
    except ModuleNotFoundError:
        return None


def list_models() -> list[str]:
    """Names of the shipped zoo entries, sorted."""
    root = _shipped_root()
    if root is None:
        return []
    return sorted(entry.name for entry in root.iterdir() if entry.is_dir() and entry.joinpath(CHECKSUM_FILE).is_file())


def _resolve(name_or_path: str) -> str:
    if os.path.isdir(name_or_path):
        return os.fspath(name_or_path)
    root = _shipped_root()
    if root is not None and root.joinpath(name_or_path).is_dir():
        # Shipped files are plain files inside the installed package.
        return os.fspath(root.joinpath(name_or_path))
    raise ZooError(
        f"{name_or_path!r} is neither a zoo model nor a folder; zoo models: {', '.join(list_models()) or 'none'}."
    )


def sha256(path: str) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(folder: str) -> None:
    """Checks every file of an entry against its ``SHA256SUMS``.

    Raises:
        ZooError: naming the file that is missing, altered or truncated.
    """
    listing = os.path.join(folder, CHECKSUM_FILE)
    if not os.path.isfile(listing):
        raise ZooError(f"{listing}: file is missing; cannot verify the model's files.")
    expected = {}
    with open(listing) as file:
        for line in file:
            if line.strip():
                digest, _, name = line.strip().partition("  ")
                expected[name] = digest
    for name in _CHECKED_FILES:
        path = os.path.join(folder, name)
        if name not in expected:
            raise ZooError(f"{listing}: has no checksum for {name}.")
        if not os.path.isfile(path):
            raise ZooError(f"{path}: file is missing.")
        if sha256(path) != expected[name]:
            raise ZooError(f"{path}: checksum mismatch; the file is altered or truncated.")


def metadata(name_or_path: str) -> dict:
    """The entry's ``metadata.json`` (after verifying checksums)."""
    folder = _resolve(name_or_path)
    verify(folder)
    with open(os.path.join(folder, METADATA_FILE)) as file:
        return json.load(file)


def load(name_or_path: str, verify_checksums: bool = True) -> keras.Model:
    """Loads a zoo model by name, or from a folder in the zoo format.

    Args:
        name_or_path: A name from :func:`list_models`, or a folder.
        verify_checksums: Check every file against ``SHA256SUMS`` first.

    Returns:
        The model, ready to ``predict`` (and to ``fit`` after ``compile``).

    Raises:
        ZooError: unknown name, or a missing, altered or unreadable file.
    """
    folder = _resolve(name_or_path)
    if verify_checksums:
        verify(folder)
    config_path = os.path.join(folder, CONFIG_FILE)
    try:
        with open(config_path) as file:
            config = json.load(file)
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ZooError(f"{config_path}: not a loadable model config ({type(error).__name__}: {error}).") from None
    weights_path = os.path.join(folder, WEIGHTS_FILE)
    try:
        model.load_weights(weights_path)
    except Exception as error:  # h5py and Keras raise many types for a bad file.
        raise ZooError(f"{weights_path}: weights do not fit the model ({type(error).__name__}: {error}).") from None
    return model


def _compress_weights(path: str) -> None:
    """Rewrites a Keras ``.weights.h5`` file with gzip-compressed datasets.

    Keras writes weights uncompressed; h5py decompresses transparently on
    load, so the file stays a plain Keras weights file. Sparse weights (a
    pruned factorized mask) shrink several-fold.
    """
    import h5py

    def copy(source, target):
        target.attrs.update(dict(source.attrs))
        for name, item in source.items():
            if isinstance(item, h5py.Group):
                copy(item, target.create_group(name))
            else:
                # Scalars and tiny arrays gain nothing from compression.
                packed = {"compression": "gzip", "compression_opts": 6, "shuffle": True} if item.size > 1024 else {}
                target.create_dataset(name, data=item[()], **packed).attrs.update(dict(item.attrs))

    temporary = path + ".tmp"
    with h5py.File(path, "r") as source, h5py.File(temporary, "w") as target:
        copy(source, target)
    os.replace(temporary, path)


def save(model: keras.Model, folder: str, card: dict, card_text: str) -> None:
    """Writes ``model`` as a zoo entry (config, weights, metadata, card, checksums).

    Args:
        model: A built Keras model.
        folder: Destination; created if needed.
        card: JSON-ready facts for ``metadata.json`` (data, citation, licence,
            input shape and units, training command, metrics...).
        card_text: The human-readable model card (Markdown).
    """
    os.makedirs(folder, exist_ok=True)

    def uncompiled(config):
        # Zoo models load uncompiled (users compile for their own fit), so neither
        # the compile settings nor the optimizer's state (for Adam, twice the
        # model's size) are stored.
        config.pop("compile_config", None)
        return config

    bare = clone(model, edit_config=uncompiled)
    with open(os.path.join(folder, CONFIG_FILE), "w") as file:
        json.dump(uncompiled(keras.saving.serialize_keras_object(bare)), file, indent=1)
    bare.save_weights(os.path.join(folder, WEIGHTS_FILE))
    _compress_weights(os.path.join(folder, WEIGHTS_FILE))
    with open(os.path.join(folder, METADATA_FILE), "w") as file:
        json.dump(card, file, indent=2)
    with open(os.path.join(folder, CARD_FILE), "w") as file:
        file.write(card_text)
    with open(os.path.join(folder, CHECKSUM_FILE), "w") as file:
        for name in _CHECKED_FILES:
            file.write(f"{sha256(os.path.join(folder, name))}  {name}\n")


def load_any(model: str) -> keras.Model:
    """Loads a ``.keras`` file, a zoo entry by name, or a zoo-format folder.

    Raises:
        FileNotFoundError: a ``.keras`` path that does not exist.
        ValueError: an unreadable file, or an unknown name (:class:`ZooError`).
    """
    if model.endswith(".keras") or os.path.isfile(model):
        if not os.path.isfile(model):
            raise FileNotFoundError(f"{model}: no such model file.")
        try:
            return keras.saving.load_model(model, safe_mode=True)
        except Exception as error:  # Keras raises many types for a corrupt archive.
            raise ValueError(f"{model}: not a readable Keras model ({type(error).__name__}: {error}).") from None
    return load(model)
