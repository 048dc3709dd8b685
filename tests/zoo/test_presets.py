"""Presets: zoo.load_preset / zoo.save, zoo.presets(), evaluate.py without --data."""

import dataclasses
import datetime
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid import zoo
from keras_sysid.models import SystemIdentificationModel

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_FILES = ["README.md", "SHA256SUMS", "config.json", "metadata.json", "model.weights.h5"]
_CARD = {"name": "tiny", "description": "A tiny test model.", "licence": "Apache-2.0", "metrics": {"corr": 0.5}}


@keras.saving.register_keras_serializable(package="test_presets")
class TweakedModel(SystemIdentificationModel):
    """A subclass, to check that load_preset refuses a preset of another class."""


def _tiny_model(cls=SystemIdentificationModel):
    model = cls(
        ks.cores.get({"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [5, 3]}, name="core"),
        ks.readouts.get({"type": "gaussian"}, n_neurons=6, name="readout"),
        image_shape=(20, 24), image_mean=100.0, image_std=50.0, name="tiny",
    )
    model.set_response_scale(np.arange(1, 7))
    return model


@pytest.fixture
def entry(tmp_path):
    model = _tiny_model()
    folder = str(tmp_path / "tiny")
    zoo.save(model, folder, card=_CARD)
    return model, folder


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 255, (3, 20, 24, 1)).astype("float32")


def _reseal(folder):
    """Rewrites SHA256SUMS for the files as they are now (as a forger would)."""
    with open(os.path.join(folder, "SHA256SUMS"), "w") as file:
        for name in ("config.json", "model.weights.h5", "metadata.json", "README.md"):
            file.write(f"{zoo.sha256(os.path.join(folder, name))}  {name}\n")


def test_load_preset_round_trip_equals_the_model_and_zoo_load(entry, images):
    model, folder = entry
    assert sorted(os.listdir(folder)) == _FILES
    loaded = zoo.load_preset(SystemIdentificationModel, folder)
    assert type(loaded) is SystemIdentificationModel and loaded.compiled is False
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), model.predict(images, verbose=0))
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), zoo.load(folder).predict(images, verbose=0))
    # A shipped entry, by name.
    shipped = zoo.load_preset(ks.SystemIdentificationModel, "synthetic_cnn_groundtruth")
    white_noise = np.random.default_rng(1).normal(size=(2, 48, 48, 1)).astype("float32")
    np.testing.assert_array_equal(
        shipped.predict(white_noise, verbose=0), zoo.load("synthetic_cnn_groundtruth").predict(white_noise, verbose=0)
    )


def test_load_weights_false_gives_the_architecture_with_fresh_weights(entry, images):
    model, folder = entry
    fresh = zoo.load_preset(SystemIdentificationModel, folder, load_weights=False)
    assert json.dumps(fresh.get_config()) == json.dumps(model.get_config())
    assert [w.shape for w in fresh.weights] == [w.shape for w in model.weights]
    assert any(not np.array_equal(a, b) for a, b in zip(fresh.get_weights(), model.get_weights()))
    np.testing.assert_array_equal(np.asarray(fresh.response_scale), np.ones(6))
    # The weights file is not read, so not needed; every other file is still verified.
    os.remove(os.path.join(folder, "model.weights.h5"))
    zoo.load_preset(SystemIdentificationModel, folder, load_weights=False)
    with pytest.raises(zoo.ZooError, match="model.weights.h5: file is missing"):
        zoo.load_preset(SystemIdentificationModel, folder)
    with open(os.path.join(folder, "config.json"), "a") as file:
        file.write(" ")
    with pytest.raises(zoo.ZooError, match="config.json: checksum mismatch"):
        zoo.load_preset(SystemIdentificationModel, folder, load_weights=False)


def test_dtype_sets_the_policy_of_every_layer_for_the_load(entry, images):
    model, folder = entry
    before = keras.config.dtype_policy().name
    mixed = zoo.load_preset(SystemIdentificationModel, folder, dtype="mixed_bfloat16")
    assert keras.config.dtype_policy().name == before
    assert {layer.dtype_policy.name for layer in mixed._flatten_layers()} == {"mixed_bfloat16"}
    assert {w.dtype for w in mixed.weights} == {"float32"}
    np.testing.assert_allclose(mixed.predict(images, verbose=0), model.predict(images, verbose=0), rtol=0.05)
    # An entry saved in mixed precision loads back in float32 when asked, with a DTypePolicy too.
    folder_mixed = folder + "_mixed"
    zoo.save(mixed, folder_mixed)
    assert zoo.metadata(folder_mixed)["provenance"]["dtype_policy"] == "mixed_bfloat16"
    exact = zoo.load_preset(SystemIdentificationModel, folder_mixed, dtype=keras.DTypePolicy("float32"))
    assert {layer.dtype_policy.name for layer in exact._flatten_layers()} == {"float32"}
    np.testing.assert_allclose(exact.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-6)
    with pytest.raises(ValueError):
        zoo.load_preset(SystemIdentificationModel, folder, dtype="no_such_policy")


