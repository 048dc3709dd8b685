"""Stored fits are reused only by runs of the same key (data content, preset, settings, seed)."""

import json
import os
import shutil

import numpy as np
import pytest
from static_tree import TIERS, write_tree

from keras_sysid.data import RecordingError, load_static
from keras_sysid.experiments import comparison, rivals
from keras_sysid.experiments.presets import FitSettings

SETTINGS = FitSettings(max_epochs=1, batch_size=4)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """Data sets A (zip and folder) and B (same name, other content), and A's lnp fitted into a folder."""
    root = tmp_path_factory.mktemp("keys")
    a_zip = write_tree(str(root / "zip"), zipped=True)
    a_folder = write_tree(str(root / "folder"))
    b_zip = write_tree(str(root / "b"), seed=1, zipped=True)
    fitted = str(root / "fitted")
    rows = comparison.run_mouse_v1(a_zip, fitted, models=("lnp",), settings=SETTINGS, verbose=0, log=lambda m: None)
    return {"a_zip": a_zip, "a_folder": a_folder, "b_zip": b_zip, "fitted": fitted, "rows": rows}


@pytest.fixture
def out(trees, tmp_path):
    """A copy of the folder holding A's fitted lnp."""
    folder = str(tmp_path / "out")
    shutil.copytree(trees["fitted"], folder)
    return folder


def _run(data, out, settings=SETTINGS, **kwargs):
    messages = []
    rows = comparison.run_mouse_v1(data, out, models=("lnp",), settings=settings, verbose=0, log=messages.append, **kwargs)
    return rows, messages


def _no_fit(*args, **kwargs):
    raise AssertionError("fit_rival was called")


def test_fit_key_is_of_content_preset_settings_and_seed(trees):
    a_zip, a_folder, b = (load_static(trees[k]) for k in ("a_zip", "a_folder", "b_zip"))
    assert a_zip.name == b.name
    key = rivals.fit_key("lnp", a_zip, SETTINGS)
    assert key == rivals.fit_key("lnp", a_folder, SETTINGS)
    assert key["data"] == a_zip.fingerprint() and key["settings"]["seed"] == 0
    for other in (rivals.fit_key("lnp", b, SETTINGS), rivals.fit_key("gaussian", a_zip, SETTINGS),
                  rivals.fit_key("lnp", a_zip, FitSettings(max_epochs=1, batch_size=4, seed=1))):
        assert other != key
    stored = trees["rows"][0]
    assert json.loads(json.dumps(key)) == stored["key"] and stored["data_name"] == a_zip.name


def test_other_data_in_the_same_folder_is_refused_and_the_same_data_reused(trees, out, monkeypatch):
    results = os.path.join(out, "lnp", "results.json")
    with open(results) as file:
        stored = file.read()
    monkeypatch.setattr(rivals, "fit_rival", _no_fit)
    with pytest.raises(comparison.StoredRunMismatch) as raised:
        _run(trees["b_zip"], out)
    message = str(raised.value)
    b_sha, a_sha = load_static(trees["b_zip"]).fingerprint(), trees["rows"][0]["key"]["data"]
    assert "data fingerprint differs" in message and results in message
    assert b_sha in message and a_sha in message and trees["a_zip"] in message and trees["b_zip"] in message
    assert "--overwrite" in message and os.path.join(out, "lnp") in message
    with open(results) as file:
        assert file.read() == stored  # untouched
    # The same content, read from the extracted folder: reused, not refitted.
    rows, messages = _run(trees["a_folder"], out)
    assert any("already fitted" in m for m in messages)
    assert rows[0]["corr_single"] == trees["rows"][0]["corr_single"]


def test_overwrite_refits_a_fit_of_other_data(trees, out):
    rows, messages = _run(trees["b_zip"], out, overwrite=True)
    assert any(m.startswith("overwriting") and "data fingerprint differs" in m for m in messages)
    assert not any("already fitted" in m for m in messages)
    b_sha = load_static(trees["b_zip"]).fingerprint()
    with open(os.path.join(out, "lnp", "results.json")) as file:
        assert json.load(file)["key"]["data"] == b_sha
    assert rows[0]["key"]["data"] == b_sha
    _, messages = _run(trees["b_zip"], out)
    assert any("already fitted" in m for m in messages)


@pytest.mark.parametrize("change, expected", [
    ({"max_epochs": 2}, "settings.max_epochs: stored 1, this run 2"),
    ({"seed": 1}, "settings.seed: stored 0, this run 1"),
])
def test_changed_settings_or_seed_are_not_reused(trees, out, monkeypatch, change, expected):
    monkeypatch.setattr(rivals, "fit_rival", _no_fit)
    settings = FitSettings(**{"max_epochs": 1, "batch_size": 4, **change})
    with pytest.raises(comparison.StoredRunMismatch, match=expected):
        _run(trees["a_zip"], out, settings=settings)
    # Nor is a resumable backup of the old settings (here: a finished one without results.json).
    os.remove(os.path.join(out, "lnp", "results.json"))
    with pytest.raises(comparison.StoredRunMismatch) as raised:
        _run(trees["a_zip"], out, settings=settings)
    assert os.path.join(out, "lnp", "backup") in str(raised.value) and expected.split(":")[0] in str(raised.value)


def test_results_without_a_key_are_not_trusted(trees, out, monkeypatch):
    path = os.path.join(out, "lnp", "results.json")
    with open(path) as file:
        row = json.load(file)
    del row["key"]
    with open(path, "w") as file:
        json.dump(row, file)
    monkeypatch.setattr(rivals, "fit_rival", _no_fit)
    with pytest.raises(comparison.StoredRunMismatch, match="no run key"):
        _run(trees["a_zip"], out)
    # Nor is a backup keyed by the data's name only, as before content fingerprints.
    os.remove(path)
    pointer = os.path.join(out, "lnp", "backup", "progress.json")
    with open(pointer) as file:
        progress = json.load(file)
    progress["fingerprint"]["data"] = row["data_name"]
    with open(pointer, "w") as file:
        json.dump(progress, file)
    with pytest.raises(comparison.StoredRunMismatch, match="written before content fingerprints"):
        _run(trees["a_zip"], out)


def _rewrite_trials(tree, tiers=None, image_ids=None):
    folder = os.path.join(tree, "meta", "trials")
    if tiers is not None:
        np.save(os.path.join(folder, "tiers.npy"), np.array(tiers))
    if image_ids is not None:
        np.save(os.path.join(folder, "frame_image_id.npy"), np.array(image_ids, dtype="int64"))


@pytest.mark.parametrize("problem, expected", [
    ("no_test", "has no 'test' trials"),
    ("no_repeats", "0 shown more than once"),
])
def test_data_that_cannot_be_scored_fails_before_any_fit(tmp_path, monkeypatch, problem, expected):
    tree = write_tree(str(tmp_path))
    if problem == "no_test":
        _rewrite_trials(tree, tiers=["validation" if tier == "test" else tier for tier in TIERS])
    else:
        _rewrite_trials(tree, image_ids=range(len(TIERS)))
    monkeypatch.setattr(rivals, "fit_rival", _no_fit)
    out = str(tmp_path / "out")
    with pytest.raises(RecordingError, match=expected) as raised:
        _run(tree, out)
    assert tree in str(raised.value)
    assert not os.path.exists(out)  # no folder, no backup: nothing started
