"""TensorFlow's start-up, without its banner: imported first by ``keras_sysid`` and by the commands.

TensorFlow 2.21 writes start-up messages from C++ before its logging is set
up, so ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them: oneDNN and CPU-instruction
notices, "could not find cuda drivers" and, with a CUDA build on a CPU
machine, cuDNN/cuFFT/cuBLAS registration errors. :func:`import_tensorflow_quietly`
imports TensorFlow with its standard error captured and passes on every other
line it wrote (warnings and errors).

Importing this module does that when Keras will run on TensorFlow (Keras
imports TensorFlow then; under JAX or PyTorch it does not, and neither does
this module). It must run before Keras is imported, so it imports nothing of
keras_sysid (nor Keras): ``keras_sysid/__init__.py`` imports it first, and the
command line loads it before the package (:mod:`keras_sysid.cli._backend`,
through :func:`keras_sysid_launcher.load_early`).
"""

import importlib.util
import json
import os
import re
import sys
import tempfile

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


def keras_backend() -> str:
    """The backend Keras will pick when imported: ``KERAS_BACKEND``, else its ``keras.json``, else tensorflow."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as file:
            return str(json.load(file).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def startup_lines_to_keep(lines: list[str]) -> list[str]:
    """The lines of TensorFlow's start-up output worth showing: all but its banner (see the module)."""
    no_driver = any(_NO_DRIVER in line for line in lines)
    return [line for line in lines
            if line.strip() and not _STARTUP_NOISE.match(line) and not (no_driver and _CUDA_ERROR.match(line))]


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow (where installed and not yet imported) without its start-up banner."""
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
            for line in startup_lines_to_keep(captured.read().decode("utf-8", "replace").splitlines()):
                print(line, file=sys.stderr)


if keras_backend() == "tensorflow":
    import_tensorflow_quietly()
