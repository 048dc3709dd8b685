"""Reader of Neurodata Without Borders (NWB) two-photon recordings of static images.

An NWB file of a static-image experiment (e.g. the Allen Brain Observatory's
natural scenes: 118 grey-scale photographs shown for 250 ms each, ~50 times)
holds the neurons' traces as a ``RoiResponseSeries`` and the stimulus as one of
four layouts, all read by :func:`load_nwb`:

(a) an ``IndexSeries`` (``stimulus/presentation``) whose ``indexed_images`` is
    an ``Images`` container of ``GrayscaleImage``/``RGBImage`` (NWB >= 2.5),
    indexed in its ``order_of_images`` (without one: the images' names in
    natural order, ``image_2`` before ``image_10``);
(b) an ``IndexSeries`` whose ``indexed_timeseries`` is an ``ImageSeries`` of
    template frames (the older layout, e.g. Allen's files);
(c) an ``ImageSeries`` (``stimulus/presentation``) holding each presented
    frame, ``(presentations, H, W[, 3])``, one timestamp per frame;
(d) a ``TimeIntervals`` table (``intervals/``, e.g. Allen's
    ``natural_scenes_presentations``) with ``start_time`` and a column of
    image indices (``frame``, ``image_index``, ...) into an ``Images`` or
    ``ImageSeries`` of ``stimulus/templates``: the one the table's
    ``timeseries`` column points at (through an ``IndexSeries`` or as an
    ``ImageSeries``), else the one named, else the only one, which its indices
    must then fill (reach its last image), lest it be another stimulus' set.

Each presentation becomes one trial of a :class:`~keras_sysid.data.Recording`:
its image, and each ROI's trace averaged over a window after the onset.
pynwb is an optional dependency (``pip install "keras_sysid[nwb]"``),
imported only when a file is read.
"""

from __future__ import annotations

import hashlib
import os
import re

import numpy as np

from keras_sysid.data.formats import is_path, register_format
from keras_sysid.data.recording import (
    TIER_RULES,
    Recording,
    RecordingError,
    assign_tiers,
    grey_images,
    resize_images,
)

# Column names that hold the image index of a presentation in a TimeIntervals
# table; Allen's stimulus tables call it "frame".
INDEX_COLUMNS = ("image_index", "frame", "image", "image_id", "stimulus_index")


def _is_nwb_file(source) -> bool:
    return is_path(source) and os.fspath(source).lower().endswith(".nwb")


