"""Starts keras_sysid's command line (``keras-sysid``, ``tools/*.py``) before the keras_sysid package.

``import keras_sysid`` imports Keras, which fixes its backend (``--backend``)
for the whole process, and TensorFlow, which prints its start-up banner. Python
imports a package before any of its modules, so the programs start in this
module, outside the package: :func:`load_early` runs
``keras_sysid/cli/main.py`` and ``keras_sysid/cli/_backend.py`` (which import
nothing of keras_sysid at their top) under their own names without importing
the package; the package is imported afterwards, by the command's module, with
the backend set.
"""

import importlib
import importlib.util
import os
import sys


def load_early(name: str):
    """Imports the keras_sysid module ``name`` without importing the ``keras_sysid`` package first.

    Once the package is imported (``python -m keras_sysid``), this is a plain import.
    """
    if name in sys.modules or "keras_sysid" in sys.modules:
        return importlib.import_module(name)
    package = importlib.util.find_spec("keras_sysid")  # finds a top-level package without importing it
    if package is None:
        raise ModuleNotFoundError("No module named 'keras_sysid'", name="keras_sysid")
    path = os.path.join(package.submodule_search_locations[0], *name.split(".")[1:]) + ".py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # Registered under its name, so importing it later (with the package) finds this module, not a second copy.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def main(argv=None):
    """The ``keras-sysid`` console script: :func:`keras_sysid.cli.main.main`."""
    return load_early("keras_sysid.cli.main").main(argv)


if __name__ == "__main__":
    sys.exit(main())
