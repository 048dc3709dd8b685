"""Pretrained models: list them, load one in a line, or save your own in the same format.

A zoo entry (a *preset*) is a folder, laid out like a KerasHub preset::

    <name>/
      config.json         the model's Keras config (no code)
      model.weights.h5    its weights (HDF5 arrays, no pickle)
      metadata.json       the model card's facts: data, units, licence, command,
                          metrics, and the provenance save() records itself
      README.md           the model card, for people
      SHA256SUMS          sha256 of each file above

Shipped entries live in the ``keras_sysid_zoo`` package (the repository's
``zoo/`` folder) and are found with :mod:`importlib.resources`, so they work
from an installed wheel. Loading verifies the checksums of the files it reads
before reading them, deserialises in Keras safe mode and never unpickles.

Example:
    >>> import keras_sysid as ks
    >>> [entry["name"] for entry in ks.zoo.presets()]      # with each card's facts
    [...]
    >>> model = ks.zoo.load("mouse_v1_factorized")  # or a folder; ks.zoo.load_preset(cls, ...) also checks the class
    >>> model.predict(images).shape                        # images: (n, 36, 64, 1), 0..255
    >>> ks.zoo.save(model, "my_model", card={"description": "...", "licence": "..."})
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import importlib.resources
import json
import os
import platform

import keras

from keras_sysid.cloning import clone, with_dtype_policy
from keras_sysid.ensemble import Ensemble
from keras_sysid.models import SystemIdentificationModel

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
CARD_FILE = "README.md"
CHECKSUM_FILE = "SHA256SUMS"
_CHECKED_FILES = (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE, CARD_FILE)
_ZOO_PACKAGE = "keras_sysid_zoo"
# The key of metadata.json that save() fills in itself; every other key is the card's.
PROVENANCE_KEY = "provenance"


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
    name_or_path = os.fspath(name_or_path)
    if os.path.isdir(name_or_path):
        return name_or_path
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


def verify(folder: str, files=_CHECKED_FILES) -> None:
    """Checks an entry's files against its ``SHA256SUMS``.

    Args:
        folder: The entry's folder.
        files: The files to check (default: all four). The listing itself must
            hold a checksum for every file of the format in any case.

    Raises:
        ZooError: naming the file that is missing, altered or truncated, or
            the listing's line that is not ``<64 hex digits>  <file name>``.
    """
    listing = os.path.join(folder, CHECKSUM_FILE)
    if not os.path.isfile(listing):
        raise ZooError(f"{listing}: file is missing; cannot verify the model's files.")
    expected = _read_checksums(listing)
    for name in _CHECKED_FILES:
        if name not in expected:
            raise ZooError(f"{listing}: has no checksum for {name}.")
    for name in files:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise ZooError(f"{path}: file is missing.")
        if sha256(path) != expected[name]:
            raise ZooError(f"{path}: checksum mismatch; the file is altered or truncated.")


def _read_checksums(listing: str) -> dict[str, str]:
    """``{file name: lower-case hex sha256}`` from a ``SHA256SUMS`` listing (``sha256sum``'s format).

    Each non-blank line is 64 hex digits (of either case: hex is case-insensitive),
    then two spaces (or a space and ``*``, ``sha256sum --binary``'s mark), then the name.
    """
    expected = {}
    try:
        with open(listing, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ZooError(f"{listing}: not readable ({type(error).__name__}: {error}).") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        text = line.strip()
        digest, mark, name = text[:64], text[64:66], text[66:]
        if len(digest) < 64 or not set(digest) <= _HEX_DIGITS or mark not in ("  ", " *") or not name.strip():
            raise ZooError(f"{listing}: line {number} is not '<64 hex digits>  <file name>': {text!r}.")
        digest = digest.lower()
        if expected.get(name, digest) != digest:
            raise ZooError(f"{listing}: line {number} gives {name} a second, different checksum.")
        expected[name] = digest
    return expected


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _read_json(path: str):
    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, ValueError) as error:
        raise ZooError(f"{path}: not readable JSON ({type(error).__name__}: {error}).") from None


def metadata(name_or_path: str) -> dict:
    """The entry's ``metadata.json`` (after verifying checksums)."""
    folder = _resolve(name_or_path)
    verify(folder)
    return _read_json(os.path.join(folder, METADATA_FILE))


# -- listing -----------------------------------------------------------------

# Card facts that presets() reports besides name, description, size and metrics (None where a card lacks one).
_LISTED_FACTS = ("input", "output", "data", "licence", "citation", "trained_with", "evaluated_with")


def _preset_facts(name: str, folder: str) -> dict:
    verify(folder, (CONFIG_FILE, METADATA_FILE))
    metadata_path, config_path = os.path.join(folder, METADATA_FILE), os.path.join(folder, CONFIG_FILE)
    facts = _read_json(metadata_path)
    if not isinstance(facts, dict):
        raise ZooError(f"{metadata_path}: holds no facts (a JSON object is expected).")
    config = _read_json(config_path)
    config = config if isinstance(config, dict) else {}
    provenance = facts.get(PROVENANCE_KEY) if isinstance(facts.get(PROVENANCE_KEY), dict) else {}
    # Not every card states n_neurons and image_shape as facts (the synthetic
    # ones say them in words); the model's config holds them for every entry
    # (an ensemble's, in its members' configs).
    model_config = _model_config(config)
    readout = model_config.get("readout") if isinstance(model_config.get("readout"), dict) else {}
    readout_config = readout.get("config") if isinstance(readout.get("config"), dict) else {}
    sources = ((metadata_path, "", facts), (metadata_path, f"{PROVENANCE_KEY}.", provenance))
    n_neurons = _stated(sources + ((config_path, "readout's ", readout_config),), "n_neurons", _is_n_neurons,
                        "a positive integer")
    image_shape = _stated(sources + ((config_path, "", model_config),), "image_shape", _is_image_shape,
                          "[height, width] or [height, width, channels] of positive integers")
    image_shape = list(image_shape) + [1] if len(image_shape) == 2 else list(image_shape)
    return {
        "name": name,
        "description": facts.get("description"),
        "n_neurons": n_neurons,
        "image_shape": image_shape,
        **{key: facts.get(key) for key in _LISTED_FACTS},
        "metrics": facts.get("metrics", {}),
        "model_class": config.get("registered_name") or config.get("class_name"),
        "keras_sysid_version": provenance.get("keras_sysid_version"),
        "saved_at": provenance.get("saved_at"),
        "folder": folder,
    }


def _model_config(config: dict) -> dict:
    """The model's settings in a ``config.json``: its own, or an ensemble's first member's."""
    settings = config.get("config") if isinstance(config.get("config"), dict) else {}
    members = settings.get("members")
    if "image_shape" not in settings and isinstance(members, list) and members and isinstance(members[0], dict):
        member = members[0].get("config")
        return member if isinstance(member, dict) else {}
    return settings


def _is_n_neurons(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_image_shape(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) in (2, 3) and all(_is_n_neurons(size) for size in value)


def _stated(sources, key: str, valid, wanted: str):
    """The first of ``sources`` (``(file, prefix, facts)``) that states ``key``, checked; refused, naming file and key."""
    for path, prefix, facts in sources:
        if key in facts:
            if not valid(facts[key]):
                raise ZooError(f"{path}: {prefix}{key} must be {wanted}; got {facts[key]!r}.")
            return facts[key]
    raise ZooError(f"{sources[0][0]}: states no {key}, nor does {os.path.basename(sources[-1][0])}; "
                   f"a card must give the model's {key} ({wanted}).")


def preset(name: str) -> dict:
    """The card's facts of one shipped entry, as :func:`presets` gives them.

    Raises:
        ZooError: an unknown name; the entry's config or metadata is missing
            or altered; or neither states a valid ``n_neurons`` or
            ``image_shape`` (the message names the file and the fact).
    """
    if name not in list_models():
        raise ZooError(f"no zoo model {name!r}; the zoo has {', '.join(list_models()) or 'none'}.")
    return _preset_facts(name, _resolve(name))


def presets() -> list[dict]:
    """Every shipped entry with its card's facts, for choosing a model.

    Returns:
        One dict per entry, sorted by name: ``name``, ``description``,
        ``n_neurons``, ``image_shape`` (H, W, C), ``input``, ``output``,
        ``data``, ``licence``, ``citation``, ``trained_with``,
        ``evaluated_with``, ``metrics`` (the card's test metrics),
        ``model_class``, ``keras_sysid_version`` and ``saved_at`` (from the
        entry's provenance; ``None`` for entries saved before it was
        recorded) and ``folder``. A fact a card does not state is ``None``
        (``n_neurons`` and ``image_shape`` are always given: from the card,
        else its provenance, else the model's config).

    Raises:
        ZooError: a shipped entry's config or metadata is missing or altered,
            or its ``n_neurons`` or ``image_shape`` is missing or not one
            (:func:`preset` gives one entry's facts, for listing the others).

    Example:
        >>> for entry in ks.zoo.presets():
        ...     print(entry["name"], entry["n_neurons"], entry["image_shape"], entry["metrics"])
    """
    return [_preset_facts(name, _resolve(name)) for name in list_models()]


list_presets = presets


# -- loading -----------------------------------------------------------------


def _check_class(config, cls, config_path: str) -> None:
    """Refuses a config of a class that is not ``cls`` or a subclass, before building it."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ZooError(f"{config_path}: not a loadable model config (no class_name).")
    registered = config.get("registered_name")
    stored = keras.saving.get_registered_object(registered) if registered else None
    if isinstance(stored, type) and not issubclass(stored, cls):
        wanted = " or ".join(c.__name__ for c in (cls if isinstance(cls, tuple) else (cls,)))
        raise ZooError(
            f"{config_path}: holds a {stored.__module__}.{stored.__name__}, which is not a {wanted} "
            "(nor a subclass); keras_sysid.zoo.load_preset(keras.Model, path) loads whatever class an entry holds."
        )


def load_preset(
    cls: type, name_or_path: str, load_weights: bool = True, dtype=None, verify_checksums: bool = True
) -> keras.Model:
    """Loads an entry as a model of class ``cls``.

    Args:
        cls: The class the entry must hold (``cls`` or a subclass); pass
            ``keras.Model`` to load any model class.
        name_or_path: A name from :func:`list_models`, or a folder in the zoo format.
        load_weights: Load the stored weights; ``False`` gives the architecture
            with newly initialised weights (the weights file is then neither
            read nor verified; every other file is).
        dtype: A dtype policy (a name such as ``"float32"`` or
            ``"mixed_bfloat16"``, or a ``keras.DTypePolicy``) for every layer
            of the loaded model; ``None`` keeps the stored ones.
        verify_checksums: Check the entry's files against ``SHA256SUMS``
            first. Leave it on; off only to inspect a damaged entry.

    Returns:
        The model, uncompiled.

    Raises:
        ZooError: unknown name; a missing, altered or unreadable file (named);
            a config of another class, or naming code not registered with Keras.
        ValueError: ``dtype`` is not a dtype policy.
    """
    folder = _resolve(name_or_path)
    if verify_checksums:
        verify(folder, _CHECKED_FILES if load_weights else tuple(n for n in _CHECKED_FILES if n != WEIGHTS_FILE))
    config_path = os.path.join(folder, CONFIG_FILE)
    config = _read_json(config_path)
    _check_class(config, cls, config_path)
    policy = None
    if dtype is not None:
        policy = keras.dtype_policies.get(dtype)
        config = with_dtype_policy(config, policy.name)
    previous = keras.config.dtype_policy()
    try:
        if policy is not None:
            # Layers whose config does not store a dtype (the model itself, and
            # sublayers made in a layer's __init__) take the global policy.
            keras.config.set_dtype_policy(policy)
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise ZooError(f"{config_path}: not a loadable model config ({type(error).__name__}: {error}).") from None
    finally:
        keras.config.set_dtype_policy(previous)
    if not isinstance(model, cls):
        raise ZooError(
            f"{config_path}: holds a {type(model).__name__}, which is not a "
            f"{' or '.join(c.__name__ for c in (cls if isinstance(cls, tuple) else (cls,)))} (nor a subclass)."
        )
    if load_weights:
        weights_path = os.path.join(folder, WEIGHTS_FILE)
        try:
            model.load_weights(weights_path)
        except Exception as error:  # h5py and Keras raise many types for a bad file.
            raise ZooError(f"{weights_path}: weights do not fit the model ({type(error).__name__}: {error}).") from None
    return model


def load(name_or_path: str, verify_checksums: bool = True, load_weights: bool = True, dtype=None) -> keras.Model:
    """Loads a zoo model by name, or from a folder in the zoo format.

    The same as ``load_preset(SystemIdentificationModel, name_or_path, load_weights, dtype)``,
    but an entry may also hold an :class:`~keras_sysid.ensemble.Ensemble`.

    Args:
        name_or_path: A name from :func:`list_models`, or a folder.
        verify_checksums: Check the files read against ``SHA256SUMS`` first.
        load_weights: ``False``: the architecture with newly initialised weights.
        dtype: A dtype policy for the loaded model (``None``: as stored).

    Returns:
        The :class:`~keras_sysid.models.SystemIdentificationModel` (or
        ``Ensemble``), ready to ``predict`` (and to ``fit`` after ``compile``).

    Raises:
        ZooError: unknown name, or a missing, altered or unreadable file, or
            a model that is neither.
    """
    return load_preset((SystemIdentificationModel, Ensemble), name_or_path, load_weights, dtype, verify_checksums)


# -- saving ------------------------------------------------------------------


# -- model cards -------------------------------------------------------------


# The settings that define a plain Keras layer inside a composite part (a simulator's Sequential core).
_KERAS_LAYER_SETTINGS = ("filters", "kernel_size", "strides", "padding", "activation", "negative_slope", "units", "pool_size",
                         "rate")


def _layer_settings(layer) -> dict:
    """A layer's registered type and the settings that define it (not its name, dtype or initialisers)."""
    if isinstance(layer, keras.Sequential):
        def summary(sublayer):
            config = sublayer.get_config()
            settings = ", ".join(f"{key}={config[key]}" for key in _KERAS_LAYER_SETTINGS if key in config)
            return f"{type(sublayer).__name__}({settings})"

        return {"type": "Sequential", "layers": [summary(sublayer) for sublayer in layer.layers]}
    config = layer.get_config()
    settings = {key: value for key, value in config.items()
                if key not in ("name", "trainable", "dtype") and not key.endswith("_initializer")}
    return {"type": getattr(layer, "type_name", type(layer).__name__), **settings}


def architecture(model: keras.Model) -> dict | None:
    """The model's parts and their settings, JSON-ready, as a card states them.

    Returns:
        For a :class:`~keras_sysid.models.SystemIdentificationModel`: ``core``
        and ``readout`` (type and settings), ``output`` (nonlinearity times a
        per-neuron scale), ``input_standardisation`` (the image mean and std
        the model subtracts and divides by), the optional ``behavior_channels``,
        ``shifter`` and ``modulator``, and ``parameters``; for an
        :class:`~keras_sysid.ensemble.Ensemble`, ``ensemble_of`` and the
        distinct ``members``; ``None`` for any other model.
    """
    if isinstance(model, Ensemble):
        members = []
        for member in model.members:
            facts = architecture(member)
            if facts not in members:
                members.append(facts)
        return {"ensemble_of": len(model.members), "combined_by": "mean of the members' predictions",
                "members": members, "parameters": int(model.count_params())}
    if not isinstance(model, SystemIdentificationModel):
        return None
    facts = {
        "core": _layer_settings(model.core),
        "readout": _layer_settings(model.readout),
        "output": f"{model.nonlinearity} of the readout, times a per-neuron response scale",
        "input_standardisation": {"image_mean": model.image_mean, "image_std": model.image_std},
    }
    if model.behavior_channels:
        facts["behavior_channels"] = "the standardised behaviour variables as constant extra core input channels"
    for name in ("shifter", "modulator"):
        part = getattr(model, name)
        if part is not None:
            facts[name] = _layer_settings(part)
    facts["parameters"] = int(model.count_params())
    return facts


def _bullets(values) -> list[str]:
    if isinstance(values, dict):
        return [f"- **{key.replace('_', ' ')}**: {json.dumps(value) if isinstance(value, (dict, list)) else value}"
                for key, value in values.items()]
    if isinstance(values, (list, tuple)):
        return [f"- {value}" for value in values]
    return [str(values)]


# Card sections: heading -> the facts they hold, in order. Facts not named here
# are listed under "Other facts".
_CARD_SECTIONS = {
    "Inputs and outputs": ("input", "output", "input_scale", "neuron_ids"),
    "Data and licence": ("data", "citation", "licence"),
    "Training": ("trained_with", "training", "mask_pruned_below", "mask_entries_kept"),
    "Evaluation": ("evaluated_with",),
}
_NOT_LISTED = ("name", "description", "metrics", "architecture", "intended_use", "limitations", PROVENANCE_KEY,
               "card_checked_with", "input_names", "saved_on")


def model_card(facts: dict) -> str:
    """A model card (Markdown) from an entry's facts.

    Sections: what it predicts; inputs and outputs (units, scale, neuron
    order); architecture; data and licence; training (command, epochs,
    stopping rule); intended use; limitations; evaluation and metrics;
    provenance (versions, date); how to load it.
    """
    name = facts.get("name", "model")
    lines = [f"# {name}", "", facts.get("description", "A keras_sysid model."), ""]
    named = set(_NOT_LISTED)
    for heading, keys in _CARD_SECTIONS.items():
        present = [key for key in keys if key in facts]
        named.update(keys)
        if heading == "Evaluation":
            continue  # after intended use and limitations, with the metrics
        if present:
            lines += [f"## {heading}", ""]
            for key in present:
                value = facts[key]
                if isinstance(value, dict):
                    lines += [f"- **{key.replace('_', ' ')}**:", *("  " + line for line in _bullets(value))]
                else:
                    lines.append(f"- **{key.replace('_', ' ')}**: {value}")
            lines.append("")
        if heading == "Inputs and outputs" and isinstance(facts.get("architecture"), dict):
            lines += ["## Architecture", "", *_bullets(facts["architecture"]), ""]
    for key, heading in (("intended_use", "Intended use"), ("limitations", "Known limitations")):
        if key in facts:
            lines += [f"## {heading}", "", *_bullets(facts[key]), ""]
    lines += ["## Evaluation", ""]
    if "evaluated_with" in facts:
        lines += [f"- **evaluated with**: {facts['evaluated_with']}", ""]
    lines += ["```json", json.dumps(facts.get("metrics", {}), indent=2), "```", ""]
    others = {key: value for key, value in facts.items() if key not in named}
    if others:
        lines += ["## Other facts", "", *_bullets(others), ""]
    lines += ["## Provenance", ""]
    if isinstance(facts.get(PROVENANCE_KEY), dict):
        lines += _bullets(facts[PROVENANCE_KEY])
    else:
        saved = f"saved on {facts['saved_on']}; " if "saved_on" in facts else ""
        lines.append(f"- Weights {saved}the versions they were saved with were not recorded (the entry predates "
                     "that record).")
    if isinstance(facts.get("card_checked_with"), dict):
        lines += ["", "This card was rewritten, and the entry's metrics re-measured, with:", "",
                  *_bullets(facts["card_checked_with"])]
    lines += ["", "## Loading", "", "```python", "import keras_sysid as ks   # registers the classes the entry uses",
              f'model = ks.zoo.load("{name}")   # or the path of this folder', "```", ""]
    lines += ["`keras.saving.load_model` on a `.keras` file of such a model also needs `import keras_sysid` first "
              "(or use `ks.load_model`): Keras finds custom classes only once their package is imported.", ""]
    if len(facts.get("input_names", ())) > 1:
        lines += [f"It takes a dict with keys {facts['input_names']} (one row per trial), e.g. "
                  f"`model.predict(data.model_inputs(\"test\", model.input_names))` for a `keras_sysid.data.Recording`.", ""]
    return "\n".join(lines)


def package_version(name: str) -> str | None:
    """The installed version of a distribution (``"tensorflow"``), or ``None`` where it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def provenance(model: keras.Model) -> dict:
    """What :func:`save` records about how ``model`` was saved (under ``metadata.json``'s ``provenance``)."""
    import keras_sysid

    facts = {
        "keras_sysid_version": keras_sysid.__version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
    }
    for package in ("tensorflow", "jax", "jaxlib", "torch"):
        version = package_version(package)
        if version is not None:
            facts[f"{package}_version"] = version
    facts.update({"numpy_version": package_version("numpy"), "python_version": platform.python_version()})
    facts["model_class"] = keras.saving.get_registered_name(type(model))
    facts["parameter_count"] = int(model.count_params())
    facts["dtype_policy"] = model.dtype_policy.name
    if isinstance(model, SystemIdentificationModel):
        facts["n_neurons"] = model.n_neurons
        facts["image_shape"] = list(model.image_shape)
    facts["saved_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return facts


def _card_with_provenance(model: keras.Model, card: dict | None, folder: str) -> dict:
    card = dict(card or {})
    try:
        json.dumps(card)
    except (TypeError, ValueError) as error:
        raise ValueError(f"card must be JSON-ready facts: {error}.") from None
    recorded = provenance(model)
    # A card that states the model's size must state the model's actual size.
    for key in ("n_neurons", "image_shape"):
        if key in card and key in recorded:
            stated = list(card[key]) if isinstance(card[key], (list, tuple)) else card[key]
            if key == "image_shape" and isinstance(stated, list) and len(stated) == 2:
                stated = stated + [1]
            if stated != recorded[key]:
                raise ValueError(f"card says {key}={card[key]!r} but the model has {recorded[key]!r}.")
    previous = card.get(PROVENANCE_KEY, {})
    if not isinstance(previous, dict):
        raise ValueError(f"card[{PROVENANCE_KEY!r}] must be a dict (save() adds its own keys to it); got {previous!r}.")
    card.setdefault("name", os.path.basename(os.path.normpath(folder)))
    if "architecture" not in card and architecture(model) is not None:
        card["architecture"] = architecture(model)
    # Provenance describes this save: its keys replace stale ones of the same name.
    card[PROVENANCE_KEY] = {**previous, **recorded}
    return card


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


def _write_card(folder: str, facts: dict, text: str) -> None:
    """Writes ``metadata.json`` and ``README.md``, then ``SHA256SUMS`` of every file of the entry (written last)."""
    with open(os.path.join(folder, METADATA_FILE), "w") as file:
        json.dump(facts, file, indent=2)
    with open(os.path.join(folder, CARD_FILE), "w") as file:
        file.write(text)
    with open(os.path.join(folder, CHECKSUM_FILE), "w") as file:
        for name in _CHECKED_FILES:
            file.write(f"{sha256(os.path.join(folder, name))}  {name}\n")


def save(model: keras.Model, folder: str, card: dict | None = None, card_text=None) -> dict:
    """Writes ``model`` as a zoo entry (config, weights, metadata, card, checksums).

    ``metadata.json`` holds ``card`` as given plus a ``provenance`` key that
    this function fills in (see :func:`provenance`: keras_sysid, Keras,
    backend and framework versions, parameter count, ``n_neurons``,
    ``image_shape``, dtype policy, UTC date).

    Args:
        model: A built Keras model.
        folder: Destination; created if needed. Files of the format already
            there are replaced.
        card: JSON-ready facts for ``metadata.json`` (name, description, data,
            citation, licence, input shape and units, training command,
            metrics...). Kept as given; ``name`` defaults to the folder's name.
        card_text: The human-readable model card (Markdown); or a function
            of the facts as written (``card`` with its provenance) returning
            it; ``None`` writes one from the facts (:func:`model_card`).

    Returns:
        The facts written to ``metadata.json``.

    Raises:
        ValueError: ``card`` is not JSON-ready, or states an ``n_neurons`` or
            ``image_shape`` other than the model's.
    """
    facts = _card_with_provenance(model, card, folder)
    text = model_card(facts) if card_text is None else card_text(facts) if callable(card_text) else card_text
    os.makedirs(folder, exist_ok=True)
    # No stale listing may vouch for a half-written entry.
    if os.path.exists(os.path.join(folder, CHECKSUM_FILE)):
        os.remove(os.path.join(folder, CHECKSUM_FILE))

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
    _write_card(folder, facts, text)
    return facts


def rewrite_card(folder: str, facts: dict, model: keras.Model | None = None) -> dict:
    """Rewrites an entry's ``metadata.json`` and ``README.md``, leaving its model files as they are.

    For cards that gain facts after their entry was made: the config and
    weights are verified and kept byte for byte (no new weights in the
    repository), the checksums are rewritten. The card records under
    ``card_checked_with`` the versions and date of this rewrite; the entry's
    own ``provenance`` (or its absence) is kept.

    Args:
        folder: The entry's folder.
        facts: Facts to add or replace (``provenance`` cannot be given).
        model: The loaded entry, to state its architecture; loaded if ``None``.

    Returns:
        The facts written.
    """
    if PROVENANCE_KEY in facts:
        raise ValueError(f"rewrite_card keeps the entry's own {PROVENANCE_KEY!r}; do not pass one.")
    verify(folder)
    stored = _read_json(os.path.join(folder, METADATA_FILE))
    model = model if model is not None else load(folder)
    checked = {key: value for key, value in provenance(model).items()
               if key.endswith("_version") or key in ("backend", "saved_at")}
    checked["checked_at"] = checked.pop("saved_at")
    updated = {**stored, **facts, "card_checked_with": checked}
    if "architecture" not in facts and architecture(model) is not None:
        updated["architecture"] = architecture(model)
    _write_card(folder, updated, model_card(updated))
    return updated


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
