"""Data: synthetic ground truth, the ``static*-preproc0`` and NWB readers and ``tf.data`` pipelines.

The TFDS builders live in :mod:`keras_sysid.data.tfds_builders` (imported on demand).
"""

from keras_sysid.data.nwb import load_nwb
from keras_sysid.data.pipeline import EpochStream, make_dataset
from keras_sysid.data.static import StaticData, StaticDataError, load_static
from keras_sysid.data.synthetic import (
    GROUND_TRUTHS,
    CNNGroundTruth,
    DoGGroundTruth,
    Split,
    SyntheticPopulation,
    make_population,
)

__all__ = [
    "GROUND_TRUTHS",
    "CNNGroundTruth",
    "DoGGroundTruth",
    "EpochStream",
    "Split",
    "StaticData",
    "StaticDataError",
    "SyntheticPopulation",
    "load_nwb",
    "load_static",
    "make_dataset",
    "make_population",
]
