"""Synthetic truth with known eye shifts and behaviour gains, and the proof experiment on it."""

import dataclasses

import numpy as np
import pytest

from keras_sysid.behavior import translate_feature_maps
from keras_sysid.data.synthetic import make_population, shift_images
from keras_sysid.experiments import modulation

_SMALL = dict(n_neurons=12, image_size=24, n_train=32, n_validation=8, n_test=8)


def test_without_modulation_the_population_is_unchanged():
    plain = make_population("dog", **_SMALL)
    for flags in ({"behavior_gain": False, "eye_shift": False}, {"behavior_gain": True}):
        other = make_population("dog", **_SMALL, **flags)
        np.testing.assert_array_equal(other.train.images, plain.train.images)
        np.testing.assert_array_equal(other.locations, plain.locations)
    assert plain.train.behavior is None and plain.test.true_shift is None


def test_gain_is_multiplicative_and_the_shift_moves_what_cells_see():
    gained = make_population("dog", **_SMALL, behavior_gain=True)
    plain = make_population("dog", **_SMALL)
    np.testing.assert_allclose(gained.train.clean_responses / gained.train.true_gain,
                               plain.train.clean_responses, rtol=1e-5)
    assert np.all(gained.train.true_gain > 0) and np.ptp(np.log(gained.train.true_gain)) > 1.0
    np.testing.assert_array_equal(gained.train.true_shift, 0)

    shifted = make_population("dog", **_SMALL, eye_shift=True)
    split = shifted.train
    assert split.behavior.shape == (32, 3) and split.pupil_center.shape == (32, 2)
    assert 0.5 < np.abs(split.true_shift).max() <= 3.0
    # The truth applied to the presented image moved by the true shift gives the clean rates.
    seen = shift_images(split.images, split.true_shift)
    np.testing.assert_allclose(shifted.model.respond(seen), split.clean_responses, rtol=1e-4, atol=1e-5)


def test_shift_convention_matches_the_models_translation():
    images = np.random.default_rng(0).normal(size=(2, 9, 11, 1)).astype("float32")
    shift = np.array([[2.0, -1.0], [0.5, 1.25]], "float32")
    moved = shift_images(images, shift)
    assert moved[0, 3, 5, 0] == images[0, 5, 4, 0]  # out[i, j] = in[i + 2, j - 1]
    np.testing.assert_allclose(np.asarray(translate_feature_maps(images, shift)), moved, atol=1e-5)


def test_seeded_state_is_deterministic():
    a = make_population("cnn", **_SMALL, n_types=2, behavior_gain=True, eye_shift=True)
    b = make_population("cnn", **_SMALL, n_types=2, behavior_gain=True, eye_shift=True)
    for field in ("behavior", "pupil_center", "true_gain", "true_shift", "clean_responses"):
        np.testing.assert_array_equal(getattr(a.test, field), getattr(b.test, field))


def test_proof_runs_scores_and_is_read_back(tmp_path):
    settings = modulation.ModulationProofSettings(n_neurons=8, image_size=24, n_train=128, max_epochs=1)
    result = modulation.run_modulation_proof(str(tmp_path), settings, verbose=0, log=lambda line: None)
    recovery = result["modulated"]["recovery"]
    for key in ("shift_correlation_row", "shift_correlation_column", "gain_correlation_median", "gain_correlation_pooled"):
        assert np.isfinite(recovery[key])
    assert set(result["unmodulated"]) == {"image_only", "behaviour_aware"}
    lines = []
    again = modulation.run_modulation_proof(str(tmp_path), settings, verbose=0, log=lines.append)
    assert again["modulated"]["recovery"]["shift_correlation_row"] == pytest.approx(recovery["shift_correlation_row"])
    assert lines[0].startswith("already run")
    lines.clear()
    modulation.run_modulation_proof(str(tmp_path), dataclasses.replace(settings, n_train=64), verbose=0, log=lines.append)
    assert "another run" in lines[0]
