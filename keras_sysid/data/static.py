"""Reader of the ``static*-preproc0`` file-tree layout of mouse visual cortex data.

Lurz et al. (2021) and the SENSORIUM benchmarks publish each scan as a tree of
``.npy`` files, one per trial and modality, plus per-trial and per-neuron
metadata::

    static<animal>-<session>-<scan>-preproc0/
      data/images/{i}.npy         (1, H, W)   stimulus, 0..255
      data/responses/{i}.npy      (N,)        one value per neuron
      data/behavior/{i}.npy       (3,)        optional
      data/pupil_center/{i}.npy   (2,)        optional
      meta/trials/tiers.npy       'train' | 'validation' | 'test' (| 'final_test')
      meta/trials/frame_image_id.npy
      meta/neurons/*.npy          unit ids, area, layer, cortical coordinates
      meta/statistics/...         (read but not used to normalise: see below)

:func:`load_static` reads such a tree from the zip file or from an extracted
folder into memory (seconds for ~5000 trials), validating as it goes: every
problem raises a :class:`StaticDataError` that names the file.

Normalisation uses statistics of the *train tier only*, computed here: the
published ``meta/statistics`` cover all trials, test trials included.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import zipfile

import numpy as np

from keras_sysid import normalization

KNOWN_TIERS = ("train", "validation", "test", "final_test")
_TRIAL_FOLDERS = ("images", "responses", "behavior", "pupil_center")
_REQUIRED_FOLDERS = ("images", "responses")
_TRIAL_FILE = re.compile(r"^(\d+)\.npy$")


class StaticDataError(ValueError):
    """A ``static*-preproc0`` tree is missing a file, or a file is malformed."""


class _Tree:
    """Read-only access to the files of a data set, zipped or extracted."""

    def __init__(self, path: str):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise StaticDataError(f"{self.path}: no such file or folder.")
        self._zip = None
        if os.path.isdir(self.path):
            names = []
            for folder, _, files in os.walk(self.path):
                relative = os.path.relpath(folder, self.path)
                names.extend(os.path.normpath(os.path.join(relative, f)).replace(os.sep, "/") for f in files)
        else:
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as error:
                raise StaticDataError(f"{self.path}: not a readable zip file or folder ({error}).") from None
            names = [name for name in self._zip.namelist() if not name.endswith("/")]
        self.root = self._find_root(names)
        prefix = self.root + "/" if self.root else ""
        self.names = {name[len(prefix):] for name in names if name.startswith(prefix)}

    def _find_root(self, names: list[str]) -> str:
        # The tree may sit at the top of the zip/folder or one folder down.
        roots = {name[: -len("meta/trials/tiers.npy")].rstrip("/") for name in names if name.endswith("meta/trials/tiers.npy")}
        roots = {root for root in roots if root.count("/") <= 1 and not root.startswith("__MACOSX")}
        if not roots:
            raise StaticDataError(
                f"{self.path}: meta/trials/tiers.npy is missing; this is not a static*-preproc0 data set."
            )
        if len(roots) > 1:
            raise StaticDataError(f"{self.path}: holds several data sets ({sorted(roots)}); give one of them.")
        return roots.pop()

    def describe(self, name: str) -> str:
        return os.path.join(self.path, self.root, name) if self.root or self._zip is None else f"{self.path}:{name}"

    def load(self, name: str) -> np.ndarray:
        if name not in self.names:
            raise StaticDataError(f"{self.describe(name)}: file is missing.")
        full = f"{self.root}/{name}" if self.root else name
        try:
            if self._zip is not None:
                raw = self._zip.read(full)
            else:
                with open(os.path.join(self.path, full), "rb") as file:
                    raw = file.read()
        except (OSError, EOFError, zipfile.BadZipFile) as error:
            raise StaticDataError(f"{self.describe(name)}: unreadable ({error}).") from None
        if not raw.startswith(b"\x93NUMPY"):
            raise StaticDataError(f"{self.describe(name)}: unreadable, not a .npy file.")
        try:
            return np.load(io.BytesIO(raw), allow_pickle=False)
        except ValueError as error:
            if "allow_pickle" in str(error):
                raise StaticDataError(
                    f"{self.describe(name)}: holds Python objects, which would need unpickling; refusing to load it."
                ) from None
            raise StaticDataError(f"{self.describe(name)}: unreadable .npy file ({error}).") from None
        except (OSError, EOFError) as error:
            raise StaticDataError(f"{self.describe(name)}: unreadable, truncated .npy file ({error}).") from None

    def trial_files(self, folder: str) -> list[int]:
        prefix = f"data/{folder}/"
        indices = []
        for name in self.names:
            if name.startswith(prefix):
                match = _TRIAL_FILE.match(name[len(prefix):])
                if match:
                    indices.append(int(match.group(1)))
        return sorted(indices)

    def close(self):
        if self._zip is not None:
            self._zip.close()


@dataclasses.dataclass
class StaticData:
    """One scan's trials and metadata, in memory.

    Attributes:
        images: ``(trials, H, W, 1)`` float32 images, in the data's units (0..255).
        responses: ``(trials, N)`` float32 responses, in the data's units.
        tiers: ``(trials,)`` tier name of each trial.
        image_ids: ``(trials,)`` int64 image id; repeats of an image share it.
        behavior: ``(trials, 3)`` or ``None`` when the tree has no behaviour.
        pupil_center: ``(trials, 2)`` or ``None``.
        neurons: per-neuron metadata, e.g. ``unit_ids (N,)``,
            ``cell_motor_coordinates (N, 3)``.
        trials: other per-trial metadata (``meta/trials/*``), ``(trials, ...)``.
        name: the data set's name (its root folder, or the file name).

    Treat the arrays as read-only: :meth:`fingerprint` is computed once and kept.
    """

    images: np.ndarray
    responses: np.ndarray
    tiers: np.ndarray
    image_ids: np.ndarray
    behavior: np.ndarray | None = None
    pupil_center: np.ndarray | None = None
    neurons: dict = dataclasses.field(default_factory=dict)
    trials: dict = dataclasses.field(default_factory=dict)
    name: str = ""
    _fingerprint: str | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the data's content, as loaded.

        Covers images, responses, tiers, image ids, behaviour, pupil centre and
        every per-trial and per-neuron metadata array (each with its key, dtype
        and shape), but not :attr:`name` or where the data was read from: the
        same tree gives the same fingerprint from its zip or its extracted
        folder, under any file name, and any changed value changes it. It keys
        finished and resumable fits (:mod:`keras_sysid.experiments.comparison`).
        Computed on the first call (about 0.2 s for the 5494-trial mouse V1
        set on 2 CPU cores) and cached, so change no array in place after calling it.
        """
        if self._fingerprint is None:
            digest = hashlib.sha256(b"keras_sysid.StaticData/1\n")
            fields = [("images", self.images), ("responses", self.responses), ("tiers", self.tiers),
                      ("image_ids", self.image_ids), ("behavior", self.behavior), ("pupil_center", self.pupil_center)]
            fields += [(f"neurons/{key}", self.neurons[key]) for key in sorted(self.neurons)]
            fields += [(f"trials/{key}", self.trials[key]) for key in sorted(self.trials)]
            for key, array in fields:
                _hash_array(digest, key, array)
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    @property
    def n_neurons(self) -> int:
        return int(self.responses.shape[1])

    @property
    def n_trials(self) -> int:
        return int(self.responses.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.images.shape[1:])

    def indices(self, tier: str) -> np.ndarray:
        """Trial indices of ``tier``; raises if the tier is unknown or empty."""
        if tier not in KNOWN_TIERS:
            raise ValueError(f"Unknown tier {tier!r}; choose one of {KNOWN_TIERS}.")
        selected = np.flatnonzero(self.tiers == tier)
        if selected.size == 0:
            present = sorted(set(self.tiers.tolist()))
            raise ValueError(f"{self.name}: has no {tier!r} trials (tiers present: {present}).")
        return selected

    def tier(self, tier: str) -> tuple[np.ndarray, np.ndarray]:
        """``(images, responses)`` of one tier."""
        selected = self.indices(tier)
        return self.images[selected], self.responses[selected]

    def model_inputs(self, tier: str, names=("images",)):
        """A tier's model input: its images, or a dict of the named per-trial arrays.

        Args:
            tier: A tier name.
            names: What the model takes (``model.input_names``): ``("images",)``
                gives the ``(n, H, W, 1)`` images; more names give a dict, e.g.
                ``{"images", "behavior" (n, 3), "pupil_center" (n, 2)}``.

        Raises:
            StaticDataError: the data set lacks a requested variable (e.g. no
                ``data/behavior/`` files); the message names it.
        """
        names = tuple(names)
        selected = self.indices(tier)
        if names == ("images",):
            return self.images[selected]
        inputs = {}
        for name in names:
            if name == "images":
                inputs[name] = self.images[selected]
            elif name in ("behavior", "pupil_center"):
                values = getattr(self, name)
                if values is None:
                    raise StaticDataError(
                        f"{self.name}: has no {name} (no data/{name}/ files), but the model takes {list(names)}. "
                        f"Use a data set with data/{name}/, or an image-only model."
                    )
                inputs[name] = values[selected]
            else:
                raise ValueError(f"Unknown model input {name!r}; a static*-preproc0 tree has images, behavior, pupil_center.")
        return inputs

    def image_statistics(self, tier: str = "train") -> tuple[float, float]:
        """Mean and standard deviation of all pixels of ``tier``'s images."""
        return normalization.image_statistics(self.images[self.indices(tier)])

    def response_scale(self, tier: str = "train") -> np.ndarray:
        """Per-neuron scale for training, ``(N,)``: the response std over ``tier``
        (:func:`keras_sysid.normalization.response_scale`)."""
        return normalization.response_scale(self.responses[self.indices(tier)])

    def repeat_groups(self, tier: str = "test") -> list[np.ndarray]:
        """Trial indices of ``tier`` grouped by image id, one array per image."""
        selected = self.indices(tier)
        return [selected[group] for group in self.repeat_positions(tier)]

    def repeat_positions(self, tier: str = "test") -> list[np.ndarray]:
        """:meth:`repeat_groups` as positions into ``tier``'s trials (rows of ``tier(tier)``'s arrays)."""
        ids = self.image_ids[self.indices(tier)]
        order = np.argsort(ids, kind="stable")
        _, starts = np.unique(ids[order], return_index=True)
        return np.split(order, starts[1:])

    def dataset(
        self,
        tier: str,
        batch_size: int = 64,
        shuffle: bool | None = None,
        seed: int = 0,
        response_scale: np.ndarray | None = None,
        standardize_images: tuple[float, float] | None = None,
        cache: bool = True,
        drop_remainder: bool = False,
        inputs=("images",),
    ):
        """A ``tf.data`` pipeline of ``(images, responses)`` batches of one tier.

        Args:
            tier: ``"train"``, ``"validation"``, ``"test"`` or ``"final_test"``.
            batch_size: Trials per batch.
            shuffle: Reshuffle every epoch (default: only for ``"train"``).
            seed: Shuffle seed.
            response_scale: ``(N,)``; responses are divided by it (see
                :meth:`response_scale`). ``None`` keeps the data's units.
            standardize_images: ``(mean, std)``; images become
                ``(images - mean) / std``. ``None`` (default) keeps them raw,
                because models built by :mod:`keras_sysid` standardise inside.
            cache: Cache the pipeline after normalising.
            drop_remainder: Drop the last, smaller batch.
            inputs: The model's ``input_names``; more than ``("images",)``
                makes each batch's input a dict (see :meth:`model_inputs`).

        Returns:
            ``tf.data.Dataset`` of ``((b, H, W, 1) float32, (b, N) float32)``,
            or ``(dict, (b, N))`` for several inputs.
        """
        import tensorflow as tf  # TensorFlow stays at this edge of the module.

        selected = self.indices(tier)
        model_inputs = self.model_inputs(tier, inputs)
        dataset = tf.data.Dataset.from_tensor_slices((model_inputs, self.responses[selected]))
        scale = self._checked_scale(response_scale)
        if scale is not None or standardize_images is not None:
            mean, std = standardize_images if standardize_images is not None else (0.0, 1.0)

            def normalise(images, responses):
                if standardize_images is not None:
                    if isinstance(images, dict):
                        images = {**images, "images": (images["images"] - mean) / std}
                    else:
                        images = (images - mean) / std
                if scale is not None:
                    responses = responses / scale
                return images, responses

            dataset = dataset.map(normalise, num_parallel_calls=tf.data.AUTOTUNE)
        if cache:
            dataset = dataset.cache()
        if (tier == "train") if shuffle is None else shuffle:
            dataset = dataset.shuffle(len(selected), seed=seed, reshuffle_each_iteration=True)
        return dataset.batch(int(batch_size), drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


    def epoch_stream(self, tier: str = "train", batch_size: int = 64, seed: int = 0, response_scale=None,
                     inputs=("images",)):
        """A tier's shuffled batches as an :class:`~keras_sysid.data.pipeline.EpochStream`
        (raw images, or the dict of ``inputs`` as :meth:`model_inputs`;
        responses divided by ``response_scale`` when given), for
        :func:`~keras_sysid.training.fit_with_schedule`: exact resume and distribution.
        """
        from keras_sysid.data.pipeline import EpochStream  # TensorFlow stays at this edge of the module.

        images, responses = self.model_inputs(tier, inputs), self.responses[self.indices(tier)]
        scale = self._checked_scale(response_scale)
        if scale is not None:
            responses = responses / scale
        return EpochStream(images, responses, batch_size=batch_size, seed=seed)


    def _checked_scale(self, response_scale) -> np.ndarray | None:
        """``response_scale`` as float32 ``(N,)``, or ``None``; a wrong shape raises."""
        if response_scale is None:
            return None
        scale = np.asarray(response_scale, "float32")
        if scale.shape != (self.n_neurons,):
            raise ValueError(f"response_scale must have shape ({self.n_neurons},); got {scale.shape}.")
        return scale


def _hash_array(digest, key: str, array) -> None:
    """Feeds ``key`` and ``array`` (dtype, shape, values) into ``digest``, unambiguously."""
    if array is None:
        digest.update(json.dumps([key, None]).encode() + b"\n")
        return
    array = np.asarray(array)
    if array.dtype.kind in "US":
        # Text by value: the fixed width numpy picked ("<U10") is not content.
        payload = json.dumps(array.astype(str).tolist()).encode("utf-8")
        dtype = "str"
    else:
        array = np.ascontiguousarray(array)
        payload = memoryview(array).cast("B") if array.size else b""
        dtype = array.dtype.str
    digest.update(json.dumps([key, dtype, list(array.shape), len(payload)]).encode() + b"\n")
    digest.update(payload)


def _check_finite(array: np.ndarray, what: str) -> None:
    if not np.issubdtype(array.dtype, np.number):
        raise StaticDataError(f"{what}: holds {array.dtype} values; expected numbers.")
    bad = ~np.isfinite(array)
    if bad.any():
        trial = int(np.argwhere(bad.reshape(len(array), -1).any(axis=1))[0, 0])
        raise StaticDataError(f"{what}: NaN or inf in trial {trial} (file {trial}.npy).")


def _stack_trials(tree: _Tree, folder: str, n_trials: int) -> np.ndarray:
    indices = tree.trial_files(folder)
    if indices != list(range(n_trials)):
        missing = sorted(set(range(n_trials)) - set(indices))
        extra = sorted(set(indices) - set(range(n_trials)))
        problem = f"{len(missing)} missing (first: {missing[0]}.npy)" if missing else f"{len(extra)} unexpected (first: {extra[0]}.npy)"
        raise StaticDataError(
            f"{tree.describe('data/' + folder)}: has {len(indices)} trial files but meta/trials/tiers.npy "
            f"lists {n_trials} trials; {problem}."
        )
    first = tree.load(f"data/{folder}/0.npy")
    stacked = np.empty((n_trials,) + first.shape, dtype="float32")
    for index in range(n_trials):
        name = f"data/{folder}/{index}.npy"
        array = first if index == 0 else tree.load(name)
        if array.shape != first.shape:
            raise StaticDataError(
                f"{tree.describe(name)}: has shape {array.shape}, but data/{folder}/0.npy has {first.shape}."
            )
        if not np.issubdtype(array.dtype, np.number):
            raise StaticDataError(f"{tree.describe(name)}: holds {array.dtype} values; expected numbers.")
        stacked[index] = array
    _check_finite(stacked, tree.describe(f"data/{folder}"))
    return stacked


def load_static(path, tiers=None) -> StaticData:
    """Reads a ``static*-preproc0`` data set from its zip file or extracted folder.

    Args:
        path: The ``.zip`` as published, or a folder: the data set's own root
            (holding ``data/`` and ``meta/``) or the folder just above it.
        tiers: Keep only trials of these tiers (e.g. ``["test"]``); default all.

    Returns:
        A :class:`StaticData` with ``images (trials, H, W, 1)`` and
        ``responses (trials, N)``, both float32 in the data's units.

    Raises:
        StaticDataError: a missing or unreadable file, trial counts that
            disagree between folders, inconsistent shapes, unknown tier names
            or NaN/inf; the message names the file.

    Example:
        >>> data = load_static("static20457-5-9-preproc0.zip")
        >>> images, responses = data.tier("train")
    """
    tree = _Tree(path)
    try:
        tier_names = tree.load("meta/trials/tiers.npy")
        if tier_names.ndim != 1 or tier_names.dtype.kind not in "US":
            raise StaticDataError(
                f"{tree.describe('meta/trials/tiers.npy')}: expected a 1-D array of tier names; "
                f"got {tier_names.dtype} of shape {tier_names.shape}."
            )
        tier_names = tier_names.astype(str)
        unknown = sorted(set(tier_names.tolist()) - set(KNOWN_TIERS))
        if unknown:
            raise StaticDataError(
                f"{tree.describe('meta/trials/tiers.npy')}: unknown tier names {unknown}; expected some of {KNOWN_TIERS}."
            )
        n_trials = len(tier_names)
        if n_trials == 0:
            raise StaticDataError(f"{tree.describe('meta/trials/tiers.npy')}: lists no trials.")

        trials = {}
        for name in sorted(n for n in tree.names if n.startswith("meta/trials/") and n.endswith(".npy")):
            key = name[len("meta/trials/"):-4]
            array = tree.load(name)
            if array.ndim == 0 or len(array) != n_trials:
                raise StaticDataError(
                    f"{tree.describe(name)}: has {array.shape[0] if array.ndim else 0} entries but "
                    f"meta/trials/tiers.npy lists {n_trials} trials."
                )
            trials[key] = array
        if "frame_image_id" not in trials:
            raise StaticDataError(f"{tree.describe('meta/trials/frame_image_id.npy')}: file is missing.")
        image_ids = trials.pop("frame_image_id")
        if not np.issubdtype(image_ids.dtype, np.integer):
            raise StaticDataError(f"{tree.describe('meta/trials/frame_image_id.npy')}: expected integer ids; got {image_ids.dtype}.")
        trials.pop("tiers")

        modalities = {}
        for folder in _TRIAL_FOLDERS:
            if folder in _REQUIRED_FOLDERS or tree.trial_files(folder):
                modalities[folder] = _stack_trials(tree, folder, n_trials)
        images = modalities["images"]
        if images.ndim == 4 and images.shape[1] == 1:  # published: (1, H, W) per trial
            images = np.moveaxis(images, 1, -1)
        elif images.ndim == 3:
            images = images[..., None]
        else:
            raise StaticDataError(
                f"{tree.describe('data/images/0.npy')}: has shape {images.shape[1:]}; expected (1, height, width)."
            )
        responses = modalities["responses"]
        if responses.ndim != 2:
            raise StaticDataError(
                f"{tree.describe('data/responses/0.npy')}: has shape {responses.shape[1:]}; expected (n_neurons,)."
            )

        neurons = {}
        for name in sorted(n for n in tree.names if n.startswith("meta/neurons/") and n.endswith(".npy")):
            array = tree.load(name)
            if array.ndim == 0 or len(array) != responses.shape[1]:
                raise StaticDataError(
                    f"{tree.describe(name)}: describes {array.shape[0] if array.ndim else 0} neurons but "
                    f"data/responses/0.npy holds {responses.shape[1]}."
                )
            neurons[name[len("meta/neurons/"):-4]] = array
    finally:
        tree.close()

    data = StaticData(
        images=images,
        responses=responses,
        tiers=tier_names,
        image_ids=image_ids.astype("int64"),
        behavior=modalities.get("behavior"),
        pupil_center=modalities.get("pupil_center"),
        neurons=neurons,
        trials=trials,
        name=tree.root.split("/")[-1] or os.path.splitext(os.path.basename(tree.path))[0],
    )
    if tiers is not None:
        data = select_trials(data, np.isin(tier_names, list(tiers)))
    return data


def select_trials(data: StaticData, keep: np.ndarray) -> StaticData:
    """A copy of ``data`` with only the trials where ``keep`` is true."""
    keep = np.asarray(keep, dtype=bool)

    def pick(array):
        return None if array is None else array[keep]

    return dataclasses.replace(
        data,
        images=data.images[keep],
        responses=data.responses[keep],
        tiers=data.tiers[keep],
        image_ids=data.image_ids[keep],
        behavior=pick(data.behavior),
        pupil_center=pick(data.pupil_center),
        trials={key: value[keep] for key, value in data.trials.items()},
    )


def select_neurons(data: StaticData, neurons) -> StaticData:
    """A copy of ``data`` with only the given neurons (indices or a boolean mask), in that order.

    Responses and every per-neuron metadata array (``data.neurons``) are cut alike.
    """
    neurons = np.asarray(neurons)
    if neurons.dtype == bool:
        if neurons.shape != (data.n_neurons,):
            raise ValueError(f"A neuron mask must have shape ({data.n_neurons},); got {neurons.shape}.")
        neurons = np.flatnonzero(neurons)
    if neurons.ndim != 1 or neurons.size == 0 or not np.issubdtype(neurons.dtype, np.integer) or \
            neurons.min() < 0 or neurons.max() >= data.n_neurons:
        raise ValueError(f"Neuron indices must be a non-empty 1-D array of integers in [0, {data.n_neurons}).")
    return dataclasses.replace(data, responses=data.responses[:, neurons],
                               neurons={key: value[neurons] for key, value in data.neurons.items()})
