"""The TFDS builders, checked by TFDS' own builder test case on tiny data."""

import tempfile

import numpy as np
import tensorflow_datasets as tfds
from static_tree import IMAGE_SHAPE, N_NEURONS, write_tree

from keras_sysid.data import tfds_builders

_TINY_SYNTHETIC = tfds_builders.SyntheticConfig(
    name="tiny_cnn", ground_truth="cnn", n_neurons=6, n_types=2, image_size=20,
    n_train=10, n_validation=4, n_test=5,
)
_TINY_STATIC = tfds_builders.StaticConfig(
    name="static1-1-1", n_neurons=N_NEURONS, image_height=IMAGE_SHAPE[0], image_width=IMAGE_SHAPE[1]
)
# TFDS' test case reads its manual_dir from a class attribute, so the tiny
# zipped tree is written once, at import.
_MANUAL_DIR = tempfile.mkdtemp(prefix="keras_sysid_static_")
write_tree(_MANUAL_DIR, zipped=True)


class SyntheticGroundTruthTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = tfds_builders.SyntheticGroundTruth
    BUILDER_CONFIG_NAMES_TO_TEST = [_TINY_SYNTHETIC]
    SPLITS = {"train": 10, "validation": 4, "test": 5}
    EXAMPLE_DIR = _MANUAL_DIR  # nothing is downloaded; TFDS needs some folder


class StaticPreproc0Test(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = tfds_builders.StaticPreproc0
    BUILDER_CONFIG_NAMES_TO_TEST = [_TINY_STATIC]
    SPLITS = {"train": 12, "validation": 4, "test": 6}
    EXAMPLE_DIR = _MANUAL_DIR


def test_static_builder_keeps_trials_and_units(tmp_path):
    builder = tfds_builders.StaticPreproc0(config=_TINY_STATIC, data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=_MANUAL_DIR))
    examples = list(tfds.as_numpy(builder.as_dataset(split="test")))
    assert sorted(int(e["image_id"]) for e in examples) == [7, 7, 8, 8, 9, 9]
    from keras_sysid.data import load_static

    data = load_static(f"{_MANUAL_DIR}/static1-1-1-preproc0.zip")
    for example in examples:
        index = int(example["trial_index"])
        np.testing.assert_array_equal(example["image"], data.images[index])
        np.testing.assert_array_equal(example["responses"], data.responses[index])


def test_static_builder_names_a_neuron_count_mismatch(tmp_path):
    import pytest

    wrong = tfds_builders.StaticConfig(name="static1-1-1", n_neurons=7, image_height=20, image_width=24)
    builder = tfds_builders.StaticPreproc0(config=wrong, data_dir=str(tmp_path / "tfds"))
    with pytest.raises(ValueError, match="5 neurons .* expects 7"):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=_MANUAL_DIR))
