import os

import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid import zoo


@pytest.fixture
def entry(tmp_path):
    model = ks.build_model(
        6, (20, 24), core={"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [5, 3]},
        readout={"type": "gaussian"}, image_mean=100.0, image_std=50.0,
    )
    model.set_response_scale(np.arange(1, 7))
    folder = str(tmp_path / "tiny")
    zoo.save(model, folder, {"name": "tiny", "units": "test"}, "# tiny\n")
    return model, folder


def test_saved_entry_loads_verified_and_predicts_the_same(entry):
    model, folder = entry
    images = np.random.default_rng(0).uniform(0, 255, (3, 20, 24, 1)).astype("float32")
    loaded = zoo.load(folder)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-6)
    facts = zoo.metadata(folder)
    assert facts.pop("provenance")["n_neurons"] == 6  # filled in by save (tests/test_presets.py)
    assert facts.pop("architecture")["readout"]["n_neurons"] == 6  # also filled in by save
    assert facts == {"name": "tiny", "units": "test"}
    assert sorted(os.listdir(folder)) == ["README.md", "SHA256SUMS", "config.json", "metadata.json", "model.weights.h5"]


@pytest.mark.parametrize("name", ["config.json", "model.weights.h5", "metadata.json", "README.md"])
def test_altered_truncated_or_missing_files_are_named(entry, name):
    _, folder = entry
    path = os.path.join(folder, name)
    with open(path, "rb") as file:
        payload = file.read()
    with open(path, "wb") as file:
        file.write(payload[: len(payload) // 2])
    with pytest.raises(zoo.ZooError, match=f"{name}: checksum mismatch"):
        zoo.load(folder)
    os.remove(path)
    with pytest.raises(zoo.ZooError, match=f"{name}: file is missing"):
        zoo.load(folder)


def test_unknown_name_and_missing_checksums(entry, tmp_path):
    _, folder = entry
    with pytest.raises(zoo.ZooError, match="neither a zoo model nor a folder"):
        zoo.load("no_such_model")
    os.remove(os.path.join(folder, "SHA256SUMS"))
    with pytest.raises(zoo.ZooError, match="SHA256SUMS: file is missing"):
        zoo.load(folder)


def test_weights_of_another_model_are_refused(entry, tmp_path):
    _, folder = entry
    other = ks.build_model(9, (20, 24), core={"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [5, 3]})
    other.save_weights(os.path.join(folder, "model.weights.h5"))
    with pytest.raises(zoo.ZooError, match="weights do not fit the model"):
        zoo.load(folder, verify_checksums=False)


def test_config_naming_unregistered_code_is_refused(entry):
    _, folder = entry
    import json

    path = os.path.join(folder, "config.json")
    with open(path) as file:
        config = json.load(file)
    config["config"]["core"] = {"module": "builtins", "class_name": "eval", "config": {}, "registered_name": "eval"}
    with open(path, "w") as file:
        json.dump(config, file)
    with pytest.raises(zoo.ZooError, match="config.json: not a loadable model config"):
        zoo.load(folder, verify_checksums=False)


def test_stored_weights_are_compressed_and_a_pruned_mask_stays_exact(tmp_path):
    import h5py

    model = ks.build_model(
        300, (20, 24), core={"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [5, 3]},
        readout={"type": "factorized"}, image_mean=100.0, image_std=50.0,
    )
    kept = model.readout.prune_mask(0.5)
    assert 0.0 < kept < 1.0
    folder = str(tmp_path / "sparse")
    zoo.save(model, folder, {"name": "sparse"}, "# sparse\n")
    with h5py.File(os.path.join(folder, "model.weights.h5")) as weights:
        compressions = []
        weights.visititems(lambda _, item: compressions.append(item.compression) if isinstance(item, h5py.Dataset) and item.size > 1024 else None)
    assert compressions and set(compressions) == {"gzip"}
    loaded = zoo.load(folder)
    np.testing.assert_array_equal(np.asarray(loaded.readout.mask), np.asarray(model.readout.mask))
