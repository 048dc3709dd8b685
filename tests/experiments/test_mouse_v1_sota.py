"""The mouse V1 ablation runner on a tiny static*-preproc0 tree: order of work, choices, resume."""

import json
import os
import shutil

import numpy as np
import pytest
from static_tree import N_NEURONS, write_tree

from keras_sysid.data import RecordingError, load_static
from keras_sysid.ensemble import Ensemble
from keras_sysid import zoo
from keras_sysid.experiments import mouse_v1_sota, zoo_recipes
from keras_sysid.experiments.comparison import StoredRunMismatch
from keras_sysid.experiments.presets import SOTA_VARIANTS, FitSettings

_SETTINGS = FitSettings(max_epochs=1, batch_size=8)


def test_variants_are_cumulative_and_take_the_inputs_they_use():
    assert list(SOTA_VARIANTS)[:2] == ["gaussian", "lurz_core"]
    assert mouse_v1_sota.needs(SOTA_VARIANTS["lurz_core"]) == ("images",)
    assert mouse_v1_sota.needs(SOTA_VARIANTS["behavior_channels"]) == ("images", "behavior")
    assert mouse_v1_sota.needs(SOTA_VARIANTS["modulator"]) == ("images", "behavior", "pupil_center")
    factorized = mouse_v1_sota.factorized_variant(SOTA_VARIANTS["behavior_channels"])
    assert factorized["readout"]["type"] == "factorized" and factorized["shifter"] == {}
    assert factorized["core"] == SOTA_VARIANTS["behavior_channels"]["core"] and factorized["behavior_channels"]


def test_build_variant_uses_the_data_state(tmp_path):
    data = load_static(write_tree(str(tmp_path)))
    model = mouse_v1_sota.build_variant(SOTA_VARIANTS["modulator"], data, seed=0)
    assert model.input_names == ("images", "behavior", "pupil_center")
    train = data.indices("train")
    np.testing.assert_allclose(model.behavior_stats["mean"], data.behavior[train].mean(axis=0), rtol=1e-5)
    coordinates = model.readout.cortical_coordinates.numpy()
    assert np.allclose(coordinates.mean(axis=0), 0, atol=1e-5) and np.allclose(coordinates.std(axis=0), 1, atol=1e-4)
    prediction = model.predict(data.model_inputs("test", model.input_names), verbose=0)
    assert prediction.shape == (6, N_NEURONS) and np.all(np.isfinite(prediction))


def test_a_variant_needing_behaviour_fails_before_any_fit(tmp_path):
    tree = write_tree(str(tmp_path))
    shutil.rmtree(os.path.join(tree, "data", "behavior"))
    with pytest.raises(RecordingError, match="has no behavior"):
        mouse_v1_sota.run_mouse_v1_sota(tree, str(tmp_path / "out"), variants=("lurz_core", "behavior_channels"),
                                        settings=_SETTINGS, ensemble_size=0, log=lambda line: None)
    assert not os.path.exists(tmp_path / "out" / "lurz_core")


def test_ablation_chooses_on_validation_then_scores_test_once(tmp_path):
    tree = write_tree(str(tmp_path))
    out = str(tmp_path / "out")
    lines = []
    rows = mouse_v1_sota.run_mouse_v1_sota(tree, out, variants=("lurz_core", "shifter"), settings=_SETTINGS,
                                           ensemble_size=2, verbose=0, log=lines.append)
    with open(os.path.join(out, "choices.json")) as file:
        choices = json.load(file)
    best = choices["best_variant"]
    assert best == max(choices["validation"], key=choices["validation"].get)
    names = [row["model"] for row in rows]
    assert names[:2] == ["lurz_core", "shifter"] and names[2] == f"ensemble of 2 x {best}"
    assert names[3] == "factorized_shifter"
    # Every fit comes before the first test score.
    first_test = next(i for i, line in enumerate(lines) if line.startswith("  test "))
    assert all("fitting" not in line for line in lines[first_test:])
    assert os.path.exists(os.path.join(out, f"{best}_seed1", "model.keras"))
    ensemble = rows[2]
    assert ensemble["parameters"] == 2 * next(row["parameters"] for row in rows if row["model"] == best)
    assert -1.0 <= ensemble["val_correlation"] <= 1.0
    # Only models that take the animal's state predict differences between repeats of one image.
    trial_corr = {row["model"]: row["trial_corr"] for row in rows}
    assert trial_corr["lurz_core"] == 0.0 and trial_corr["shifter"] != 0.0
    with open(os.path.join(out, "trial_variability.json")) as file:
        variability = json.load(file)
    assert 0.0 < variability["trial_variance_fraction"] <= 1.0
    assert {"linear_behavior", "linear_pupil", "linear_state"} <= set(variability)
    # A second run reads every fit back.
    again = []
    rerun = mouse_v1_sota.run_mouse_v1_sota(tree, out, variants=("lurz_core", "shifter"), settings=_SETTINGS,
                                            ensemble_size=2, verbose=0, log=again.append)
    assert not any("fitting" in line for line in again)
    assert [row["corr_single"] for row in rerun] == pytest.approx([row["corr_single"] for row in rows], abs=1e-6)
    # The zoo entries come from the run's folder: the ensemble of the best, and the best state-aware variant.
    ensemble, facts, card = zoo_recipes.mouse_v1_sota("mouse_v1_ensemble", tree, out)
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == 2
    assert facts["metrics"]["corr_single"] == pytest.approx(rows[2]["corr_single"], abs=1e-6)
    zoo.save(ensemble, str(tmp_path / "entry"), facts, card)
    assert isinstance(zoo.load(str(tmp_path / "entry")), Ensemble)
    with open(tmp_path / "entry" / "README.md") as file:  # the card of the facts as saved
        written = file.read()
    assert "## Architecture" in written and "## Provenance" in written and "chosen_on_validation" not in written
    behaviour, facts, card = zoo_recipes.mouse_v1_sota("mouse_v1_behavior", tree, out)
    assert behaviour.input_names == ("images", "behavior", "pupil_center") and "pupil_center" in facts["input"]
    assert "It takes a dict with keys ['images', 'behavior', 'pupil_center']" in card(facts)
    # Other settings are refused before anything is fitted.
    with pytest.raises(StoredRunMismatch, match="settings.seed"):
        mouse_v1_sota.run_mouse_v1_sota(tree, out, variants=("lurz_core",), settings=FitSettings(max_epochs=1, batch_size=8, seed=3),
                                        ensemble_size=0, verbose=0, log=lambda line: None)


def test_ensemble_of_the_run_is_the_mean_of_its_members(tmp_path):
    data = load_static(write_tree(str(tmp_path)))
    members = [mouse_v1_sota.build_variant(SOTA_VARIANTS["shifter"], data, seed=s) for s in (0, 1)]
    ensemble = Ensemble(members)
    inputs = data.model_inputs("test", ensemble.input_names)
    expected = np.mean([m.predict(inputs, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.predict(inputs, verbose=0), expected, rtol=1e-5, atol=1e-6)