@register_format("nwb", _is_nwb_file, "a Neurodata Without Borders (.nwb) file")
def load_nwb(
    path,
    *,
    responses: str | None = None,
    stimulus: str | None = None,
    images: str | None = None,
    index_column: str | None = None,
    window: tuple[float, float] | None = None,
    image_size: tuple[int, int] | None = None,
    behavior=None,
    pupil_center: str | None = None,
    tier_rule: str = "auto",
    test_fraction: float = 0.15,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> Recording:
    """Reads an NWB two-photon recording of static image presentations.

    Series and tables are named by their path in the file, e.g.
    ``"processing/ophys/DfOverF/dff"``, or by any ``/``-separated tail of it
    (``"DfOverF/dff"``, ``"dff"``) that names only one. Left out, the only
    candidate is taken; with several, a :class:`RecordingError` lists them.

    Each presentation is one trial. Its response is each ROI's trace averaged
    over the samples ``t`` with ``onset + window[0] <= t < onset + window[1]``;
    the default window is ``(0, max(P, 2 / f))`` seconds, with ``P`` the
    median time from one presentation's onset to the next (the presentation
    period; blanks included) and ``f`` the imaging rate (the series' ``rate``,
    or 1 / the median timestamp step), so that a window always spans two
    frames. A calcium indicator responds late and slowly: a window such as
    ``(0.1, 0.35)`` may fit better. Every window must lie within the
    recording (from its first sample to one sample step after its last) and
    hold a sample. Presentations with a negative image index (Allen's ``-1``:
    the blank screen) are left out.

    Tiers split the images, so all presentations of an image share a tier.
    ``tier_rule="auto"``: if some images are shown once and others repeatedly, the
    repeated ones are the test tier (as in the published mouse V1 data,
    :func:`~keras_sysid.data.load_static`), else (every image repeated, as in
    the Allen Brain Observatory, or none) a random ``test_fraction`` of the
    images is. ``"repeated"`` and ``"fraction"`` force either rule. A random
    ``validation_fraction`` of the other images is the validation tier, the
    rest train; counts are rounded, at least one image each. The draws depend
    only on ``seed`` and the set of image ids.

    Args:
        path: The ``.nwb`` file (HDF5).
        responses: The ``RoiResponseSeries`` (in ``processing/*/`` or
            ``acquisition/``, e.g. inside a ``DfOverF`` or ``Fluorescence``);
            ``data`` ``(samples, N)``, times from ``timestamps`` or
            ``starting_time`` and ``rate``.
        stimulus: The ``IndexSeries`` or ``ImageSeries`` in
            ``stimulus/presentation/``, or the ``TimeIntervals`` in
            ``intervals/`` (layouts (a)-(d) of the module's docstring).
        images: For a ``TimeIntervals`` stimulus only: the ``Images`` or
            ``ImageSeries`` in ``stimulus/templates/`` its indices point into;
            default the one the table's ``timeseries`` column points at, else
            the only one (see layout (d)). A set of another size or image
            shape than the one the table points at is refused.
        index_column: For a ``TimeIntervals`` stimulus: the column of image
            indices; default the one of :data:`INDEX_COLUMNS` it has.
        window: ``(start, stop)`` in seconds after each onset.
        image_size: ``(height, width)``: resize every image to it by area
            averaging (each output pixel the mean of the input area it covers;
            each axis scaled on its own, so a different aspect ratio
            stretches). ``None`` keeps the stored size: Allen's 918x1174
            frames then take ~4 MB per trial.
        behavior: Name or list of names of ``TimeSeries`` (in
            ``acquisition/`` or ``processing/``, e.g. running speed), each
            averaged over the same windows; ``(samples,)`` or ``(samples, k)``
            series give 1 or ``k`` columns of ``(trials, sum k)``.
        pupil_center: Name of a ``TimeSeries``/``SpatialSeries`` with two
            columns, averaged over the windows into ``(trials, 2)``.
        tier_rule: ``"auto"``, ``"repeated"`` or ``"fraction"`` (see above).
        test_fraction: Share of images in the test tier, when split by fraction.
        validation_fraction: Share of the non-test images for validation.
        seed: Seed of the tier draws.

    Returns:
        A :class:`Recording`: ``images (trials, H, W, 1)`` float32 in the
        stored units (uint8 stays 0..255, floats in 0..1 stay 0..1: models
        built by :mod:`keras_sysid` standardise images in ``adapt``; colour is
        converted to grey, BT.601 luma); ``responses (trials, N)`` float32 in
        the series' unit (``data * conversion + offset``); ``image_ids``: the
        index into the image set, or for layout (c) the order in which each
        distinct frame (equal bytes) first appears; ``neurons``: ``unit_ids
        (N,)`` (the ROI table's ids) and, when the table has ``image_mask``,
        ``roi_centroid (N, 2)`` (x, y in imaging-plane pixels); ``trials``:
        ``onset_time (trials,)`` in seconds and ``presentation (trials,)``,
        the row of the stimulus it came from; ``name``: the file name without
        extension; ``provenance``: what was chosen, by path in the file:
        ``responses``, ``stimulus``, ``images`` (the image set; not for
        layout (c)), ``index_column`` (layout (d)), ``window`` (the
        ``(start, stop)`` seconds used), ``image_size`` (if resized),
        ``behavior`` (a list) and ``pupil_center`` (if any) and ``tier_rule``
        (the rule applied, in words, e.g. ``"fraction (auto): test 0.15,
        validation 0.1, seed 0"``).

    Raises:
        ImportError: pynwb is not installed.
        ValueError: bad arguments (window, image_size, fractions, tier_rule).
        RecordingError: a missing, unreadable or non-NWB file; no or several
            candidate series; timestamps that do not strictly increase; a
            window outside the recording or with no sample; NaN/inf inside a
            window, or made by a series' ``conversion`` or ``offset``; an ROI
            table that does not match the data's columns; an image index past
            the image set; a ``TimeIntervals`` table whose image set does not
            fit it (layout (d)); tiers that cannot all be filled.
            The message names the file and the series. All but the NaN/inf checks
            run before the traces and images are read (the tier check of
            layout (c) needs its frames).

    Example:
        >>> data = load_nwb("session.nwb", responses="DfOverF/dff", window=(0.1, 0.35),
        ...                 image_size=(36, 64), behavior="running_speed")
        >>> images, responses = data.tier("train")
    """
    window = _checked_window(window)
    image_size = _checked_image_size(image_size)
    if tier_rule not in TIER_RULES:
        raise ValueError(f"tier_rule must be one of {TIER_RULES}; got {tier_rule!r}.")
    for label, value in (("test_fraction", test_fraction), ("validation_fraction", validation_fraction)):
        if not 0.0 < float(value) < 1.0:
            raise ValueError(f"{label} must lie between 0 and 1; got {value}.")
    behavior = [behavior] if isinstance(behavior, str) else list(behavior or [])
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise RecordingError(f"{path}: no such file.")
    pynwb = _import_pynwb()

    try:
        io = pynwb.NWBHDF5IO(path, "r")
    except Exception as error:  # h5py and hdmf raise OSError, ValueError, KeyError... for non-NWB input
        raise RecordingError(f"{path}: not a readable NWB (HDF5) file ({type(error).__name__}: {error}).") from None
    try:
        try:
            nwbfile = io.read()
        except Exception as error:  # as above: an HDF5 file that is not NWB fails deep in hdmf
            raise RecordingError(f"{path}: not a readable NWB file ({type(error).__name__}: {error}).") from None
        return _load(pynwb, nwbfile, path, responses, stimulus, images, index_column, window, image_size,
                     behavior, pupil_center, tier_rule, test_fraction, validation_fraction, seed)
    finally:
        io.close()


def _load(pynwb, nwbfile, path, responses, stimulus, images, index_column, window, image_size, behavior,
          pupil_center, tier_rule, test_fraction, validation_fraction, seed) -> Recording:
    series, tables, image_sets = _inventory(pynwb, nwbfile)
    recorded = {key: value for key, value in series.items() if not key.startswith("stimulus/")}

    # Metadata first: every check that does not need the traces or images.
    roi_candidates = {key: value for key, value in recorded.items()
                      if isinstance(value, pynwb.ophys.RoiResponseSeries)}
    response_path = _pick(responses, roi_candidates, "RoiResponseSeries", path, "responses",
                          "in acquisition/ and processing/*/ (e.g. a DfOverF or Fluorescence)", sorted(series))
    trace = roi_candidates[response_path]
    where = f"{path}: {response_path}"
    shape = _shape(trace.data)
    if len(shape) not in (1, 2):
        raise RecordingError(f"{where}: data has shape {shape}; expected (samples, rois).")
    n_rois = shape[1] if len(shape) == 2 else 1
    unit_ids, rows, table = _roi_ids(trace, where, n_rois)
    times = _times(trace, where)

    stim = _stimulus(pynwb, stimulus, images, index_column, series, tables, image_sets, path)
    keep = np.ones(len(stim.onsets), bool) if stim.index is None else stim.index >= 0
    if not keep.any():
        raise RecordingError(f"{path}: {stim.path}: every presentation is blank (negative image index).")
    if window is None:
        period = float(np.median(np.diff(stim.onsets))) if len(stim.onsets) > 1 else 0.0
        if trace.rate:
            frame = 1.0 / float(trace.rate)
        else:
            frame = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
        window = (0.0, max(period, 2.0 * frame))
    onsets = stim.onsets[keep]
    presentations = np.flatnonzero(keep)
    bounds = _window_bounds(times, onsets, presentations, window, where, stim.path)
    tier_args = (tier_rule, test_fraction, validation_fraction, seed, f"{path}: {stim.path}")
    tiers = None if stim.index is None else assign_tiers(stim.index[keep], *tier_args)

    state, state_paths = [], {"behavior": [], "pupil_center": []}
    for names, label in ((behavior, "behavior"), ([pupil_center] if pupil_center else [], "pupil_center")):
        for name in names:
            state_path = _pick(name, recorded, "TimeSeries", path, label, "in acquisition/ and processing/*/",
                               sorted(series))
            state_paths[label].append(state_path)
            state_series = recorded[state_path]
            state_where = f"{path}: {state_path}"
            columns = _shape(state_series.data)
            if label == "pupil_center" and (len(columns) != 2 or columns[1] != 2):
                raise RecordingError(f"{state_where}: data has shape {columns}; a pupil centre needs (samples, 2).")
            if len(columns) not in (1, 2):
                raise RecordingError(f"{state_where}: data has shape {columns}; expected (samples,) or (samples, k).")
            state_times = _times(state_series, state_where)
            state.append((label, state_series, state_where,
                          _window_bounds(state_times, onsets, presentations, window, state_where, stim.path)))

    # The heavy part: traces, then images.
    labels = [f"ROI {unit_ids[column]} (column {column})" for column in range(n_rois)]
    response_means = _window_means(trace, bounds, where, labels, times, presentations)
    behaviour_means, pupil = [], None
    for label, state_series, state_where, state_bounds in state:
        columns = _shape(state_series.data)
        names = [f"column {column}" for column in range(columns[1] if len(columns) == 2 else 1)]
        means = _window_means(state_series, state_bounds, state_where, names, None, presentations)
        if label == "pupil_center":
            pupil = means
        else:
            behaviour_means.append(means)

    templates, image_ids = stim.load(keep)
    if tiers is None:  # layout (c): the images are known only from the frames
        tiers = assign_tiers(image_ids, *tier_args)
    if image_size is not None:
        templates = resize_images(templates, image_size)

    neurons = {"unit_ids": unit_ids}
    centroids = _roi_centroids(table, rows)
    if centroids is not None:
        neurons["roi_centroid"] = centroids
    provenance = {"responses": response_path, "stimulus": stim.path, **stim.provenance,
                  "window": (float(window[0]), float(window[1]))}
    if image_size is not None:
        provenance["image_size"] = image_size
    if state_paths["behavior"]:
        provenance["behavior"] = state_paths["behavior"]
    if state_paths["pupil_center"]:
        provenance["pupil_center"] = state_paths["pupil_center"][0]
    provenance["tier_rule"] = _tier_rule_used(image_ids, tier_rule, test_fraction, validation_fraction, seed)
    return Recording(
        images=templates[image_ids][..., None],
        responses=response_means,
        tiers=tiers,
        image_ids=image_ids,
        behavior=np.concatenate(behaviour_means, axis=1) if behaviour_means else None,
        pupil_center=pupil,
        neurons=neurons,
        trials={"onset_time": onsets.astype("float64"), "presentation": presentations.astype("int64")},
        name=os.path.splitext(os.path.basename(path))[0],
        provenance=provenance,
    )


def _tier_rule_used(image_ids, tier_rule, test_fraction, validation_fraction, seed) -> str:
    """The rule :func:`assign_tiers` applied, in words: ``"fraction (auto): test 0.15, validation 0.1, seed 0"``."""
    rule = tier_rule
    if rule == "auto":  # as assign_tiers decides
        repeated = np.unique(image_ids, return_counts=True)[1] > 1
        rule = "repeated" if repeated.any() and not repeated.all() else "fraction"
    test = f"test {test_fraction:g}, " if rule == "fraction" else ""
    return f"{rule}{' (auto)' if tier_rule == 'auto' else ''}: {test}validation {validation_fraction:g}, seed {seed}"


def _import_pynwb():
    try:
        import pynwb
        import pynwb.epoch
        import pynwb.image
        import pynwb.ophys
    except ImportError as error:
        raise ImportError(
            f'load_nwb reads NWB files with pynwb, which is missing ({error}): pip install "keras_sysid[nwb]"'
        ) from error
    return pynwb


def _checked_window(window):
    if window is None:
        return None
    try:
        start, stop = (float(value) for value in window)
    except (TypeError, ValueError):
        raise ValueError(f"window must be (start, stop) in seconds after the onset; got {window!r}.") from None
    if not (np.isfinite(start) and np.isfinite(stop) and stop > start):
        raise ValueError(f"window must be finite with stop > start; got {window!r}.")
    return start, stop


def _checked_image_size(image_size):
    if image_size is None:
        return None
    size = tuple(image_size)
    if len(size) != 2 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in size):
        raise ValueError(f"image_size must be (height, width), two positive ints; got {image_size!r}.")
    return int(size[0]), int(size[1])


