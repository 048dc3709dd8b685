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
problem raises a :class:`RecordingError` that names the file.

Normalisation uses statistics of the *train tier only*, computed here: the
published ``meta/statistics`` cover all trials, test trials included.

Every ``.npy`` file's header is read first, and a file whose header declares
more (or fewer) bytes of data than the file holds is refused before any array
is allocated. The ``.npy`` members of a zip file under the data set's root are
checked from the zip's directory before anything is unpacked, against these
limits (the published 5494-trial set unpacks to 176 MB, its largest file
1.4 MB, its highest ratio 264:1):

* a member may unpack to at most 4 GiB (:data:`MAX_MEMBER_BYTES`), and all
  of them together to at most 64 GiB (:data:`MAX_TOTAL_BYTES`);
* a member that unpacks to more than 4 MiB (:data:`RATIO_CHECKED_BYTES`) may do
  so at most 1000 times its compressed size (:data:`MAX_RATIO`);
* members must be stored or deflated (the usual zip), not encrypted: other
  methods (bzip2, LZMA) may unpack a whole chunk at once, unbounded;
* no more bytes are unpacked from a member than its directory entry declares.
"""

from __future__ import annotations

import io
import math
import os
import re
import zipfile
import zlib

import numpy as np

from keras_sysid.data.formats import is_path, register_format
from keras_sysid.data.recording import KNOWN_TIERS, Recording, RecordingError, select_trials

# Limits on the zip members read (see the module docstring).
MAX_MEMBER_BYTES = 4 * 2**30
MAX_TOTAL_BYTES = 64 * 2**30
RATIO_CHECKED_BYTES = 4 * 2**20
MAX_RATIO = 1000
# Magic, version, header length and numpy's own limit on the header (read_array_header_*'s max_header_size).
_NPY_HEADER_BYTES = 12 + 10000

_TRIAL_FOLDERS = ("images", "responses", "behavior", "pupil_center")
_REQUIRED_FOLDERS = ("images", "responses")
_TRIAL_FILE = re.compile(r"^(\d+)\.npy$")


class _Tree:
    """Read-only access to the files of a data set, zipped or extracted."""

    def __init__(self, path: str):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise RecordingError(f"{self.path}: no such file or folder.")
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
                raise RecordingError(f"{self.path}: not a readable zip file or folder ({error}).") from None
            names = [name for name in self._zip.namelist() if not name.endswith("/")]
        self.root = self._find_root(names)
        prefix = self.root + "/" if self.root else ""
        self.names = {name[len(prefix):] for name in names if name.startswith(prefix)}
        if self._zip is not None:
            self._check_members(prefix)

    def _check_members(self, prefix: str) -> None:
        """Refuses members that would unpack to too much (see the module docstring), from the zip's directory."""
        total = 0
        for info in self._zip.infolist():
            if info.is_dir() or not info.filename.startswith(prefix) or not info.filename.endswith(".npy"):
                continue
            where = f"{self.path}:{info.filename}"
            if info.flag_bits & 0x1:
                raise RecordingError(f"{where}: is encrypted; unzip it with its password first.")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise RecordingError(
                    f"{where}: is compressed with zip method {info.compress_type}; only stored and deflated members "
                    "(the usual zip) are read: re-zip it or give the extracted folder."
                )
            if info.file_size > MAX_MEMBER_BYTES:
                raise RecordingError(
                    f"{where}: declares {info.file_size:,} bytes unpacked, over the limit of "
                    f"{MAX_MEMBER_BYTES:,} bytes per member; refusing to unpack it."
                )
            if info.file_size > RATIO_CHECKED_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                raise RecordingError(
                    f"{where}: would unpack {info.compress_size:,} bytes into {info.file_size:,} "
                    f"(ratio {info.file_size / max(info.compress_size, 1):.0f}:1, over the limit of {MAX_RATIO}:1 "
                    f"for members over {RATIO_CHECKED_BYTES:,} bytes); refusing to unpack it (a zip bomb?)."
                )
            total += info.file_size
            if total > MAX_TOTAL_BYTES:
                raise RecordingError(
                    f"{where}: brings the data set's members to {total:,} bytes unpacked, over the limit of "
                    f"{MAX_TOTAL_BYTES:,} bytes; refusing to unpack it."
                )

    def _find_root(self, names: list[str]) -> str:
        # The tree may sit at the top of the zip/folder or one folder down.
        roots = {name[: -len("meta/trials/tiers.npy")].rstrip("/") for name in names if name.endswith("meta/trials/tiers.npy")}
        roots = {root for root in roots if root.count("/") <= 1 and not root.startswith("__MACOSX")}
        if not roots:
            raise RecordingError(
                f"{self.path}: meta/trials/tiers.npy is missing; this is not a static*-preproc0 data set."
            )
        if len(roots) > 1:
            raise RecordingError(f"{self.path}: holds several data sets ({sorted(roots)}); give one of them.")
        return roots.pop()

    def describe(self, name: str) -> str:
        return os.path.join(self.path, self.root, name) if self.root or self._zip is None else f"{self.path}:{name}"

    def load(self, name: str) -> np.ndarray:
        if name not in self.names:
            raise RecordingError(f"{self.describe(name)}: file is missing.")
        full = f"{self.root}/{name}" if self.root else name
        where = self.describe(name)
        try:
            if self._zip is not None:
                info = self._zip.getinfo(full)
                size, stream = info.file_size, self._zip.open(info)
            else:
                file_path = os.path.join(self.path, full)
                size, stream = os.path.getsize(file_path), open(file_path, "rb")
            with stream:
                return _read_npy(stream, size, where)
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            raise RecordingError(f"{where}: unreadable ({error}).") from None

    def trial_files(self, folder: str) -> dict[int, str]:
        """``{trial index: file name}`` of ``data/<folder>/<index>.npy``; two files for one trial are refused."""
        prefix = f"data/{folder}/"
        files = {}
        for name in sorted(self.names):
            if name.startswith(prefix):
                match = _TRIAL_FILE.match(name[len(prefix):])
                if match:
                    index = int(match.group(1))
                    if index in files:
                        raise RecordingError(
                            f"{self.describe(files[index])} and {self.describe(name)}: both are trial {index}; "
                            "keep one of them."
                        )
                    files[index] = name
        return dict(sorted(files.items()))

    def close(self):
        if self._zip is not None:
            self._zip.close()


