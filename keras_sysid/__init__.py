"""keras_sysid: neural system identification with Keras.

A shared convolutional core learns *what* a population computes; a per-neuron
readout learns *where* each neuron looks (Klindt et al., NeurIPS 2017).

``import keras_sysid as ks`` gives the library's modules (``ks.readouts``,
``ks.cores``, ``ks.models``, ``ks.data``, ``ks.training``, ``ks.zoo``,
``ks.transfer``, ``ks.export``, ``ks.simulators``...) and its main names.
This project's own experiments (presets, the paper's comparisons, zoo
recipes, benchmark) sit above the library in :mod:`keras_sysid.experiments`,
which nothing here imports: ``from keras_sysid.experiments import rivals``.
"""

from __future__ import annotations

from keras_sysid import (
    cloning,
    cores,
    data,
    devices,
    distribute,
    evaluation,
    export,
    insilico,
    losses,
    metrics,
    models,
    multisession,
    normalization,
    positions,
    readouts,
    registry,
    regularizers,
    resume,
    simulators,
    training,
    transfer,
    validation,
    zoo,
)
from keras_sysid.cores import Core, IdentityCore, StackedConv2DCore
from keras_sysid.losses import PoissonLoss
from keras_sysid.metrics import PearsonCorrelation
from keras_sysid.models import SystemIdentificationModel, build_model
from keras_sysid.multisession import MultiSessionModel, build_multisession_model
from keras_sysid.readouts import FactorizedReadout, FixedMaskReadout, FullyConnectedReadout, GaussianReadout, Readout
from keras_sysid.regularizers import GroupSparsity, LaplacianSmoothness
from keras_sysid.training import EarlyStoppingWithDecay, compile_model, fit_sessions, fit_with_schedule
from keras_sysid.zoo import load_any as load_model

__version__ = "0.2.0"


__all__ = [
    "Core",
    "EarlyStoppingWithDecay",
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
    "build_model",
    "build_multisession_model",
    "cloning",
    "compile_model",
    "cores",
    "data",
    "devices",
    "distribute",
    "evaluation",
    "export",
    "fit_sessions",
    "fit_with_schedule",
    "insilico",
    "load_model",
    "losses",
    "metrics",
    "models",
    "multisession",
    "normalization",
    "positions",
    "readouts",
    "registry",
    "regularizers",
    "resume",
    "simulators",
    "training",
    "transfer",
    "validation",
    "zoo",
]
