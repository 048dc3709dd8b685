r"""Export a model (a .keras file or a zoo entry) for serving: SavedModel, ONNX, OpenVINO IR or LiteRT.

Every format's signature maps ``images`` float32 [batch, H, W, C], pixel values
as stored in the data (e.g. 0..255), to ``responses`` float32 [batch, N] in the
data's units; a model that takes the animal's state also takes ``behavior``
[batch, n_behavior] and/or ``pupil_center`` [batch, n_pupil]. A multi-session
model gets one signature (SavedModel) or one file (other formats) per session.
The SavedModel checks every request (rank, size, finite values) and refuses a
bad one with a message naming the input; its ``serving_default_uint8``
signature takes uint8 images as stored. Each artefact describes itself (card,
neuron ids, units, input scale, versions, data fingerprint): ``keras_sysid.json``
beside it and inside it (SavedModel assets and ``metadata`` signature, ONNX
metadata_props, OpenVINO rt_info). The command prints the signatures and an
example TensorFlow Serving REST request. Formats other than saved_model need
the ``serve`` extra: pip install "keras_sysid[serve]".

Examples:

  keras-sysid export --model mouse_v1_gaussian --out serving --serving_layout   # serving/mouse_v1_gaussian/1/
  keras-sysid export --model runs/mouse_v1/model.keras --format onnx --out exported/mouse_v1_onnx

  # Serve the SavedModel (TensorFlow Serving's Docker image):
  docker run -p 8501:8501 -v "$PWD/serving/mouse_v1_gaussian:/models/mouse_v1_gaussian" \
      -e MODEL_NAME=mouse_v1_gaussian tensorflow/serving
  curl -d @serving/mouse_v1_gaussian/1/example_request.json \
      http://localhost:8501/v1/models/mouse_v1_gaussian:predict
"""

import json
import os
import sys

import numpy as np
from absl import flags, logging

from keras_sysid import atomic_files, export, runs, zoo
from keras_sysid.cli import _recordings
from keras_sysid.recipes.fit import SCORES, stored_neuron_ids

# Its documentation page, linked from --help (keras_sysid.cli.main.docs_link).
DOCS_PAGE = "serving/"

_MODEL = flags.DEFINE_string("model", None, "A .keras file, a zoo name or a zoo-format folder.", required=True)
_OUT = flags.DEFINE_string(
    "out", None, "Folder to write (must not exist, unless --overwrite); with --serving_layout, the model "
    "server's base folder, which gets NAME/VERSION/.", required=True)
_FORMAT = flags.DEFINE_enum("format", "saved_model", export.FORMATS, "The artefact's format.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing export (or empty folder) at --out.")
_SERVING_LAYOUT = flags.DEFINE_bool(
    "serving_layout", False, "Write --out/NAME/VERSION/ as TensorFlow Serving (and OpenVINO Model Server) expect: "
    "VERSION is one more than the highest version there (1 for a new model).")
_NAME = flags.DEFINE_string("name", None, "The model's name under --serving_layout (default: the zoo name or "
                            "the .keras file's folder name).")
_DATA = flags.DEFINE_string(
    "data", None, "The recording the model was trained on (any format keras-sysid fit reads): its neurons' "
    "unit ids and its fingerprint go into the artefact.")
flags.adopt_module_key_flags(_recordings)

# An export folder holds one of these; --overwrite replaces nothing else.
_EXPORT_MARKERS = ("saved_model.pb", export.MANIFEST_FILE)
EXAMPLE_REQUEST = "example_request.json"


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # the converters narrate every step at INFO
    try:
        export.check_format(_FORMAT.value)
        out, name = _destination()
        export.check_writable(out)  # before the model is loaded
        model = zoo.load_any(_MODEL.value)
        card, neuron_ids, fingerprint = _description(model)
    except (ValueError, FileNotFoundError, runs.RunKeyError) as error:
        sys.exit(f"error: {error}")
    described = {}

    def write(folder):
        # A temporary folder is private (0700); the export gets the permissions of any new folder.
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(folder, 0o777 & ~umask)
        described.update(export.export_model(model, folder, _FORMAT.value, card, neuron_ids, fingerprint))
        if _FORMAT.value == "saved_model":
            first = next(iter(described["signatures"]))  # serving_default, or the first session's
            atomic_files.write_json(export.rest_example(described, first), os.path.join(folder, EXAMPLE_REQUEST))

    # Written into a new folder of a unique name beside the target, which then takes its place: a failed
    # export leaves the old one in place, and no folder but the ones made here is ever deleted.
    try:
        atomic_files.write_folder(out, write)
    except OSError as error:  # the folder became unwritable, or the disk is full, after the checks
        sys.exit(f"error: cannot write {out}: {error.strerror or error}"
                 + (f" ({error.filename})" if error.filename else "") + ".")
    except export.ExportError as error:
        sys.exit(f"error: {error}")
    _report(out, described, name)


