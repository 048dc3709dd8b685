"""This project's experiments, above the library: nothing in the library imports them.

- :mod:`~keras_sysid.experiments.presets`: every setting, defined once (the
  paper's core, the synthetic readouts, the mouse V1 rivals, run configs).
- :mod:`~keras_sysid.experiments.rivals`: the paper's rivals fitted to real data.
- :mod:`~keras_sysid.experiments.comparison`: Table 1 and Fig. 5e (``tools/reproduce.py``).
- :mod:`~keras_sysid.experiments.transfer_curve`: the transfer learning curve (``tools/transfer.py``).
- :mod:`~keras_sysid.experiments.zoo_recipes`: how each zoo entry is made (``tools/build_zoo.py``).
- :mod:`~keras_sysid.experiments.benchmark`: speed and memory (``tools/benchmark.py``).

Submodules are imported on first use, so ``import keras_sysid.experiments``
costs nothing and needs no plotting library.
"""

from __future__ import annotations

import importlib

_SUBMODULES = ("benchmark", "comparison", "presets", "rivals", "transfer_curve", "zoo_recipes")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
