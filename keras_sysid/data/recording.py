"""The one in-memory type of a recording, :class:`Recording`, and what every reader shares.

Every reader (:mod:`keras_sysid.data.readers`) returns a :class:`Recording`;
:func:`~keras_sysid.data.load` picks the reader. What is generic to
recordings lives here, beside the type, so that a new format is one reader
file: tier assignment that keeps the repeats of an image together
(:func:`assign_tiers`), grey levels (:func:`grey_images`) and area resizing
(:func:`resize_images`).

The vocabulary is *tier*: ``train``, ``validation``, ``test`` (repeated
images, scored) and ``final_test``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from keras_sysid import normalization

KNOWN_TIERS = ("train", "validation", "test", "final_test")
# ITU-R BT.601 luma weights: the usual grey of an RGB photograph.
_LUMA = np.array([0.299, 0.587, 0.114], dtype="float32")
TIER_RULES = ("auto", "repeated", "fraction")


class RecordingError(ValueError):
    """A recording cannot be read or used: a missing or malformed file, array or value (the message names it)."""


@dataclasses.dataclass
class Recording:
    """One recording's trials and metadata, in memory: the type every reader returns.

    Made by :func:`~keras_sysid.data.load` (a ``static*-preproc0`` tree, an
    NWB file, numpy arrays, the built-in synthetic truth) or
    :meth:`from_arrays`, and checked once, when made (:meth:`__post_init__`),
    so that pipelines, models and training can trust it: shapes agree, values
    are finite real numbers, tiers are known, per-neuron metadata has one
    entry per neuron. A bad recording raises :class:`RecordingError` naming
    the problem before any work is spent.

    A recording of static images has one image per trial. A movie recording
    will keep this type: its trials gain a time axis (frames and responses
    with their times), while tiers, image ids, neurons and the fingerprint
    keep their meaning.

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
        provenance: what the reader chose, for people to read (e.g. the NWB
            response series, stimulus and window); not part of the fingerprint.

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
    provenance: dict = dataclasses.field(default_factory=dict, compare=False)
    _fingerprint: str | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        where = self.name or "recording"
        self.images = _real_array(self.images, f"{where}: images", dtype="float32")
        self.responses = _real_array(self.responses, f"{where}: responses", dtype="float32")
        if self.images.ndim != 4:
            raise RecordingError(f"{where}: images have shape {self.images.shape}; expected (trials, height, width, "
                                 "channels).")
        if self.responses.ndim != 2:
            raise RecordingError(f"{where}: responses have shape {self.responses.shape}; expected (trials, neurons).")
        n_trials = len(self.responses)
        if n_trials == 0 or self.responses.shape[1] == 0:
            raise RecordingError(f"{where}: has {n_trials} trials of {self.responses.shape[1]} neurons; "
                                 "a recording needs at least one of each.")
        if len(self.images) != n_trials:
            raise RecordingError(f"{where}: {len(self.images)} images but {n_trials} trials of responses.")
        if not np.any(self.responses != self.responses[:1]):
            raise RecordingError(f"{where}: every response is {float(self.responses.flat[0]):g}; there is nothing to "
                                 "fit (is this the right file or series?).")
        self.tiers = np.asarray(self.tiers).astype(str)
        unknown = sorted(set(self.tiers.tolist()) - set(KNOWN_TIERS))
        if self.tiers.shape != (n_trials,) or unknown:
            raise RecordingError(f"{where}: tiers must be ({n_trials},) names of {KNOWN_TIERS}; got shape "
                                 f"{self.tiers.shape}" + (f" and unknown names {unknown}." if unknown else "."))
        self.image_ids = np.asarray(self.image_ids)
        if self.image_ids.shape != (n_trials,) or not np.issubdtype(self.image_ids.dtype, np.integer):
            raise RecordingError(f"{where}: image ids must be ({n_trials},) integers; got {self.image_ids.dtype} of "
                                 f"shape {self.image_ids.shape}.")
        self.image_ids = self.image_ids.astype("int64")
        for field in ("behavior", "pupil_center"):
            values = getattr(self, field)
            if values is None:
                continue
            values = _real_array(values, f"{where}: {field}", dtype="float32")
            if values.ndim != 2 or len(values) != n_trials:
                raise RecordingError(f"{where}: {field} has shape {values.shape}; expected ({n_trials}, variables).")
            setattr(self, field, values)
        for key, values in self.neurons.items():
            if np.ndim(values) == 0 or len(values) != self.n_neurons:
                raise RecordingError(f"{where}: neuron metadata {key!r} describes "
                                     f"{len(values) if np.ndim(values) else 0} neurons; the responses have "
                                     f"{self.n_neurons}.")
        for key, values in self.trials.items():
            if np.ndim(values) == 0 or len(values) != n_trials:
                raise RecordingError(f"{where}: trial metadata {key!r} has {len(values) if np.ndim(values) else 0} "
                                     f"entries for {n_trials} trials.")

    @classmethod
    def from_arrays(cls, images, responses, *, image_ids=None, tiers=None, behavior=None, pupil_center=None,
                    neurons=None, name: str = "arrays", tier_rule: str = "auto", test_fraction: float = 0.15,
                    validation_fraction: float = 0.1, seed: int = 0) -> "Recording":
        """A recording from numpy arrays.

        Args:
            images: ``(trials, H, W)`` or ``(trials, H, W, C)`` in any units.
            responses: ``(trials, neurons)``.
            image_ids: ``(trials,)`` integers, equal for repeats of one image;
                default: identical images share an id.
            tiers: ``(trials,)`` tier names; default :func:`assign_tiers`
                (``tier_rule``, ``test_fraction``, ``validation_fraction``, ``seed``).
            behavior: ``(trials, k)`` behaviour, optional.
            pupil_center: ``(trials, k)`` pupil centre, optional.
            neurons: ``{key: (neurons, ...)}`` metadata, e.g. ``cell_motor_coordinates``.
            name: The recording's name.

        Raises:
            RecordingError: arrays that do not form a recording (named).
        """
        images = _real_array(images, f"{name}: images", dtype="float32")
        if images.ndim == 3:
            images = images[..., None]
        if image_ids is None:
            if images.ndim != 4:
                raise RecordingError(f"{name}: images have shape {images.shape}; expected (trials, height, width[, "
                                     "channels]).")
            # Identical images are repeats of one image: they share an id, and so a tier.
            digests = [hashlib.sha256(image.tobytes()).digest() for image in images]
            _, image_ids = np.unique(np.array(digests, dtype=object).astype("S32"), return_inverse=True)
        image_ids = np.asarray(image_ids)
        if tiers is None:
            tiers = assign_tiers(image_ids, tier_rule, test_fraction, validation_fraction, seed, name)
        return cls(images=images, responses=responses, tiers=tiers, image_ids=image_ids, behavior=behavior,
                   pupil_center=pupil_center, neurons=dict(neurons or {}), name=name)


    def fingerprint(self) -> str:
        """SHA-256 (hex) of the data's content, as loaded.

        Covers images, responses, tiers, image ids, behaviour, pupil centre and
        every per-trial and per-neuron metadata array (each with its key, dtype
        and shape), but not :attr:`name` or where the data was read from: the
        same tree gives the same fingerprint from its zip or its extracted
        folder, under any file name, and any changed value changes it. It keys
        finished and resumable fits (:mod:`keras_sysid.runs`).
        Computed on the first call (about 0.2 s for the 5494-trial mouse V1
        set on 2 CPU cores) and cached, so change no array in place after calling it.
        """
        if self._fingerprint is None:
            # The type's old name, unchanged: stored run keys and zoo cards hold fingerprints made with it.
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

    def check_fittable(self, score_tier: str = "test", where: str | None = None) -> None:
        """Raises :class:`RecordingError` unless the recording can be fitted and scored.

        A fit trains on ``train``, stops early on ``validation`` and is scored
        on ``score_tier``'s repeated images: at least two images there, at
        least one shown more than once. ``where`` names the recording in the
        message (default: its name).
        """
        where = where or self.name
        present = sorted(set(self.tiers.tolist()))
        missing = [name for name in ("train", "validation", score_tier) if name not in present]
        if missing:
            raise RecordingError(
                f"{where}: has no {' or '.join(repr(m) for m in missing)} trials (tiers present: {present}); "
                f"a fit trains on 'train', stops early on 'validation' and is scored on repeated {score_tier!r} "
                "images.")
        groups = self.repeat_groups(score_tier)
        repeated = sum(len(group) > 1 for group in groups)
        if len(groups) < 2 or repeated < 1:
            raise RecordingError(
                f"{where}: its {score_tier!r} tier has {len(groups)} image(s), {repeated} shown more than once; "
                f"scoring needs at least 2 {score_tier!r} images and repeats (trials sharing an image id).")

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
            RecordingError: the data set lacks a requested variable (e.g. no
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
                    raise RecordingError(
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
                     inputs=("images",), passes_per_epoch: int = 1):
        """A tier's shuffled batches as an :class:`~keras_sysid.data.pipeline.EpochStream`
        (raw images, or the dict of ``inputs`` as :meth:`model_inputs`;
        responses divided by ``response_scale`` when given; each epoch
        ``passes_per_epoch`` shuffled passes over the tier), for
        :func:`~keras_sysid.training.fit_with_schedule`: exact resume and distribution.
        """
        from keras_sysid.data.pipeline import EpochStream  # TensorFlow stays at this edge of the module.

        images, responses = self.model_inputs(tier, inputs), self.responses[self.indices(tier)]
        scale = self._checked_scale(response_scale)
        if scale is not None:
            responses = responses / scale
        return EpochStream(images, responses, batch_size=batch_size, seed=seed, passes_per_epoch=passes_per_epoch)


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


def select_trials(data: Recording, keep: np.ndarray) -> Recording:
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


def select_neurons(data: Recording, neurons) -> Recording:
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


def _real_array(values, what: str, dtype: str) -> np.ndarray:
    """``values`` as a finite real ``dtype`` array, or a :class:`RecordingError` naming what is wrong."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as error:
        raise RecordingError(f"{what}: not an array ({error}).") from None
    if np.iscomplexobj(array):
        raise RecordingError(f"{what}: holds complex numbers; expected real values (take .real or abs() first, "
                             "whichever the data means).")
    if array.dtype != bool and not np.issubdtype(array.dtype, np.number):
        raise RecordingError(f"{what}: holds {array.dtype} values; expected numbers.")
    array = array.astype(dtype, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        bad_trials = bad.reshape(len(array), -1).any(axis=1) if array.ndim else bad.reshape(1)
        raise RecordingError(f"{what}: NaN or inf in {int(bad_trials.sum())} trial(s) "
                             f"(first: trial {int(np.argmax(bad_trials))}).")
    return array


def assign_tiers(image_ids, rule: str = "auto", test_fraction: float = 0.15, validation_fraction: float = 0.1,
                 seed: int = 0, where: str = "recording") -> np.ndarray:
    """``(trials,)`` tier names in which all presentations of an image share one tier.

    Args:
        image_ids: ``(trials,)`` image id of each trial.
        rule: ``"repeated"``: the repeated images are the test tier; ``"fraction"``:
            a seeded ``test_fraction`` of the images; ``"auto"``: ``repeated``
            when some images repeat and others do not, else ``fraction``.
            Of the rest, a seeded ``validation_fraction`` of the images validate.
        seed: Seed of the draws.
        where: Names the recording in errors.

    Raises:
        RecordingError: too few images for three tiers, or no repeats for ``"repeated"``.
    """
    if rule not in TIER_RULES:
        raise RecordingError(f"{where}: unknown tier rule {rule!r}; choose one of {TIER_RULES}.")
    image_ids = np.asarray(image_ids)
    unique, counts = np.unique(image_ids, return_counts=True)
    repeated = counts > 1
    rng = np.random.default_rng(seed)
    if rule == "auto":
        rule = "repeated" if repeated.any() and not repeated.all() else "fraction"
    if rule == "repeated":
        if not repeated.any():
            raise RecordingError(f"{where}: no image is shown more than once, so the 'repeated' rule has no test "
                                 "images.")
        test, rest = unique[repeated], unique[~repeated]
        if len(rest) < 2:
            raise RecordingError(
                f"{where}: {len(test)} images are repeated (the test tier) and only {len(rest)} shown once, "
                "too few for train and validation; use the 'fraction' rule to draw the test images at random."
            )
    else:
        if len(unique) < 3:
            raise RecordingError(f"{where}: shows {len(unique)} distinct images; train, validation and test "
                                 "need at least 3.")
        n_test = min(max(1, int(round(test_fraction * len(unique)))), len(unique) - 2)
        shuffled = rng.permutation(unique)
        test, rest = shuffled[:n_test], shuffled[n_test:]
    n_validation = min(max(1, int(round(validation_fraction * len(rest)))), len(rest) - 1)
    validation = rng.permutation(rest)[:n_validation]
    tiers = np.full(len(image_ids), "train", dtype="<U10")
    tiers[np.isin(image_ids, test)] = "test"
    tiers[np.isin(image_ids, validation)] = "validation"
    return tiers


def grey_images(array: np.ndarray, where: str, stack: bool = False) -> np.ndarray:
    """``(H, W)`` (or ``(M, H, W)`` with ``stack``) float32 grey image(s) in the stored units.

    RGB(A) becomes luma (ITU-R BT.601; alpha dropped); a trailing channel of 1 is dropped.
    """
    base = 3 if stack else 2
    if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        raise RecordingError(f"{where}: holds {array.dtype} values; expected pixel numbers.")
    if array.ndim == base + 1 and array.shape[-1] in (3, 4):
        return np.tensordot(array[..., :3].astype("float32"), _LUMA, axes=([-1], [0]))
    if array.ndim == base + 1 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != base:
        raise RecordingError(f"{where}: images have shape {array.shape}; expected "
                             f"{'(images, H, W[, 3])' if stack else '(H, W[, 3])'}.")
    return array.astype("float32")


def resize_images(images: np.ndarray, size) -> np.ndarray:
    """``(M, H, W)`` images resized to ``(M, *size)`` by area averaging, each axis on its own."""

    def weights(n_in, n_out):
        # Row i: the share of output pixel i's span [i, i + 1) * n_in / n_out that each input pixel covers.
        scale = n_in / n_out
        low = np.arange(n_out)[:, None] * scale
        pixel = np.arange(n_in)[None, :]
        overlap = np.minimum(low + scale, pixel + 1) - np.maximum(low, pixel)
        return (np.clip(overlap, 0, None) / scale).astype("float32")

    rows, columns = weights(images.shape[1], size[0]), weights(images.shape[2], size[1])
    return np.einsum("ih,mhw,jw->mij", rows, images, columns, optimize=True)
