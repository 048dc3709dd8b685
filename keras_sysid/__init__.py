"""keras_sysid: neural system identification with Keras.

A shared convolutional core learns *what* a population computes; a per-neuron
readout learns *where* each neuron looks (Klindt et al., NeurIPS 2017).
"""

from keras_sysid import (
    cores,
    data,
    evaluation,
    losses,
    metrics,
    models,
    positions,
    readouts,
    rivals,
    training,
    transfer,
    validation,
    zoo,
)
from keras_sysid.cores import GroupSparsity, LaplacianSmoothness, StackedConv2DCore
from keras_sysid.losses import PoissonLoss
from keras_sysid.metrics import PearsonCorrelation
from keras_sysid.models import SystemIdentificationModel, build_model
from keras_sysid.readouts import FactorizedReadout, FixedMaskReadout, FullyConnectedReadout, GaussianReadout
from keras_sysid.training import EarlyStoppingWithDecay, fit_with_schedule

__version__ = "0.1.0"

__all__ = [
    "EarlyStoppingWithDecay",
    "FactorizedReadout",
    "FixedMaskReadout",
    "FullyConnectedReadout",
    "GaussianReadout",
    "GroupSparsity",
    "LaplacianSmoothness",
    "PearsonCorrelation",
    "PoissonLoss",
    "StackedConv2DCore",
    "SystemIdentificationModel",
    "build_model",
    "cores",
    "data",
    "evaluation",
    "fit_with_schedule",
    "losses",
    "metrics",
    "models",
    "positions",
    "readouts",
    "rivals",
    "training",
    "transfer",
    "validation",
    "zoo",
]
