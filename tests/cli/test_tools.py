"""The command-line tools, run as users run them (subprocesses, tiny data)."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from static_tree import TIERS, write_tree

from keras_sysid.experiments import rivals
from keras_sysid.data import load_static

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(tool, *args, cwd=None, quiet=True):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3") if quiet else {
        key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, os.path.join(_ROOT, "tools", tool), *args],
        capture_output=True, text=True, env=env, timeout=600, cwd=cwd,
    )
    return result


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tools")
    data = load_static(write_tree(str(folder)))
    model = rivals.build_rival("factorized", data)
    path = str(folder / "model.keras")
    model.save(path)
    return path


def test_evaluate_prints_scores_as_last_line_on_a_test_only_file(saved_model, tmp_path):
    tree = write_tree(str(tmp_path))
    # Keep only the test trials, renumbered 0..n-1 as in a published file.
    keep = [i for i, tier in enumerate(TIERS) if tier == "test"]
    for folder in ("images", "responses", "behavior", "pupil_center"):
        arrays = [np.load(os.path.join(tree, "data", folder, f"{i}.npy")) for i in keep]
        for name in os.listdir(os.path.join(tree, "data", folder)):
            os.remove(os.path.join(tree, "data", folder, name))
        for new, array in enumerate(arrays):
            np.save(os.path.join(tree, "data", folder, f"{new}.npy"), array)
    for name in os.listdir(os.path.join(tree, "meta", "trials")):
        path = os.path.join(tree, "meta", "trials", name)
        np.save(path, np.load(path)[keep])
    result = _run("evaluate.py", "--model", saved_model, "--data", tree)
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("corr_single", "corr_avg", "feve", "frac_oracle", "n_neurons", "n_trials"):
        assert key in scores
    assert scores["n_trials"] == 6 and scores["n_neurons"] == 5


def test_evaluate_names_a_neuron_count_mismatch_and_a_missing_model(saved_model, tmp_path):
    other = write_tree(str(tmp_path), n_neurons=7)
    result = _run("evaluate.py", "--model", saved_model, "--data", other)
    assert result.returncode != 0 and "the recording has 7 neurons, the model 5" in result.stderr
    result = _run("evaluate.py", "--model", str(tmp_path / "none.keras"), "--data", other)
    assert result.returncode != 0 and "none.keras: no such model file" in result.stderr


def test_reproduce_mouse_v1_writes_table_files_and_figures(tmp_path):
    data = write_tree(str(tmp_path), zipped=True)
    out = str(tmp_path / "out")
    result = _run("reproduce.py", "--experiment", "mouse_v1", "--data", data, "--models", "lnp,factorized",
                  "--max_epochs", "1", "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    assert [row["model"] for row in rows] == ["lnp", "factorized"]
    for name in ("mouse_v1.json", "mouse_v1.csv", "corr_factorized_vs_rivals.png", "retinotopy_factorized.png",
                 "factorized/model.keras", "lnp/scores.npz"):
        assert os.path.exists(os.path.join(out, name)), name
    with open(os.path.join(out, "mouse_v1.json")) as file:
        assert "r_row" in json.load(file)[1]["retinotopy"]
    again = _run("reproduce.py", "--experiment", "mouse_v1", "--data", data, "--models", "lnp,factorized",
                 "--max_epochs", "1", "--out", out)
    assert again.returncode == 0 and "already fitted" in again.stdout


def test_reproduce_never_reports_results_of_other_data(tmp_path):
    # The reported bug: B (another file of the same name) in A's folder printed A's scores as B's.
    a = write_tree(str(tmp_path / "a"), zipped=True)
    b = write_tree(str(tmp_path / "b"), seed=1, zipped=True)
    out = str(tmp_path / "out")
    args = ("--experiment", "mouse_v1", "--models", "lnp", "--max_epochs", "1", "--out", out)
    first = _run("reproduce.py", "--data", a, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    scores = first.stdout.strip().splitlines()[-1]
    other = _run("reproduce.py", "--data", b, *args)
    assert other.returncode != 0
    assert "data fingerprint differs" in other.stderr and os.path.join(out, "lnp") in other.stderr
    assert "--overwrite" in other.stderr and "Traceback" not in other.stderr
    corr_single = f"{json.loads(scores)[0]['corr_single']:.3f}"
    assert "already fitted" not in other.stdout and corr_single not in other.stdout
    again = _run("reproduce.py", "--data", a, *args)
    assert again.returncode == 0 and "already fitted" in again.stdout
    assert again.stdout.strip().splitlines()[-1] == scores


def test_transfer_tool_runs_on_a_tiny_synthetic_entry(tmp_path):
    import dataclasses

    import keras_sysid as ks
    from keras_sysid import zoo
    from keras_sysid.experiments.presets import SyntheticRunConfig

    config = SyntheticRunConfig(ground_truth="cnn", n_neurons=8, n_types=2, image_size=20, n_train=32)
    model = ks.build_model(8, (20, 20), core={"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [9, 3]})
    folder = str(tmp_path / "tiny_cnn")
    zoo.save(model, folder, {"name": "tiny_cnn", "config": dataclasses.asdict(config)}, "# tiny\n")
    result = _run("transfer.py", "--pretrained", folder, "--sizes", "16,32", "--n_neurons", "4", "--max_epochs", "1",
                  "--seeds", "1,2", "--results", str(tmp_path / "fits.json"))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    assert [row["n_train"] for row in rows] == [16, 32]
    assert {"fev_transferred", "fev_fresh", "fev_fresh_std", "fev_fresh_per_seed"} <= set(rows[0])
    assert len(rows[0]["fev_fresh_per_seed"]) == 2 and "±" in result.stdout
    with open(tmp_path / "fits.json") as file:
        assert len(json.load(file)["fits"]) == 4


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed")
def test_reproduce_runs_under_the_jax_backend_and_keys_its_fits_by_backend(tmp_path):
    data = write_tree(str(tmp_path), zipped=True)
    out = str(tmp_path / "out")
    args = ("--experiment", "mouse_v1", "--data", data, "--models", "gaussian", "--max_epochs", "1", "--out", out)
    under_jax = _run("reproduce.py", "--backend", "jax", *args)
    assert under_jax.returncode == 0, under_jax.stderr[-3000:]
    assert np.isfinite(json.loads(under_jax.stdout.strip().splitlines()[-1])[0]["corr_single"])
    # A fit made under JAX is not reused (or reported) as TensorFlow's.
    under_tensorflow = _run("reproduce.py", "--backend", "tensorflow", *args)
    assert under_tensorflow.returncode != 0 and "backend" in under_tensorflow.stderr
    assert '"jax"' in under_tensorflow.stderr and '"tensorflow"' in under_tensorflow.stderr


def test_an_unknown_backend_is_named_before_anything_runs():
    result = _run("train.py", "--backend", "theano")
    assert result.returncode != 0 and "--backend must be one of tensorflow, jax, torch; got 'theano'" in result.stderr


def test_tools_start_without_tensorflow_banner_noise():
    result = _run("train.py", "--help", quiet=False)
    assert "--out" in result.stdout  # absl exits --help with status 1
    for noise in ("I0000", "oneDNN", "cuda", "CUDA", "absl::InitializeLog", "cpu_feature_guard"):
        assert noise not in result.stderr, result.stderr


def test_train_keeps_its_model_in_a_default_run_folder_and_resumes_it(tmp_path):
    args = ("--n_neurons", "20", "--image_size", "16", "--n_train", "256", "--epochs", "1", "--mixed_precision", "false")
    first = _run("train.py", *args, cwd=str(tmp_path))
    assert first.returncode == 0, first.stderr[-3000:]
    folder_line = next(line for line in first.stdout.splitlines() if line.startswith("run folder: "))
    folder = folder_line.split()[2]
    assert folder.startswith(os.path.join("runs", "train", "dog_factorized_"))
    assert (tmp_path / folder / "model.keras").exists() and (tmp_path / folder / "results.json").exists()
    again = _run("train.py", *args, cwd=str(tmp_path))
    assert again.returncode == 0 and folder_line in again.stdout
    assert "a finished run is read back, not refitted" in again.stdout and "Epoch 1/" not in again.stdout
    for key in ("fev", "rf_error_px", "epochs"):
        assert json.loads(again.stdout.strip().splitlines()[-1])[key] == json.loads(first.stdout.strip().splitlines()[-1])[key]
    other = _run("train.py", *args, "--seed", "1", cwd=str(tmp_path))
    assert other.returncode == 0 and folder_line not in other.stdout


def test_export_refuses_to_overwrite_unless_asked(saved_model, tmp_path):
    out = tmp_path / "serving"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    refused = _run("export.py", "--model", saved_model, "--out", str(out))
    assert refused.returncode != 0 and "exists; pass --overwrite" in refused.stderr
    assert (out / "keep.txt").read_text() == "mine"
    # --overwrite replaces SavedModels only, never a folder of other files.
    kept = _run("export.py", "--model", saved_model, "--out", str(out), "--overwrite")
    assert kept.returncode != 0 and "no saved_model.pb" in kept.stderr and (out / "keep.txt").exists()
    (out / "keep.txt").unlink()
    first = _run("export.py", "--model", saved_model, "--out", str(out), "--overwrite")
    assert first.returncode == 0, first.stderr[-3000:]
    replaced = _run("export.py", "--model", saved_model, "--out", str(out), "--overwrite")
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    assert (out / "saved_model.pb").exists() and not (tmp_path / "serving.exporting").exists()


def test_evaluate_refuses_a_tier_without_repeats_before_computing(saved_model, tmp_path):
    result = _run("evaluate.py", "--model", saved_model, "--data", write_tree(str(tmp_path)), "--tier", "train")
    assert result.returncode != 0 and "No image of the 'train' tier" in result.stderr
    assert "RuntimeWarning" not in result.stderr and "reading" in result.stdout


def test_insilico_tool_writes_meis_table_and_figures_in_the_order_given(tmp_path):
    out = tmp_path / "insilico"
    result = _run("insilico.py", "--model", "synthetic_dog_factorized", "--neurons", "5,1-2", "--steps", "20",
                  "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.load(out / "meis.npy").shape == (3, 48, 48, 1)
    assert np.load(out / "neurons.npy").tolist() == [5, 1, 2]
    with open(out / "neurons.json") as file:
        rows = json.load(file)["neurons"]
    assert [row["neuron"] for row in rows] == [5, 1, 2]
    for key in ("mei_activation", "rf_row", "rf_col", "rf_size", "preferred_orientation_deg", "osi"):
        assert all(np.isfinite(row[key]) for row in rows), key
    for name in ("neurons.csv", "meis.png", "rf_centres.png", "tuning.png", "tuning_responses.npy"):
        assert (out / name).exists(), name
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["n_neurons"] == 3 and "osi" in summary["median"]
    bad = _run("insilico.py", "--model", "synthetic_dog_factorized", "--neurons", "0,1000", "--out", str(out))
    assert bad.returncode != 0 and "Unknown neuron index [1000]: the model predicts 1000 neurons" in bad.stderr
    backwards = _run("insilico.py", "--model", "synthetic_dog_factorized", "--neurons", "9-3", "--out", str(out))
    assert backwards.returncode != 0 and "runs backwards" in backwards.stderr
