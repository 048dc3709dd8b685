"""keras_sysid: neural system identification with Keras.

A shared convolutional core learns *what* a population computes; a per-neuron
readout learns *where* each neuron looks (Klindt et al., NeurIPS 2017).

``import keras_sysid as ks`` gives a curated API (:data:`__all__`):

- layers and models: ``ks.cores``, ``ks.readouts``, ``ks.behavior``,
  ``ks.build_model``, ``ks.SystemIdentificationModel``, ``ks.MultiSessionModel``,
  ``ks.Ensemble``;
- recordings: ``ks.data.load`` (any format into one ``ks.data.Recording``);
- the path from a recording to a twin: ``ks.recipes`` (``fit_recording``,
  named ``RECIPES``), ``ks.runs`` (the run store), ``ks.fit_with_schedule``;
- saved models: ``ks.load`` (a ``.keras`` file, a zoo name or a zoo folder),
  ``ks.zoo``, ``ks.export``; in-silico experiments: ``ks.insilico``.

The model and layer modules are imported with the package, because Keras
finds custom classes only once they are registered (so
``keras.saving.load_model`` works after ``import keras_sysid``); every other
submodule is imported on first use. Internals (``registry``, ``cloning``,
``validation``, ``resume``, ``atomic_files``) stay importable by their module
paths but are not part of the API. This project's own experiments sit above
the library in :mod:`keras_sysid.experiments`, which nothing here imports.
"""

from __future__ import annotations

from keras_sysid import _quiet_tensorflow  # noqa: F401, I001  (first: TensorFlow starts without its banner)

import importlib

# Registered with Keras on import (see above); the layers' families come with them.
from keras_sysid import behavior, cores, losses, metrics, readouts, regularizers  # noqa: F401
from keras_sysid.cores import Core, IdentityCore, StackedConv2DCore
from keras_sysid.ensemble import Ensemble
from keras_sysid.losses import PoissonLoss
from keras_sysid.metrics import PearsonCorrelation
from keras_sysid.models import SystemIdentificationModel, build_model
from keras_sysid.multisession import MultiSessionModel, build_multisession_model
from keras_sysid.readouts import FactorizedReadout, FixedMaskReadout, FullyConnectedReadout, GaussianReadout, Readout
from keras_sysid.regularizers import GroupSparsity, LaplacianSmoothness

__version__ = "0.2.0"

# Submodules imported on first use: ``ks.data`` imports keras_sysid.data then.
_SUBMODULES = (
    "data", "devices", "distribute", "evaluation", "experiments", "export", "insilico", "models", "multisession",
    "normalization", "plots", "positions", "inference_forms", "recipes", "runs", "simulators", "training", "transfer",
    "trial_variability", "zoo", "ensemble", "registry", "cloning", "validation", "resume", "atomic_files",
    "consistency", "clustering", "information_gain",
)
# Names resolved on first use: name -> (module, attribute).
_LAZY_NAMES = {
    "load": ("keras_sysid.zoo", "load_any"),
    "load_model": ("keras_sysid.zoo", "load_any"),  # the name the published zoo cards use; the same function
    "fit_with_schedule": ("keras_sysid.training", "fit_with_schedule"),
    "fit_sessions": ("keras_sysid.training", "fit_sessions"),
    "compile_model": ("keras_sysid.training", "compile_model"),
    "EarlyStoppingWithDecay": ("keras_sysid.training", "EarlyStoppingWithDecay"),
}


def __getattr__(name):
    if name in _LAZY_NAMES:
        module, attribute = _LAZY_NAMES[name]
        value = getattr(importlib.import_module(module), attribute)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Core",
    "EarlyStoppingWithDecay",
    "Ensemble",
    "FactorizedReadout",
    "FixedMaskReadout",
    "FullyConnectedReadout",
    "GaussianReadout",
    "GroupSparsity",
    "IdentityCore",
    "LaplacianSmoothness",
    "MultiSessionModel",
    "PearsonCorrelation",
    "PoissonLoss",
    "Readout",
    "StackedConv2DCore",
    "SystemIdentificationModel",
    "behavior",
    "build_model",
    "build_multisession_model",
    "compile_model",
    "cores",
    "data",
    "evaluation",
    "export",
    "fit_sessions",
    "fit_with_schedule",
    "insilico",
    "load",
    "losses",
    "metrics",
    "readouts",
    "recipes",
    "regularizers",
    "runs",
    "training",
    "transfer",
    "zoo",
]
