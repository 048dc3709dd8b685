r"""Export a model (a .keras file or a zoo entry) to a TensorFlow SavedModel for serving.

The SavedModel's ``serving_default`` signature maps ``images`` float32
[None, H, W, 1] to ``responses`` float32 [None, N], both in the data's units.
A model that takes the animal's state (or an ensemble with such a member) also
takes ``behavior`` float32 [None, n_behavior] and/or ``pupil_center`` float32
[None, n_pupil], in the data's units. A multi-session model (``keras-sysid fit``
with several ``--data``) gets one signature per session, ``serving_<session>``
(``serving_default`` is then the first session's). The tool prints the
inputs it wrote.

Examples:

  keras-sysid export --model runs/mouse_v1/factorized/model.keras --out serving/mouse_v1/1

  # Serve it (TensorFlow Serving's Docker image):
  docker run -p 8501:8501 -v "$PWD/serving/mouse_v1:/models/mouse_v1" \
      -e MODEL_NAME=mouse_v1 tensorflow/serving
"""

import os
import sys

from absl import flags

from keras_sysid import atomic_files, export, zoo

_MODEL = flags.DEFINE_string("model", None, "A .keras file, a zoo name or a zoo-format folder.", required=True)
_OUT = flags.DEFINE_string("out", None, "SavedModel folder to write (must not exist, unless --overwrite).", required=True)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing SavedModel (or empty folder) at --out.")


def main(argv):
    del argv
    out = os.path.normpath(_OUT.value)
    if os.path.exists(out) and not os.path.isdir(out):
        sys.exit(f"error: {out} is a file, not a folder for a SavedModel.")
    if os.path.exists(out):
        if not _OVERWRITE.value:
            sys.exit(f"error: {out} exists; pass --overwrite to replace it, or choose another --out.")
        # --overwrite replaces a SavedModel (or an empty folder), never another kind of folder.
        if os.listdir(out) and not os.path.isfile(os.path.join(out, "saved_model.pb")):
            sys.exit(f"error: {out} holds files but no saved_model.pb; --overwrite replaces SavedModels only.")
    try:
        export.check_writable(out)  # before the model is loaded
    except ValueError as error:
        sys.exit(f"error: {error}")
    try:
        model = zoo.load_any(_MODEL.value)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    # Written into a new folder of a unique name beside the target, which then takes its place: a failed
    # export leaves the old one in place, and no folder but the ones made here is ever deleted.
    try:
        atomic_files.write_folder(out, lambda folder: _write(model, folder))
    except OSError as error:  # the folder became unwritable, or the disk is full, after the checks
        sys.exit(f"error: cannot write {out}: {error.strerror or error}"
                 + (f" ({error.filename})" if error.filename else "") + ".")
    for signature, served in export.signatures(model).items():
        inputs = ", ".join(f"{name} {list(shape)}" for name, shape in export.input_shapes(served).items())
        print(f"wrote {out}: {signature} {inputs} -> responses [{served.n_neurons}]")


def _write(model, folder: str) -> None:
    # A temporary folder is private (0700); the SavedModel folder gets the permissions of any new folder.
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    export.export_saved_model(model, folder)
