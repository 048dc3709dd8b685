"""``--backend`` for the commands, and a TensorFlow start-up without its banner.

Keras picks its backend once, when it is first imported, from the
``KERAS_BACKEND`` environment variable. The commands therefore load this module
before Keras or keras_sysid (:func:`keras_sysid_launcher.load_early`; it imports
nothing of keras_sysid): it reads ``--backend NAME`` (or ``--backend=NAME``)
from the command line, sets the variable, and defines the absl flag so that
``--help`` lists it and absl accepts it. Where Keras was imported first with
another backend (``python -m keras_sysid`` imports the package, and so Keras,
before any command), it starts the program again with the variable set.

It also imports TensorFlow (where installed) with its start-up messages
filtered out. TensorFlow 2.21 writes them from C++ before its logging is set
up, so ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them: oneDNN and CPU-instruction
notices, "could not find cuda drivers" and, with a CUDA build on a CPU
machine, cuDNN/cuFFT/cuBLAS registration errors. Every other line it writes
(warnings and errors) is passed on.
"""

import importlib.util
import os
import re
import sys
import tempfile

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
    "Keras backend (default: KERAS_BACKEND, else tensorflow). The fastest on 2 CPU cores is in the README (Benchmark).",
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


# What TensorFlow prints at start-up that says nothing about the user's run.
_STARTUP_NOISE = re.compile(
    r"^(I\d{4} .*"  # absl INFO lines: oneDNN, cudart stub, CPU feature guard
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: .*)$"  # continuation of the CPU feature guard line
)
# On a machine without CUDA drivers, a CUDA build also reports failing to find
# a GPU (cuInit, cuDNN/cuFFT/cuBLAS registration): no news there, an error on a GPU machine.
_NO_DRIVER = "Could not find cuda drivers"
_CUDA_ERROR = re.compile(r"^[EW]\d{4} .*(cuda|CUDA|cuDNN|cuFFT|cuBLAS|TensorRT|Unable to register).*$")


def _import_tensorflow_quietly() -> None:
    if "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is None:
        return
    # Messages TensorFlow logs once running: INFO off, warnings and errors kept.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow

            # Looking for GPUs is where a CUDA build on a CPU machine fails cuInit;
            # it does not start the runtime (tf.distribute and device settings still apply).
            tensorflow.config.list_physical_devices("GPU")
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines()
            no_driver = any(_NO_DRIVER in line for line in lines)
            for line in lines:
                if line.strip() and not _STARTUP_NOISE.match(line) and not (no_driver and _CUDA_ERROR.match(line)):
                    print(line, file=sys.stderr)
    # Python-side INFO lines (e.g. "Assets written to" on every SavedModel) say nothing the commands do not.
    sys.modules["tensorflow"].get_logger().setLevel("WARNING")


_import_tensorflow_quietly()