def _shape(data) -> tuple:
    return tuple(data.shape) if hasattr(data, "shape") else np.shape(data)


def _inventory(pynwb, nwbfile):
    """The file's series, interval tables and image sets, each by its path in the file."""
    series, tables, image_sets = {}, {}, {}

    def add(key, obj):
        if isinstance(obj, pynwb.TimeSeries):
            series[key] = obj
        elif isinstance(obj, pynwb.base.Images):
            image_sets[key] = obj
        else:
            # Interfaces (DfOverF, BehavioralTimeSeries, EyeTracking...) hold their series one level down.
            for child in getattr(obj, "children", ()):
                if isinstance(child, pynwb.TimeSeries):
                    series[f"{key}/{child.name}"] = child

    for name, obj in nwbfile.acquisition.items():
        add(f"acquisition/{name}", obj)
    for module_name, module in nwbfile.processing.items():
        for name, obj in module.data_interfaces.items():
            add(f"processing/{module_name}/{name}", obj)
    for name, obj in nwbfile.stimulus.items():
        add(f"stimulus/presentation/{name}", obj)
    for name, obj in nwbfile.stimulus_template.items():
        add(f"stimulus/templates/{name}", obj)
        if isinstance(obj, pynwb.image.ImageSeries):
            image_sets[f"stimulus/templates/{name}"] = obj
    for name, obj in nwbfile.intervals.items():
        tables[f"intervals/{name}"] = obj
    for name in ("trials", "epochs"):
        if getattr(nwbfile, name, None) is not None:
            tables[f"intervals/{name}"] = getattr(nwbfile, name)
    return series, tables, image_sets


