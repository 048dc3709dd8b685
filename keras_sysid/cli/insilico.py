r"""In-silico experiments on a fitted model: MEIs, gradient receptive fields, tuning curves.

Writes into --out: ``meis.npy`` ``(n_neurons, H, W, 1)`` in the order of --neurons,
``rf_maps.npy``, ``rf_energy.npy``, ``tuning_responses.npy``, ``mei_trace.npy``,
``best_natural_images.npy`` (with --data), a per-neuron table ``neurons.csv`` /
``neurons.json`` (MEI activation, best natural image's activation, RF centre
and size, preferred orientation, OSI, Gabor fit of the MEI) and figures
(``meis.png``, ``rf_centres.png``, ``tuning.png``). Prints progress, then the
table's medians as one JSON line.

Examples:

  # A zoo model, its first 100 neurons, MEIs compared with the scan's images.
  keras-sysid insilico --model mouse_v1_gaussian --neurons 0-99 \
      --data ../shared/data/mouse_v1_lurz2021/static20457-5-9-preproc0.zip --out runs/insilico/mouse_v1

  # Any model file, a few neurons, without data (RFs at the mean image only).
  keras-sysid insilico --model runs/dog/model.keras --neurons 3,7,10-12 --out runs/insilico/dog
"""

import json
import os
import sys
import time

import numpy as np
from absl import flags

from keras_sysid import insilico, zoo
from keras_sysid.cli import _backend, _recordings
from keras_sysid.cli._recordings import load_recording, nwb_options
from keras_sysid.data import RecordingError

# Its documentation page, linked from --help (keras_sysid.cli.main.docs_link).
DOCS_PAGE = "insilico/"

_MODEL = flags.DEFINE_string("model", None, "A .keras file, a zoo name or a zoo-format folder.", required=True)
_NEURONS = flags.DEFINE_string("neurons", "0-15", "Output indices: ranges and comma lists, e.g. 0-99 or 3,7,10-12.")
_OUT = flags.DEFINE_string("out", None, "Folder to write arrays, table and figures into.", required=True)
_DATA = flags.DEFINE_string(
    "data", None,
    "A static*-preproc0 zip or folder, or an .nwb file: its images give each neuron's best natural image, the "
    "MEIs' contrast budget (their mean contrast) and pixel range, and local gradient RFs.",
)
_STEPS = flags.DEFINE_integer("steps", 1000, "Most MEI gradient steps (a stopping rule usually ends sooner).")
_BLUR = flags.DEFINE_float("blur_sigma", 0.0, "Gaussian blur (pixels) of MEI gradients; 0: none.")
_JITTER = flags.DEFINE_integer("jitter", 0, "Largest random shift (pixels) of MEIs during the ascent.")
_NORM = flags.DEFINE_float("norm", None, "MEI contrast budget (L2 norm around the mean grey); default from --data.")
_RADIUS = flags.DEFINE_float("grating_radius", None, "Masked gratings of this radius (pixels) around each RF; "
                             "default: full-field.")
_RF_IMAGES = flags.DEFINE_integer(
    "rf_images", 200, "Natural images (from --data) for local gradient RFs; 0: RFs at the mean image only.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Images per gradient step.")
_SEED = flags.DEFINE_integer("seed", 0, "MEI start seed.")
_FIGURES = flags.DEFINE_bool("figures", True, "Write figures (needs matplotlib).")
flags.adopt_module_key_flags(_recordings)  # --help lists the --nwb_* flags


def parse_neurons(text: str) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]`` (ranges inclusive, order kept)."""
    neurons = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, dash, high = part.partition("-")
        try:
            first, last = int(low), int(high) if dash else int(low)
        except ValueError:
            raise ValueError(f"--neurons: {part!r} is neither an index nor a range like 0-99.") from None
        if last < first:
            raise ValueError(f"--neurons: the range {part!r} runs backwards.")
        neurons.extend(range(first, last + 1))
    if not neurons:
        raise ValueError("--neurons: no neuron given.")
    return neurons


def main(argv):
    del argv
    _backend.check()
    started = time.perf_counter()
    try:
        neurons = parse_neurons(_NEURONS.value)
        model = zoo.load_any(_MODEL.value)
        images = None
        if _DATA.value:
            print(f"reading {_DATA.value} ...", flush=True)
            recording = load_recording(_DATA.value, nwb_options=nwb_options())
            chosen = _recordings.describe(recording)
            if chosen:
                print(chosen, flush=True)
            images = recording.images
        if images is None or _RF_IMAGES.value <= 0:
            rf_images = None if images is None else images[:0]  # receptive fields at the mean image only
        else:
            rf_images = images[np.random.default_rng(0).permutation(len(images))[:_RF_IMAGES.value]]
        report = insilico.digital_twin_report(
            model, neurons, images, norm=_NORM.value, mei_steps=_STEPS.value, blur_sigma=_BLUR.value,
            jitter=_JITTER.value, grating_radius=_RADIUS.value, batch_size=_BATCH_SIZE.value, seed=_SEED.value,
            rf_images=rf_images,
        )
    except (ValueError, FileNotFoundError, RecordingError) as error:
        sys.exit(f"error: {error}")
    paths = insilico.write_report(report, _OUT.value, images)
    if _FIGURES.value:
        from keras_sysid import plots

        rows = report.table()
        labels = [f"{row['neuron']}: {row['mei_activation']:.3g}" for row in rows]
        plots.plot_mei_grid(report.meis.images, labels, os.path.join(_OUT.value, "meis.png"), report.meis.background)
        readout = None
        if hasattr(model, "rf_positions"):
            try:
                readout = model.rf_positions()[report.neurons]
            except ValueError:  # a readout without positions
                readout = None
        plots.plot_rf_centres(report.receptive_fields.center, report.meis.images.shape[1:], os.path.join(
            _OUT.value, "rf_centres.png"), reference=readout, title=f"{_MODEL.value}: gradient RF centres")
        plots.plot_tuning(report.tuning.orientations, report.tuning.orientation_curve(),
                          report.tuning.preferred_orientation, report.tuning.osi, [row["neuron"] for row in rows],
                          os.path.join(_OUT.value, "tuning.png"))
    rows = report.table()
    summary = {}
    for key in ("mei_activation", "best_natural_activation", "mei_to_natural_ratio", "rf_size", "osi"):
        values = np.array([row[key] for row in rows], dtype="float64")
        if np.isfinite(values).any():  # the natural-image columns need --data
            summary[key] = float(np.median(values[np.isfinite(values)]))
    print(json.dumps({"model": _MODEL.value, "n_neurons": len(rows), "out": _OUT.value,
                      "files": sorted(os.path.basename(path) for path in paths.values()),
                      "seconds": round(time.perf_counter() - started, 1), "median": summary}))