def _destination() -> tuple[str, str]:
    """``(folder to write, model name)``, checked against what is already there."""
    base = os.path.normpath(_OUT.value)
    name = _NAME.value or _default_name(_MODEL.value)
    if _SERVING_LAYOUT.value:
        if os.path.exists(base) and not os.path.isdir(base):
            raise ValueError(f"{base} is a file, not a model server's base folder.")
        versions_folder = os.path.join(base, name)
        versions = [int(entry) for entry in (os.listdir(versions_folder) if os.path.isdir(versions_folder) else [])
                    if entry.isdigit()]
        return os.path.join(versions_folder, str(max(versions, default=0) + 1)), name
    if os.path.exists(base) and not os.path.isdir(base):
        raise ValueError(f"{base} is a file, not a folder to export into.")
    if os.path.exists(base):
        if not _OVERWRITE.value:
            raise ValueError(f"{base} exists; pass --overwrite to replace it, or choose another --out.")
        # --overwrite replaces an export (or an empty folder), never another kind of folder.
        if os.listdir(base) and not any(os.path.isfile(os.path.join(base, marker)) for marker in _EXPORT_MARKERS):
            raise ValueError(f"{base} holds files but no saved_model.pb or {export.MANIFEST_FILE}; --overwrite "
                             "replaces exports only.")
    return base, name


def _default_name(model: str) -> str:
    model = os.path.normpath(model)
    if model.endswith(".keras"):
        return os.path.basename(os.path.dirname(os.path.abspath(model))) or "model"
    return os.path.basename(model)


def _description(model) -> tuple[dict, object, str | None]:
    """``(card, neuron ids, data fingerprint)``: from the zoo entry or the run folder, and from --data."""
    card, neuron_ids, fingerprint = {}, None, None
    path = _MODEL.value
    if path.endswith(".keras"):
        # A run folder keras-sysid fit wrote: results.json and scores.npz beside the model.
        run = runs.Run(os.path.dirname(os.path.abspath(path)), key={})
        facts = run.stored_results()
        if facts is not None:
            card = {key: facts[key] for key in ("data", "corr_single", "corr_avg", "feve", "frac_oracle", "n_neurons",
                                                "epochs", "stopped_early", "spec", "keras_sysid") if key in facts}
            card["trained_with"] = "keras-sysid fit"
            fingerprint = facts.get("data_fingerprint")
        if os.path.isfile(run.path(SCORES)):
            with np.load(run.path(SCORES), allow_pickle=False) as arrays:
                neuron_ids = stored_neuron_ids(arrays)
    else:
        card = zoo.metadata(path)
    if _DATA.value is not None:
        recording = _recordings.load_recording(_DATA.value, nwb_options=_recordings.nwb_options())
        n_neurons = getattr(model, "n_neurons", None)
        if isinstance(n_neurons, dict):
            raise ValueError("--data names one recording, and this model has several sessions; their neuron ids "
                             "come from the run folder keras-sysid fit wrote.")
        if n_neurons is not None and recording.n_neurons != n_neurons:
            raise ValueError(f"--data {_DATA.value} has {recording.n_neurons} neurons; the model predicts "
                             f"{n_neurons}: not the recording it was trained on.")
        neuron_ids = recording.neurons.get("unit_ids", np.arange(recording.n_neurons))
        fingerprint = recording.fingerprint()
        card.setdefault("data", recording.name)
    return card, neuron_ids, fingerprint


def _report(out: str, described: dict, name: str) -> None:
    """Prints what was written: each signature, and how to call it."""
    print(f"wrote {out} ({described['format']}): the artefact describes itself in {export.MANIFEST_FILE}")
    for signature, facts in described["signatures"].items():
        inputs = ", ".join(f"{key} {spec['dtype']} {_shape(spec['shape'])}" for key, spec in facts["inputs"].items())
        output = facts["outputs"]["responses"]
        where = "" if described["format"] == "saved_model" else f" ({export.file_name(signature, described['format'])})"
        print(f"  {signature}{where}: {inputs} -> responses {output['dtype']} {_shape(output['shape'])}")
    print(f"  images: {described['input_scale']}")
    print(f"  responses: {described['units']}")
    if described["format"] == "saved_model":
        first = next(iter(described["signatures"]))
        brief = {key: f"<{spec['dtype']} {_shape(spec['shape'][1:])}>"
                 for key, spec in described["signatures"][first]["inputs"].items()}
        print(f"REST request body (TensorFlow Serving; the full example is {os.path.join(out, EXAMPLE_REQUEST)}):")
        print("  " + json.dumps({"signature_name": first, "instances": [brief]}))
        print(f"  POST http://localhost:8501/v1/models/{name}:predict -> "
              '{"predictions": [[one value per neuron], ...]}')


def _shape(shape) -> str:
    return "[" + ", ".join("batch" if size is None else str(size) for size in shape) + "]"