def _read_npy(stream, size: int, where: str) -> np.ndarray:
    """The array of a ``.npy`` file of ``size`` bytes, read only once its header agrees with ``size``."""
    head = stream.read(min(size, _NPY_HEADER_BYTES))
    if not head.startswith(b"\x93NUMPY"):
        raise RecordingError(f"{where}: unreadable, not a .npy file.")
    header = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(header)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise RecordingError(f"{where}: .npy format version {version[0]}.{version[1]}; only 1.0 and 2.0 are read.")
        shape, fortran_order, dtype = read_header(header)
    except RecordingError:
        raise
    except ValueError as error:  # a damaged or cut header
        raise RecordingError(f"{where}: unreadable .npy header ({error}).") from None
    if dtype.hasobject:
        raise RecordingError(f"{where}: holds Python objects, which would need unpickling; refusing to load it.")
    offset, count = header.tell(), math.prod(shape)
    n_bytes = dtype.itemsize * count
    if offset + n_bytes != size:
        raise RecordingError(
            f"{where}: its header declares {dtype} data of shape {shape} ({n_bytes:,} bytes), but the file holds "
            f"{size - offset:,} bytes after the header; truncated or damaged .npy file."
        )
    raw = bytearray(head)  # writable, as np.load's arrays are
    raw += stream.read(size - len(head))
    if len(raw) != size:
        raise RecordingError(f"{where}: unreadable, truncated: {len(raw):,} of {size:,} bytes could be read.")
    array = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    return array.reshape(shape[::-1]).transpose() if fortran_order else array.reshape(shape)


def _check_finite(array: np.ndarray, what: str) -> None:
    if not np.issubdtype(array.dtype, np.number):
        raise RecordingError(f"{what}: holds {array.dtype} values; expected numbers.")
    bad = ~np.isfinite(array)
    if bad.any():
        trial = int(np.argwhere(bad.reshape(len(array), -1).any(axis=1))[0, 0])
        raise RecordingError(f"{what}: NaN or inf in trial {trial} (file {trial}.npy).")


