"""Recipes: a recording and a recipe in, a fitted, scored, saved run out (keras_sysid.recipes)."""

import os

import keras
import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid import recipes, runs
from keras_sysid.data import RecordingError
from static_tree import write_tree

TINY_CORE = {"type": "stacked_conv2d", "channels": 2, "kernel_sizes": [5], "paddings": "same"}


def _recipe(**settings):
    return recipes.Recipe({"core": TINY_CORE, "readout": {"type": "gaussian"}},
                          recipes.FitSettings(max_epochs=2, **settings))


def test_fit_recording_writes_a_keyed_run_and_reads_it_back(tmp_path):
    recording = ks.data.load(write_tree(str(tmp_path / "data")))
    lines = []
    results = recipes.fit_recording(recording, _recipe(), out=str(tmp_path / "run"), verbose=0, log=lines.append)
    assert results["epochs"] == 2 and results["n_neurons"] == 5 and np.isfinite(results["corr_single"])
    assert results["key"]["data"] == recording.fingerprint() and "max_epochs" not in results["key"]["settings"]
    for name in ("model.keras", "scores.npz", "results.json", "backup"):
        assert os.path.exists(tmp_path / "run" / name), name
    assert not os.path.exists(tmp_path / "run" / ".lock")
    again = recipes.fit_recording(recording, _recipe(), out=str(tmp_path / "run"), verbose=0, log=lines.append)
    assert again == results and any("finished already" in line for line in lines)
    with pytest.raises(runs.RunKeyError, match="settings.patience: stored 4, this run 9"):
        recipes.fit_recording(recording, _recipe(patience=9), out=str(tmp_path / "run"), verbose=0, log=lines.append)


def test_a_recipe_refuses_a_recording_it_cannot_use(tmp_path):
    recording = ks.data.load(write_tree(str(tmp_path / "data")))
    images_only = ks.data.load((recording.images, recording.responses), name="images_only")
    with pytest.raises(RecordingError, match="images_only: has no behavior"):
        recipes.fit_recording(images_only, recipes.RECIPES["mouse_v1_best"], out=str(tmp_path / "run"), log=print)
    assert not os.path.exists(tmp_path / "run" / "backup")  # refused before any work
    cortex = recipes.Recipe({"core": TINY_CORE, "readout": {"type": "cortex_gaussian"}})
    neurons = dict(recording.neurons)
    neurons["cell_motor_coordinates"] = np.where(np.arange(5)[:, None] == 3, np.nan, 1.0) * np.ones((5, 3))
    with pytest.raises(RecordingError, match=r"NaN or inf for 1 of 5 neurons \(first: neuron 3\)"):
        recipes.build_for_recording(cortex.model, ks.data.Recording(**{
            **{field: getattr(recording, field) for field in ("images", "responses", "tiers", "image_ids")},
            "neurons": neurons, "name": recording.name}))


def test_new_neurons_on_a_frozen_pretrained_core(tmp_path):
    recording = ks.data.load(write_tree(str(tmp_path / "data")))
    keras.utils.set_random_seed(0)
    pretrained = recipes.build_for_recording({"core": TINY_CORE, "readout": {"type": "gaussian"}}, recording)
    pretrained.save(str(tmp_path / "pretrained.keras"))
    spec = recipes.pretrained_spec(str(tmp_path / "pretrained.keras"), "gaussian")
    model = recipes.build_for_recording(spec, recording)
    np.testing.assert_array_equal(model.core.get_weights()[0], pretrained.core.get_weights()[0])
    assert not model.core.trainable and model.readout.trainable
    results = recipes.fit_recording(recording, recipes.Recipe(spec, recipes.FitSettings(max_epochs=1)),
                                    out=str(tmp_path / "run"), verbose=0, log=lines_sink)
    assert results["key"]["pretrained_model"] and results["spec"]["freeze_core"] is True
    fitted = ks.load(str(tmp_path / "run" / "model.keras"))
    np.testing.assert_array_equal(fitted.core.get_weights()[0], pretrained.core.get_weights()[0])
    smaller = ks.data.load(write_tree(str(tmp_path / "small"), image_shape=(16, 16)))
    with pytest.raises(RecordingError, match=r"its images are \(16, 16, 1\), but the pretrained core .* takes "
                                             r"\(20, 24, 1\)"):
        recipes.build_for_recording(spec, smaller)


def lines_sink(line):
    del line