def test_zoo_save_records_provenance_and_checksums_and_keeps_the_card(entry, tmp_path):
    model, folder = entry
    facts = zoo.metadata(folder)
    assert {key: value for key, value in facts.items() if key not in ("provenance", "architecture")} == _CARD
    assert facts["architecture"] == zoo.architecture(model)
    assert facts["architecture"]["core"]["type"] == model.core.type_name
    assert facts["architecture"]["parameters"] == model.count_params()
    provenance = facts["provenance"]
    assert provenance["keras_sysid_version"] == ks.__version__
    assert provenance["keras_version"] == keras.__version__
    assert provenance["backend"] == keras.backend.backend()
    assert "tensorflow_version" in provenance
    assert provenance["parameter_count"] == model.count_params()
    assert provenance["n_neurons"] == 6 and provenance["image_shape"] == [20, 24, 1]
    assert provenance["model_class"] == "keras_sysid>SystemIdentificationModel"
    saved_at = datetime.datetime.fromisoformat(provenance["saved_at"])
    assert saved_at.utcoffset() == datetime.timedelta(0)
    with open(os.path.join(folder, "SHA256SUMS")) as file:
        listing = dict(reversed(line.split()) for line in file if line.strip())
    assert listing == {name: zoo.sha256(os.path.join(folder, name)) for name in _FILES if name != "SHA256SUMS"}
    with open(os.path.join(folder, "README.md")) as file:
        card = file.read()
    assert card.startswith("# tiny\n") and "A tiny test model." in card and "## Provenance" in card
    # The user's own provenance notes survive; save()'s keys describe this save.
    other = str(tmp_path / "other")
    written = zoo.save(model, other, {"provenance": {"trained_on": "laptop", "backend": "stale"}}, "# mine\n")
    assert written["name"] == "other" and written["provenance"]["trained_on"] == "laptop"
    assert written["provenance"]["backend"] == keras.backend.backend()
    with open(os.path.join(other, "README.md")) as file:
        assert file.read() == "# mine\n"
    with pytest.raises(ValueError, match="card says n_neurons=7 but the model has 6"):
        zoo.save(model, str(tmp_path / "wrong"), {"n_neurons": 7})


@pytest.mark.parametrize("name", ["model.weights.h5", "config.json", "metadata.json", "README.md"])
def test_corrupt_altered_or_missing_files_are_named(entry, name):
    _, folder = entry
    path = os.path.join(folder, name)
    with open(path, "rb") as file:
        payload = bytearray(file.read())
    payload[len(payload) // 2] ^= 0xFF
    with open(path, "wb") as file:
        file.write(payload)
    with pytest.raises(zoo.ZooError, match=f"{name}: checksum mismatch"):
        zoo.load_preset(SystemIdentificationModel, folder)
    os.remove(path)
    with pytest.raises(zoo.ZooError, match=f"{name}: file is missing"):
        zoo.load_preset(SystemIdentificationModel, folder)


def test_a_resealed_config_naming_code_is_refused_in_safe_mode(entry):
    _, folder = entry
    path = os.path.join(folder, "config.json")
    with open(path) as file:
        config = json.load(file)
    config["config"]["core"] = {"module": "builtins", "class_name": "eval", "config": {}, "registered_name": "eval"}
    with open(path, "w") as file:
        json.dump(config, file)
    _reseal(folder)
    with pytest.raises(zoo.ZooError, match="config.json: not a loadable model config"):
        zoo.load_preset(SystemIdentificationModel, folder)


def test_presets_list_every_shipped_entry_with_its_facts():
    entries = zoo.presets()
    assert zoo.list_presets is zoo.presets
    assert [entry["name"] for entry in entries] == zoo.list_models() and len(entries) == 8
    for entry in entries:
        assert isinstance(entry["n_neurons"], int) and len(entry["image_shape"]) == 3, entry["name"]
        for key in ("description", "input", "output", "data", "licence", "metrics"):
            assert entry[key], (entry["name"], key)
        expected_class = "Ensemble" if entry["name"] == "mouse_v1_ensemble" else "SystemIdentificationModel"
        assert entry["model_class"] == f"keras_sysid>{expected_class}"
        assert "keras_sysid_version" in entry
    by_name = {entry["name"]: entry for entry in entries}
    for name, size in (("mouse_v1_gaussian", (5335, [36, 64, 1])), ("synthetic_cnn_factorized", (1000, [48, 48, 1]))):
        assert (by_name[name]["n_neurons"], by_name[name]["image_shape"]) == size
    assert "fev" in by_name["synthetic_dog_factorized"]["metrics"]
    # The best mouse V1 models (issue 13's targets, on the test tier): they take the animal's state.
    best, behavior = by_name["mouse_v1_ensemble"]["metrics"], by_name["mouse_v1_behavior"]["metrics"]
    assert best["corr_single"] >= 0.285 and best["corr_avg"] >= 0.53 and behavior["corr_single"] >= 0.270
    for name in ("mouse_v1_ensemble", "mouse_v1_behavior"):
        assert zoo.metadata(name)["input_names"] == ["images", "behavior", "pupil_center"]


def test_a_preset_of_another_class_is_refused(entry, tmp_path, images):
    _, folder = entry
    with pytest.raises(zoo.ZooError, match="config.json: holds a .*SystemIdentificationModel, which is not a Tweaked"):
        zoo.load_preset(TweakedModel, folder)
    tweaked_folder = str(tmp_path / "tweaked")
    zoo.save(_tiny_model(TweakedModel), tweaked_folder)
    assert type(zoo.load_preset(TweakedModel, tweaked_folder)) is TweakedModel
    assert type(zoo.load_preset(SystemIdentificationModel, tweaked_folder)) is TweakedModel  # a subclass is fine
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    plain_folder = str(tmp_path / "plain")
    zoo.save(plain, plain_folder, {"name": "plain"})
    with pytest.raises(zoo.ZooError, match="config.json: holds a Sequential, which is not a SystemIdentificationModel"):
        zoo.load_preset(SystemIdentificationModel, plain_folder)
    with pytest.raises(zoo.ZooError, match="config.json: holds a Sequential"):
        zoo.load(plain_folder)
    assert isinstance(zoo.load_preset(keras.Model, plain_folder), keras.Sequential)


def _evaluate(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, os.path.join(_ROOT, "tools", "evaluate.py"), *args],
        capture_output=True, text=True, env=env, timeout=300,
    )


