"""``keras-sysid evaluate --seeds``: fits of the same neurons compared, run as users run it (tiny saved models)."""

import json
import os
import subprocess
import sys

import pytest

_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
_KERAS_SYSID = os.path.join(os.path.dirname(sys.executable), "keras-sysid")


def _run(*args):
    return subprocess.run([_KERAS_SYSID, "evaluate", *args], capture_output=True, text=True, env=_ENV, timeout=600,
                          check=False)


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    """Two Gaussian-readout models of 40 neurons: one in a run folder (``run/model.keras``), one a ``.keras``
    file; and an ensemble of the two."""
    import keras

    import keras_sysid as ks

    folder = tmp_path_factory.mktemp("seeds")
    models = []
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        models.append(ks.build_model(n_neurons=40, image_shape=(16, 16), readout="gaussian",
                                     core={"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [5, 3]}))
    os.makedirs(folder / "run")
    paths = {"run": str(folder / "run"), "file": str(folder / "seed1.keras"), "ensemble": str(folder / "both.keras")}
    models[0].save(str(folder / "run" / "model.keras"))
    models[1].save(paths["file"])
    ks.Ensemble(models).save(paths["ensemble"])
    return paths


def test_seeds_compares_run_folders_and_files_and_refuses_flags_of_scoring_one_model(fits):
    result = _run("--seeds", f"{fits['run']},{fits['file']}", "--n_clusters", "2,4")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"loading {fits['run']} ..." and lines[2].startswith("comparing 2 fits (1 pairs)")
    report = json.loads(lines[-1])
    assert report["models"] == [fits["run"], fits["file"]] and report["n_neurons"] == 40 and report["n_pairs"] == 1
    assert set(report["feature_cluster_ari"]) == set(report["feature_cluster_ari_chance"]) == {"2", "4"}
    assert -1.0 <= report["position_corr"]["row"]["mean"] <= 1.0
    assert report["position_distance_px"]["mean"] > 0  # two random fits do not place neurons alike
    # Flags of scoring one model are refused before anything is loaded.
    mixed = _run("--seeds", f"{fits['run']},{fits['file']}", "--data", "recording.zip")
    assert mixed.returncode != 0 and "--seeds compares fits with each other; it takes no --data" in mixed.stderr
    assert "loading" not in mixed.stdout


def test_a_lone_ensemble_gives_its_members_and_an_ensemble_among_fits_is_refused(fits, capsys):
    from keras_sysid.cli import _seeds

    names, models = _seeds.load_fits([fits["ensemble"]])
    assert names == [f"{fits['ensemble']}[0]", f"{fits['ensemble']}[1]"]
    assert [model.n_neurons for model in models] == [40, 40]
    assert capsys.readouterr().out == f"loading {fits['ensemble']} ...\n"
    with pytest.raises(ValueError, match="is an ensemble: give it alone"):
        _seeds.load_fits([fits["file"], fits["ensemble"]])
