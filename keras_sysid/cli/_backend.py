"""``--backend`` for the commands, and a TensorFlow start-up without its banner.

Keras picks its backend once, when it is first imported, from the
``KERAS_BACKEND`` environment variable. The commands therefore load this module
before Keras or keras_sysid (:func:`keras_sysid_launcher.load_early`; it imports
nothing of keras_sysid): it reads ``--backend NAME`` (or ``--backend=NAME``)
from the command line, sets the variable, and defines the absl flag so that
``--help`` lists it and absl accepts it. Where Keras was imported first with
another backend (``python -m keras_sysid`` imports the package, and so Keras,
before any command), it starts the program again with the variable set.

It also imports TensorFlow (where installed, whichever the backend: the
commands use it for data pipelines and SavedModels) with its start-up banner
filtered out (:mod:`keras_sysid._quiet_tensorflow`, which the package imports
first too); every other line it writes (warnings and errors) is passed on.
"""

import os
import sys

from absl import flags

BACKENDS = ("tensorflow", "jax", "torch")


def _from_command_line(argv) -> str | None:
    for position, argument in enumerate(argv):
        if argument.startswith("--backend="):
            return argument.split("=", 1)[1]
        if argument == "--backend" and position + 1 < len(argv):
            return argv[position + 1]
    return None


_CHOSEN = _from_command_line(sys.argv[1:])
if _CHOSEN is not None:
    if _CHOSEN not in BACKENDS:
        sys.exit(f"--backend must be one of {', '.join(BACKENDS)}; got {_CHOSEN!r}.")
    os.environ["KERAS_BACKEND"] = _CHOSEN
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != _CHOSEN:
        # Only a new process can change the backend; it inherits the variable (sys.orig_argv: Python 3.10+).
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])

BACKEND = flags.DEFINE_enum(
    "backend", os.environ.get("KERAS_BACKEND", "tensorflow"), list(BACKENDS),
    "Keras backend (default: KERAS_BACKEND, else tensorflow). The fastest on 2 CPU cores: docs/benchmarks.md.",
)


def check() -> str:
    """The backend Keras runs on; exits with a clear message if Keras was imported before this module.

    Every command calls it first; it also quiets absl's INFO lines (TensorFlow
    logs through absl while writing a SavedModel) unless ``--verbosity`` is given.
    """
    import keras
    from absl import flags, logging

    if "verbosity" in flags.FLAGS and not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)

    if keras.backend.backend() != BACKEND.value:
        sys.exit(
            f"Keras is running on {keras.backend.backend()}, not --backend {BACKEND.value}: "
            "load keras_sysid.cli._backend before Keras (keras_sysid_launcher.load_early)."
        )
    return BACKEND.value


def _import_tensorflow_quietly() -> None:
    """TensorFlow, imported without its banner (:mod:`keras_sysid._quiet_tensorflow`) whichever the backend."""
    # Loaded without the package (which would import Keras before --backend is set), like this module.
    from keras_sysid_launcher import load_early

    load_early("keras_sysid._quiet_tensorflow").import_tensorflow_quietly()
    if "tensorflow" in sys.modules:
        # Python-side INFO lines (e.g. "Assets written to" on every SavedModel) say nothing the commands do not.
        sys.modules["tensorflow"].get_logger().setLevel("WARNING")


_import_tensorflow_quietly()
