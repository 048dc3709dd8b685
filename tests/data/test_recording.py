"""Recording: the one in-memory type, checked when made; load() and its format registry."""

import os

import numpy as np
import pytest
from static_tree import write_tree

import keras_sysid as ks
from keras_sysid.data import Recording, RecordingError, register_format, registered_formats


def _arrays(n=60, neurons=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, 8, 10)).astype("float32"), rng.poisson(2.0, (n, neurons)).astype("float32")


def test_arrays_become_a_recording_whose_repeats_share_a_tier():
    images, responses = _arrays()
    images[30:40] = images[:10]  # ten images shown twice
    recording = ks.data.load((images, responses))
    assert recording.image_shape == (8, 10, 1) and recording.n_neurons == 4
    np.testing.assert_array_equal(recording.image_ids[30:40], recording.image_ids[:10])
    np.testing.assert_array_equal(recording.tiers[30:40], recording.tiers[:10])
    assert set(recording.tiers[:10]) == {"test"}  # the repeated images are the test tier
    recording.check_fittable()
    same = ks.data.load({"images": images, "responses": responses})
    assert same.fingerprint() == recording.fingerprint()


@pytest.mark.parametrize("change, message", [
    (lambda x, y: (x, y + 1j), "responses: holds complex numbers"),
    (lambda x, y: (x, 0 * y), "every response is 0; there is nothing to fit"),
    (lambda x, y: (x, np.where(np.arange(60)[:, None] == 7, np.nan, y)), r"responses: NaN or inf in 1 trial\(s\) "
                                                                         r"\(first: trial 7\)"),
    (lambda x, y: (x[:50], y), "50 images but 60 trials"),
    (lambda x, y: (x.astype(str), y), "images: holds <U32 values; expected numbers"),
])
def test_bad_arrays_are_refused_when_the_recording_is_made(change, message):
    with pytest.raises(RecordingError, match=message):
        ks.data.load(change(*_arrays()))


def test_load_names_what_it_cannot_read(tmp_path):
    with pytest.raises(RecordingError, match="nowhere.zip: no such file or folder"):
        ks.data.load(str(tmp_path / "nowhere.zip"))
    (tmp_path / "table.csv").write_text("1,2\n")
    with pytest.raises(RecordingError, match=r"No reader for '.*table.csv'. The formats are: arrays: .*nwb: .*static"):
        ks.data.load(str(tmp_path / "table.csv"))
    with pytest.raises(RecordingError, match="The static reader takes no option window; its options are tiers"):
        ks.data.load(write_tree(str(tmp_path)), window=(0, 1))
    with pytest.raises(RecordingError, match="Unknown recording format 'csv'"):
        ks.data.load("x", format="csv")


def test_a_new_format_is_one_registered_reader():
    """What a new reader file does, here in the test module: register, and load() finds it."""

    def is_text_table(source):
        return isinstance(source, str) and source.endswith(".table")

    @register_format("test_table", is_text_table, "a test's table")
    def read_table(path, *, neurons: int = 3):
        images, responses = _arrays(neurons=neurons)
        return Recording.from_arrays(images, responses, name=os.path.basename(path))

    try:
        recording = ks.data.load("cells.table", neurons=5)
        assert recording.name == "cells.table" and recording.n_neurons == 5
        assert "test_table" in registered_formats()
    finally:
        from keras_sysid.data.formats import _FORMATS

        _FORMATS.pop("test_table")


def test_every_reader_module_is_registered():
    readers = os.path.join(os.path.dirname(ks.data.__file__), "readers")
    modules = {name[:-3] for name in os.listdir(readers) if name.endswith(".py") and not name.startswith("_")}
    assert modules == {"static", "nwb", "arrays", "synthetic"} and set(registered_formats()) >= modules


def test_the_synthetic_truth_is_a_recording_with_its_truth():
    recording = ks.data.load("synthetic:cnn", n_neurons=8, n_types=2, image_size=20, n_train=32, n_validation=16,
                             n_test=16)
    assert recording.name == "synthetic_cnn" and recording.n_trials == 64
    assert recording.trials["clean_responses"].shape == (64, 8) and recording.neurons["rf_location"].shape == (8, 2)
    assert list(dict.fromkeys(recording.tiers)) == ["train", "validation", "test"]
    with pytest.raises(RecordingError, match="unknown ground truth 'gabor'"):
        ks.data.load("synthetic:gabor")


def test_a_static_tree_without_repeats_cannot_be_fitted_and_says_why(tmp_path):
    recording = ks.data.load(write_tree(str(tmp_path)), tiers=["train", "validation"])
    with pytest.raises(RecordingError, match="has no 'test' trials"):
        recording.check_fittable()