def _pick(name, candidates: dict, what: str, path: str, argument: str, looked: str, present) -> str:
    """The path in ``candidates`` that ``name`` names (itself or a ``/``-tail); with ``None`` the only one."""
    paths = sorted(candidates)
    if name is None:
        if len(paths) == 1:
            return paths[0]
        if not paths:
            raise RecordingError(
                f"{path}: no {what} found (looked {looked}); the file holds {list(present) or 'no series'}."
            )
        raise RecordingError(f"{path}: holds several {what}: {paths}; choose one with {argument}=, "
                              f"e.g. {argument}={paths[0]!r}.")
    key = str(name).strip("/")
    matches = [candidate for candidate in paths if candidate == key or candidate.endswith("/" + key)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RecordingError(f"{path}: no {what} named {name!r} ({argument}=); candidates: {paths or 'none'}.")
    raise RecordingError(f"{path}: {argument}={name!r} names several {what}: {matches}; give a longer path.")


def _times(series, where: str) -> np.ndarray:
    """A series' sample times in seconds, checked to strictly increase."""
    n_samples = _shape(series.data)[0] if _shape(series.data) else 0
    if series.timestamps is not None:
        times = np.asarray(series.timestamps[:], dtype="float64")
        if times.shape != (n_samples,):
            raise RecordingError(f"{where}: has {times.shape[0] if times.ndim else 0} timestamps "
                                  f"but {n_samples} samples.")
    elif series.rate:
        times = float(series.starting_time or 0.0) + np.arange(n_samples) / float(series.rate)
    else:
        raise RecordingError(f"{where}: has neither timestamps nor a sampling rate.")
    return _increasing(times, where, "timestamps")


def _increasing(times: np.ndarray, where: str, what: str) -> np.ndarray:
    if times.size == 0:
        raise RecordingError(f"{where}: has no samples.")
    if not np.all(np.isfinite(times)):
        raise RecordingError(f"{where}: {what} hold NaN or inf (first at {int(np.argmin(np.isfinite(times)))}).")
    backwards = np.flatnonzero(np.diff(times) <= 0)
    if backwards.size:
        i = int(backwards[0])
        raise RecordingError(f"{where}: {what} do not strictly increase: [{i}] = {times[i]:.6g} s, "
                              f"[{i + 1}] = {times[i + 1]:.6g} s.")
    return times


def _roi_ids(trace, where: str, n_rois: int):
    """``(unit_ids (N,), rows (N,), table)`` of the series' ROIs."""
    region = getattr(trace, "rois", None)
    if region is None:
        raise RecordingError(f"{where}: has no rois table region.")
    rows = np.asarray(region.data[:], dtype="int64").reshape(-1)
    if rows.size != n_rois:
        raise RecordingError(f"{where}: data has {n_rois} ROI columns but its rois region lists {rows.size} ROIs.")
    table = region.table
    ids = np.asarray(table.id.data[:], dtype="int64")
    if rows.size and (rows.min() < 0 or rows.max() >= len(ids)):
        raise RecordingError(f"{where}: rois region points at row {int(rows.max())}, "
                              f"but the table {table.name} has {len(ids)} rows.")
    return ids[rows], rows, table


def _roi_centroids(table, rows):
    """``(N, 2)`` mask-weighted (x, y) centre of each ROI's ``image_mask``, or ``None``."""
    if "image_mask" not in getattr(table, "colnames", ()):
        return None
    masks = table["image_mask"].data
    centroids = np.empty((len(rows), 2))
    for neuron, row in enumerate(rows):
        mask = np.asarray(masks[int(row)], dtype="float64")
        total = mask.sum() if mask.ndim == 2 else 0.0
        if not np.isfinite(total) or total <= 0:  # 3-D or empty masks: no plane centroid to give
            return None
        centroids[neuron] = (mask.sum(axis=0) @ np.arange(mask.shape[1]) / total,
                             mask.sum(axis=1) @ np.arange(mask.shape[0]) / total)
    return centroids


class _Stimulus:
    """A stimulus' onsets (all presentations) and how to get its images."""

    def __init__(self, path, onsets, index=None, loader=None, provenance=None):
        self.path, self.onsets, self.index, self._loader = path, onsets, index, loader
        self.provenance = provenance or {}  # the image set (and index column) used

    def load(self, keep):
        """``(templates (M, H, W) float32, image ids (trials,) int64)``; an id is a row of ``templates``."""
        if self.index is not None:
            return self._loader(), self.index[keep]
        frames = self._loader()  # layout (c): (presentations, H, W) raw frames
        ids, first = {}, []
        frame_ids = np.empty(len(frames), "int64")
        for row, frame in enumerate(frames):
            # Repeats of an image are bit-identical frames; their bytes identify the image.
            digest = hashlib.sha1(np.ascontiguousarray(frame).tobytes()).digest()
            if digest not in ids:
                ids[digest] = len(first)
                first.append(row)
            frame_ids[row] = ids[digest]
        return grey_images(frames[first], self.path, stack=True), frame_ids[keep]


def _stimulus(pynwb, name, images, index_column, series, tables, image_sets, path) -> _Stimulus:
    presented = {key: value for key, value in series.items() if key.startswith("stimulus/presentation/")
                 and (isinstance(value, pynwb.image.IndexSeries)
                      or (isinstance(value, pynwb.image.ImageSeries) and len(_shape(value.data)) in (3, 4)))}
    columns = {key: _index_column(table, index_column) for key, table in tables.items()}
    candidates = {**presented, **{key: tables[key] for key, column in columns.items() if column}}
    if name is not None and not any(key == name.strip("/") or key.endswith("/" + name.strip("/"))
                                    for key in candidates):
        # Name the missing column rather than "no such stimulus" when the table exists.
        for key, table in tables.items():
            if key.endswith("/" + name.strip("/")) or key == name.strip("/"):
                raise RecordingError(
                    f"{path}: {key}: has no image index column ({index_column or ' or '.join(INDEX_COLUMNS)}); "
                    f"its columns are {list(table.colnames)}; name it with index_column=."
                )
    stimulus_path = _pick(
        name, candidates, "stimulus", path, "stimulus",
        "for an IndexSeries or ImageSeries in stimulus/presentation/ and a TimeIntervals in intervals/ with a "
        f"column {index_column or ' or '.join(INDEX_COLUMNS)}",
        sorted(series) + sorted(tables),
    )
    where = f"{path}: {stimulus_path}"
    obj = candidates[stimulus_path]
    if isinstance(obj, pynwb.epoch.TimeIntervals):
        column = columns[stimulus_path]
        if isinstance(column, list):
            raise RecordingError(f"{where}: has several image index columns {column}; choose one with index_column=.")
        onsets = _increasing(np.asarray(obj["start_time"].data[:], dtype="float64"), where, "start times")
        # The image sets the table's own timeseries column leads to, if it has one.
        linked = _linked_image_sets(pynwb, obj, image_sets)
        if images is None and len(linked) == 1:
            set_path = next(iter(linked))
        else:
            set_path = _pick(images, image_sets, "image set (Images or ImageSeries)", path, "images",
                             "in stimulus/templates/", sorted(image_sets))
        count, size, loader = _image_set(pynwb, image_sets[set_path], f"{path}: {set_path}")
        for linked_path, linked_set in linked.items():
            linked_count, linked_size, _ = _image_set(pynwb, linked_set, f"{path}: {linked_path}")
            if (linked_count, linked_size) != (count, size):
                linked_text, used_text = _images_text(linked_count, linked_size), _images_text(count, size)
                raise RecordingError(
                    f"{where}: its timeseries column points at {linked_path}, {linked_text}, but its indices would be "
                    f"read into {set_path}, {used_text}; name the table's image set with images=."
                )
        label = f"{where} (column {column!r})"
        index = _checked_index(obj[column].data[:], label, count, set_path)
        shown = index[index >= 0]
        if images is None and not linked and shown.size and int(shown.max()) + 1 != count:
            # Nothing in the file ties the table to the set: one that its indices do not fill is likely another's.
            raise RecordingError(
                f"{label}: the image indices reach image {int(shown.max())}, but {set_path}, the only image set, "
                f"holds {count} images (0 to {count - 1}); if it is this table's image set, name it with images=."
            )
        return _Stimulus(stimulus_path, onsets, index, loader, {"images": set_path, "index_column": column})
    if images is not None:
        raise ValueError(f"images= is for a TimeIntervals stimulus; {stimulus_path} is a {type(obj).__name__}, "
                         "which names its own images.")
    onsets = _times(obj, where)
    if isinstance(obj, pynwb.image.IndexSeries):
        target = obj.indexed_images if obj.indexed_images is not None else obj.indexed_timeseries
        if target is None:
            raise RecordingError(f"{where}: links neither indexed_images nor indexed_timeseries.")
        count, _, loader = _image_set(pynwb, target, f"{where} -> {target.name}")
        index = _checked_index(obj.data[:], where, count, target.name)
        set_path = next((key for key, value in image_sets.items() if value is target), target.name)
        return _Stimulus(stimulus_path, onsets, index, loader, {"images": set_path})
    return _Stimulus(stimulus_path, onsets, None, lambda: np.asarray(obj.data[:]))


def _index_column(table, index_column):
    """The image index column of ``table``: its name, a list when ambiguous, or ``None``."""
    names = list(getattr(table, "colnames", ()))
    if index_column is not None:
        return index_column if index_column in names else None
    found = [name for name in INDEX_COLUMNS if name in names]
    return found[0] if len(found) == 1 else (found or None)


def _linked_image_sets(pynwb, table, image_sets) -> dict:
    """``{path: image set}`` of the sets in ``image_sets`` that the rows of ``table`` point at (its ``timeseries``
    column: an IndexSeries' images or an ImageSeries of templates); empty without such a column."""
    if "timeseries" not in getattr(table, "colnames", ()):
        return {}
    try:
        column = table["timeseries"]
        references = getattr(column, "target", column).data[:]
        targets = [row[2] for row in references]
    except Exception:  # hdmf raises many kinds for a damaged reference; an unreadable link ties nothing
        return {}
    found = []
    for series in {id(target): target for target in targets}.values():
        if isinstance(series, pynwb.image.IndexSeries):
            found.append(series.indexed_images if series.indexed_images is not None else series.indexed_timeseries)
        elif isinstance(series, pynwb.image.ImageSeries):
            found.append(series)
    return {key: value for key, value in image_sets.items() if any(value is target for target in found)}


def _images_text(count, size) -> str:
    return f"{count} images of {size[0]}x{size[1]}" if size else f"{count} images"


def _image_set(pynwb, obj, where):
    """``(number of images, (H, W) of the first or None, loader of the (M, H, W) float32 grey stack)`` of an
    Images or ImageSeries."""
    if isinstance(obj, pynwb.base.Images):
        order = getattr(obj, "order_of_images", None)
        if order is not None:
            pictures = list(order.data[:])
        else:
            # Without order_of_images the spec leaves the order open; names' natural order (image_2 < image_10)
            # is what writers that number their images mean.
            pictures = [obj.images[key] for key in sorted(obj.images, key=_natural_key)]

        def load():
            greys = [grey_images(np.asarray(picture.data[:]), f"{where}/{picture.name}") for picture in pictures]
            shapes = {grey.shape for grey in greys}
            if len(shapes) > 1:
                raise RecordingError(f"{where}: images differ in size ({sorted(shapes)}); "
                                      "image_size= cannot help: their aspect would differ.")
            return np.stack(greys)

        size = tuple(_shape(pictures[0].data)[:2]) if pictures else None
        return len(pictures), size, load
    shape = _shape(obj.data)
    if len(shape) not in (3, 4):
        external = getattr(obj, "external_file", None)
        reason = "its frames are in external files, which load_nwb does not read" if external is not None else \
            f"data has shape {shape}; expected (images, H, W[, 3])"
        raise RecordingError(f"{where}: {reason}.")
    return shape[0], tuple(shape[1:3]), lambda: grey_images(np.asarray(obj.data[:]), where, stack=True)


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _checked_index(raw, where: str, count: int, images_name: str) -> np.ndarray:
    index = np.asarray(raw)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.number):
        raise RecordingError(f"{where}: image indices must be a 1-D array of numbers; got {index.dtype} "
                              f"of shape {index.shape}.")
    if np.issubdtype(index.dtype, np.floating):
        bad = ~np.isfinite(index) | (index != np.round(index))
        if bad.any():
            raise RecordingError(f"{where}: image index [{int(np.argmax(bad))}] = {index[bad][0]} is not an integer.")
    past = np.flatnonzero(index >= count)
    if past.size:
        raise RecordingError(f"{where}: presentation {int(past[0])} shows image {int(index[past[0]])}, but "
                              f"{images_name} holds only {count} images.")
    return index.astype("int64")