def _stack_trials(tree: _Tree, folder: str, n_trials: int) -> np.ndarray:
    files = tree.trial_files(folder)
    indices = list(files)
    if indices != list(range(n_trials)):
        missing = sorted(set(range(n_trials)) - set(indices))
        extra = sorted(set(indices) - set(range(n_trials)))
        problem = f"{len(missing)} missing (first: {missing[0]}.npy)" if missing else f"{len(extra)} unexpected (first: {extra[0]}.npy)"
        raise RecordingError(
            f"{tree.describe('data/' + folder)}: has {len(indices)} trial files but meta/trials/tiers.npy "
            f"lists {n_trials} trials; {problem}."
        )
    first = tree.load(files[0])
    stacked = np.empty((n_trials,) + first.shape, dtype="float32")
    for index in range(n_trials):
        name = files[index]
        array = first if index == 0 else tree.load(name)
        if array.shape != first.shape:
            raise RecordingError(
                f"{tree.describe(name)}: has shape {array.shape}, but {files[0]} has {first.shape}."
            )
        if not np.issubdtype(array.dtype, np.number):
            raise RecordingError(f"{tree.describe(name)}: holds {array.dtype} values; expected numbers.")
        stacked[index] = array
    _check_finite(stacked, tree.describe(f"data/{folder}"))
    return stacked


def _is_static_tree(source) -> bool:
    return is_path(source) and (os.path.isdir(source) or os.fspath(source).lower().endswith(".zip"))


@register_format("static", _is_static_tree, "a static*-preproc0 zip or folder (the published mouse V1 layout)")
def load_static(path, tiers=None) -> Recording:
    """Reads a ``static*-preproc0`` data set from its zip file or extracted folder.

    Args:
        path: The ``.zip`` as published, or a folder: the data set's own root
            (holding ``data/`` and ``meta/``) or the folder just above it.
        tiers: Keep only trials of these tiers (e.g. ``["test"]``); default all.

    Returns:
        A :class:`Recording` with ``images (trials, H, W, 1)`` and
        ``responses (trials, N)``, both float32 in the data's units.

    Raises:
        RecordingError: a missing or unreadable file, trial counts that
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
            raise RecordingError(
                f"{tree.describe('meta/trials/tiers.npy')}: expected a 1-D array of tier names; "
                f"got {tier_names.dtype} of shape {tier_names.shape}."
            )
        tier_names = tier_names.astype(str)
        unknown = sorted(set(tier_names.tolist()) - set(KNOWN_TIERS))
        if unknown:
            raise RecordingError(
                f"{tree.describe('meta/trials/tiers.npy')}: unknown tier names {unknown}; expected some of {KNOWN_TIERS}."
            )
        n_trials = len(tier_names)
        if n_trials == 0:
            raise RecordingError(f"{tree.describe('meta/trials/tiers.npy')}: lists no trials.")

        trials = {}
        for name in sorted(n for n in tree.names if n.startswith("meta/trials/") and n.endswith(".npy")):
            key = name[len("meta/trials/"):-4]
            array = tree.load(name)
            if array.ndim == 0 or len(array) != n_trials:
                raise RecordingError(
                    f"{tree.describe(name)}: has {array.shape[0] if array.ndim else 0} entries but "
                    f"meta/trials/tiers.npy lists {n_trials} trials."
                )
            trials[key] = array
        if "frame_image_id" not in trials:
            raise RecordingError(f"{tree.describe('meta/trials/frame_image_id.npy')}: file is missing.")
        image_ids = trials.pop("frame_image_id")
        if not np.issubdtype(image_ids.dtype, np.integer):
            raise RecordingError(f"{tree.describe('meta/trials/frame_image_id.npy')}: expected integer ids; got {image_ids.dtype}.")
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
            raise RecordingError(
                f"{tree.describe('data/images/0.npy')}: has shape {images.shape[1:]}; expected (1, height, width)."
            )
        responses = modalities["responses"]
        if responses.ndim != 2:
            raise RecordingError(
                f"{tree.describe('data/responses/0.npy')}: has shape {responses.shape[1:]}; expected (n_neurons,)."
            )

        neurons = {}
        for name in sorted(n for n in tree.names if n.startswith("meta/neurons/") and n.endswith(".npy")):
            array = tree.load(name)
            if array.ndim == 0 or len(array) != responses.shape[1]:
                raise RecordingError(
                    f"{tree.describe(name)}: describes {array.shape[0] if array.ndim else 0} neurons but "
                    f"data/responses/0.npy holds {responses.shape[1]}."
                )
            neurons[name[len("meta/neurons/"):-4]] = array
    finally:
        tree.close()

    data = Recording(
        images=images,
        responses=responses,
        tiers=tier_names,
        image_ids=image_ids.astype("int64"),
        behavior=modalities.get("behavior"),
        pupil_center=modalities.get("pupil_center"),
        neurons=neurons,
        trials=trials,
        name=tree.root.split("/")[-1] or os.path.splitext(os.path.basename(tree.path))[0],
        provenance={"format": "static", "path": tree.path},
    )
    if tiers is not None:
        data = select_trials(data, np.isin(tier_names, list(tiers)))
    return data


