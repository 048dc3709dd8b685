"""Data: any recording as one :class:`Recording` (:func:`load`), the synthetic ground truth and pipelines.

- :func:`load` reads a ``static*-preproc0`` zip or folder, an NWB file, numpy
  arrays or the built-in synthetic truth into a :class:`Recording`; each format
  is one reader in :mod:`keras_sysid.data.readers`.
- :mod:`keras_sysid.data.synthetic` simulates populations with known cells.
- :mod:`keras_sysid.data.pipeline`: ``tf.data`` pipelines and resumable epoch streams.

The TFDS builders live in :mod:`keras_sysid.data.tfds_builders` (imported on demand).
"""

from keras_sysid.data.formats import load, register_format, registered_formats
from keras_sysid.data.pipeline import EpochStream, make_dataset
from keras_sysid.data.readers.nwb import load_nwb
from keras_sysid.data.readers.static import load_static
from keras_sysid.data.recording import Recording, RecordingError, assign_tiers, select_neurons, select_trials
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
    "Recording",
    "RecordingError",
    "Split",
    "SyntheticPopulation",
    "assign_tiers",
    "registered_formats",
    "load",
    "load_nwb",
    "load_static",
    "make_dataset",
    "make_population",
    "register_format",
    "select_neurons",
    "select_trials",
]