def test_evaluate_scores_a_synthetic_entry_against_its_truth_without_data(tmp_path):
    from keras_sysid import evaluation, metrics
    from keras_sysid.experiments.presets import SyntheticRunConfig

    config = SyntheticRunConfig(ground_truth="cnn", n_neurons=8, n_types=2, image_size=20, n_train=32)
    population = config.population()
    model = ks.build_model(8, (20, 20), core={"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [9, 3]})
    folder = str(tmp_path / "tiny_cnn")
    zoo.save(model, folder, {"name": "tiny_cnn", "config": dataclasses.asdict(config)})
    result = _evaluate("--model", folder)
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    card_keys = {"fev", "fev_median", "rf_error_px", "frac_rf_within_1px", "corr_test"}
    assert set(scores) == {"model", "data", "tier"} | card_keys
    truth = evaluation.scores_against_truth(model, population.test)
    distance = metrics.rf_distance(model.rf_positions(), population.locations)
    np.testing.assert_allclose(scores["fev"], np.mean(truth["fev"]), rtol=1e-5)
    np.testing.assert_allclose(scores["corr_test"], np.mean(truth["correlation"]), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(scores["rf_error_px"], np.median(distance), rtol=1e-6)
    np.testing.assert_allclose(scores["frac_rf_within_1px"], np.mean(distance <= 1.0))


# What issue 15 asks every card to state (metadata.json keys; README.md headings).
_CARD_FACTS = ("input", "input_scale", "output", "neuron_ids", "architecture", "trained_with", "training",
               "intended_use", "limitations", "licence", "metrics")
_CARD_HEADINGS = ("## Inputs and outputs", "## Architecture", "## Training", "## Intended use", "## Known limitations",
                  "## Evaluation", "## Provenance", "## Loading")


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_shipped_card_is_complete(name):
    facts = zoo.metadata(name)
    for key in _CARD_FACTS:
        assert facts.get(key), (name, key)
    training = facts["training"]
    if isinstance(training, dict):  # a fitted model: epochs and the rule that stopped it
        assert "epochs_trained" in training and "early stopping" in training["stopping_rule"]
    assert "provenance" in facts or ("saved_on" in facts and "keras_version" in facts["card_checked_with"])
    with open(os.path.join(zoo._resolve(name), "README.md")) as file:
        card = file.read()
    for heading in _CARD_HEADINGS:
        assert heading in card, (name, heading)
    if name.startswith("mouse_v1"):
        assert "50 of the 100 published test images" in card and "unit_ids" in card


def test_rewrite_card_keeps_the_model_files_byte_for_byte(tmp_path):
    folder = str(tmp_path / "entry")
    shutil.copytree(zoo._resolve("synthetic_cnn_groundtruth"), folder)
    before = {name: zoo.sha256(os.path.join(folder, name)) for name in ("config.json", "model.weights.h5")}
    facts = zoo.rewrite_card(folder, {"intended_use": ["Testing a card rewrite."]})
    assert {name: zoo.sha256(os.path.join(folder, name)) for name in before} == before
    zoo.verify(folder)
    assert zoo.metadata(folder)["intended_use"] == ["Testing a card rewrite."] == facts["intended_use"]
    assert facts["card_checked_with"]["keras_version"] == keras.__version__
    with open(os.path.join(folder, "README.md")) as file:
        assert "- Testing a card rewrite." in file.read()
    with pytest.raises(ValueError, match="keeps the entry's own 'provenance'"):
        zoo.rewrite_card(folder, {"provenance": {}})
