"""Data: synthetic ground truth and ``tf.data`` pipelines."""

from keras_sysid.data.pipeline import make_dataset
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
    "Split",
    "SyntheticPopulation",
    "make_dataset",
    "make_population",
]
