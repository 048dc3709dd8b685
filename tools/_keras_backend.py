"""``--backend`` for the command-line tools.

Keras picks its backend once, when it is first imported, from the
``KERAS_BACKEND`` environment variable. A tool therefore imports this module
before Keras or keras_sysid: it reads ``--backend NAME`` (or
``--backend=NAME``) from the command line, sets the variable, and defines the
absl flag so that ``--help`` lists it and absl accepts it.
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

BACKEND = flags.DEFINE_enum(
    "backend", os.environ.get("KERAS_BACKEND", "tensorflow"), list(BACKENDS),
    "Keras backend (default: KERAS_BACKEND, else tensorflow). The fastest on 2 CPU cores is in the README (Benchmark).",
)


def check() -> str:
    """The backend Keras runs on; exits with a clear message if Keras was imported before this module."""
    import keras

    if keras.backend.backend() != BACKEND.value:
        sys.exit(
            f"Keras is running on {keras.backend.backend()}, not --backend {BACKEND.value}: "
            "import tools/_keras_backend.py before Keras."
        )
    return BACKEND.value