def _window_bounds(times, onsets, presentations, window, where, stimulus_path):
    """``(first, stop)`` sample of each presentation's window, checked to lie in the recording and hold samples."""
    start, stop = onsets + window[0], onsets + window[1]
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    outside = np.flatnonzero((start < times[0]) | (stop > times[-1] + step))
    if outside.size:
        i = int(outside[0])
        raise RecordingError(
            f"{where}: the window [{start[i]:.6g}, {stop[i]:.6g}) s of presentation {int(presentations[i])} of "
            f"{stimulus_path} (onset {onsets[i]:.6g} s) lies outside the recording ({times[0]:.6g} to "
            f"{times[-1] + step:.6g} s); {outside.size} of {len(onsets)} presentations do."
        )
    first = np.searchsorted(times, start, side="left")
    last = np.searchsorted(times, stop, side="left")
    empty = np.flatnonzero(last <= first)
    if empty.size:
        i = int(empty[0])
        raise RecordingError(
            f"{where}: no sample in the window [{start[i]:.6g}, {stop[i]:.6g}) s of presentation "
            f"{int(presentations[i])} of {stimulus_path}; widen window= (samples are {step:.3g} s apart)."
        )
    return first, last


def _window_means(series, bounds, where, labels, times, presentations) -> np.ndarray:
    """``(trials, k)`` float32 mean of ``series`` over each window, in its unit (``data * conversion + offset``)."""
    first, last = bounds
    values = np.asarray(series.data[:])
    if not np.issubdtype(values.dtype, np.number):
        raise RecordingError(f"{where}: holds {values.dtype} values; expected numbers.")
    values = values.reshape(len(values), -1)
    finite = np.isfinite(values)
    if not finite.all():
        # Only samples some window averages must be finite: traces may have gaps between presentations.
        used = np.zeros(len(values) + 1, "int64")
        np.add.at(used, first, 1)
        np.add.at(used, last, -1)
        bad = ~finite & (np.cumsum(used)[:-1] > 0)[:, None]
        if bad.any():
            sample, column = (int(v) for v in np.argwhere(bad)[0])
            trial = int(np.flatnonzero((first <= sample) & (sample < last))[0])
            when = f" (t = {times[sample]:.6g} s)" if times is not None else ""
            raise RecordingError(f"{where}: NaN or inf in {labels[column]} at sample {sample}{when}, inside the "
                                  f"window of presentation {int(presentations[trial])}.")
        values = np.where(finite, values, 0)
    sums = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0, dtype="float64")])
    means = (sums[last] - sums[first]) / (last - first)[:, None]
    conversion = float(getattr(series, "conversion", 1.0) or 1.0)
    offset = float(getattr(series, "offset", 0.0) or 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        converted = (means * conversion + offset).astype("float32")
    bad = ~np.isfinite(converted)
    if bad.any():
        for attribute, value in (("conversion", conversion), ("offset", offset)):
            if not np.isfinite(value):
                raise RecordingError(f"{where}: its {attribute} attribute is {value}; data * conversion + offset "
                                      "must be finite.")
        trial, column = (int(v) for v in np.argwhere(bad)[0])
        raise RecordingError(f"{where}: data * conversion + offset (conversion {conversion:g}, offset {offset:g}) "
                              f"overflows float32 in {labels[column]} over the window of presentation "
                              f"{int(presentations[trial])}.")
    return converted
