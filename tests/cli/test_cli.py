"""The ``keras-sysid`` command line, run as users run it (subprocesses, tiny data)."""

import ast
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig

import pytest
from static_tree import write_tree

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_COMMANDS = ("fit", "evaluate", "export", "insilico", "reproduce", "transfer", "benchmark", "zoo")
_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _run(program, *args, cwd=None, env=None):
    return subprocess.run([*program, *args], capture_output=True, text=True, env=env or _ENV, timeout=600, cwd=cwd)


def _keras_sysid(*args, cwd=None):
    # The console script installed next to this Python (pip install -e . or .).
    return _run([os.path.join(os.path.dirname(sys.executable), "keras-sysid")], *args, cwd=cwd)


def _last_json(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _imported_modules(path, top_level_only=False):
    """Every module ``path`` imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    with open(path, encoding="utf-8") as file:
        tree = ast.parse(file.read())
    names = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update([node.module, *(f"{node.module}.{alias.name}" for alias in node.names)])
    return names


def test_the_command_line_sits_above_the_library_and_starts_before_it():
    package = os.path.join(_ROOT, "keras_sysid")
    command_line = ("keras_sysid.cli", "keras_sysid_launcher")
    for folder, _, files in os.walk(package):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".py") and not path.startswith(os.path.join(package, "cli", "")) and name != "__main__.py":
                above = [module for module in _imported_modules(path) if module.startswith(command_line)]
                assert not above, (path, above)
                # The library does not import the project's experiments either (the layout's rule).
                if not path.startswith(os.path.join(package, "experiments", "")):
                    experiments = [module for module in _imported_modules(path)
                                   if module.startswith("keras_sysid.experiments")]
                    assert not experiments, (path, experiments)
    # main and _backend run before the package is imported (keras_sysid_launcher.load_early).
    for name in ("main.py", "_backend.py"):
        imported = _imported_modules(os.path.join(package, "cli", name), top_level_only=True)
        assert not any(module.split(".")[0] in ("keras_sysid", "keras", "tensorflow") for module in imported), name


def test_load_recording_reads_through_data_load_with_each_formats_options(monkeypatch, tmp_path, capsys):
    from keras_sysid import data
    from keras_sysid.cli._recordings import load_recording

    tree = write_tree(str(tmp_path))
    assert load_recording(tree).n_neurons == 5
    assert set(load_recording(tree, tiers=["test"]).tiers) == {"test"}
    calls = []
    monkeypatch.setattr(data, "load", lambda path, **options: calls.append((path, options)) or "read")
    assert load_recording("session.NWB") == "read"
    load_recording("a.nwb", tiers=["test"], nwb_options={"window": (0.1, 0.3)})
    load_recording(tree, tiers=["test"], nwb_options={"window": (0.1, 0.3)})  # NWB options are for NWB files only
    assert calls == [("session.NWB", {}), ("a.nwb", {"window": (0.1, 0.3)}), (tree, {"tiers": ["test"]})]
    assert capsys.readouterr().out == ""  # the commands print what was read, not load_recording


def test_help_lists_every_command_with_a_description_without_starting_keras():
    result = _keras_sysid("--help")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ")}
    assert set(lines) == set(_COMMANDS)
    assert "Fit a model to a recording" in lines["fit"] and "zoo" in lines["zoo"]
    assert result.stderr == ""  # nothing of TensorFlow started
    bare = _keras_sysid()
    assert bare.returncode == 2 and "commands:" in bare.stderr


def test_an_unknown_command_is_named_with_the_commands():
    result = _keras_sysid("fitt", "--data", "x")
    assert result.returncode == 2
    assert "unknown command 'fitt' (did you mean 'fit'?)" in result.stderr and ", ".join(_COMMANDS) in result.stderr
    flag_first = _keras_sysid("--backend", "jax", "fit")
    assert flag_first.returncode == 2 and "flags come after the command" in flag_first.stderr


def test_a_command_help_shows_its_usage_and_flags_without_tensorflow_banner():
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = _run([os.path.join(os.path.dirname(sys.executable), "keras-sysid")], "fit", "--help", env=env)
    assert result.returncode == 0 and result.stdout.startswith("Fit a model to a recording")
    for flag in ("--data", "--readout", "--max_epochs", "--logdir", "--backend"):
        assert flag in result.stdout, flag
    for noise in ("I0000", "oneDNN", "cuda", "absl::InitializeLog"):
        assert noise not in result.stderr, result.stderr


def test_zoo_lists_entries_and_shows_a_card():
    listed = _keras_sysid("zoo", "list")
    assert listed.returncode == 0, listed.stderr[-3000:]
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert "synthetic_dog_groundtruth" in names and "mouse_v1_gaussian" in names
    dog = next(line for line in listed.stdout.splitlines() if line.startswith("synthetic_dog_groundtruth "))
    assert "'dog' synthetic ground truth" in dog
    card = _keras_sysid("zoo", "show", "synthetic_dog_groundtruth")
    assert card.returncode == 0 and card.stdout.startswith("# synthetic_dog_groundtruth")
    unknown = _keras_sysid("zoo", "show", "synthetic_dog")
    assert unknown.returncode != 0 and "no zoo model 'synthetic_dog'" in unknown.stderr
    assert "synthetic_dog_groundtruth" in unknown.stderr


def test_python_m_keras_sysid_lists_the_commands():
    result = _run([sys.executable, "-m", "keras_sysid"], "--help")
    assert result.returncode == 0 and "commands:" in result.stdout and "  evaluate " in result.stdout


def test_fit_a_recording_writes_the_run_resumes_it_and_evaluate_scores_it(tmp_path):
    tree = write_tree(str(tmp_path))
    out = tmp_path / "run"
    args = ("fit", "--data", tree, "--readout", "gaussian", "--max_epochs", "2", "--out", str(out))
    first = _last_json(_keras_sysid(*args))
    assert first["epochs"] == 2 and first["n_neurons"] == 5 and first["spec"]["readout"]["type"] == "gaussian"
    assert "shifter" not in first["spec"]
    for name in ("model.keras", "saved_model/saved_model.pb", "results.json", "scores.npz", "backup",
                 "test_scores.png", "rf_positions.png", "retinotopy.png"):
        assert (out / name).exists(), name
    with open(out / "results.json") as file:
        assert json.load(file)["corr_single"] == first["corr_single"]
    # A finished run is read back from its backup, not refitted.
    (out / "model.keras").unlink()
    again = _keras_sysid(*args)
    assert "a finished run is read back" in again.stdout and "Epoch 1/" not in again.stdout
    assert _last_json(again)["corr_single"] == first["corr_single"] and (out / "model.keras").exists()
    scores = _last_json(_keras_sysid("evaluate", "--model", str(out / "model.keras"), "--data", tree))
    assert scores["corr_single"] == pytest.approx(first["corr_single"], abs=1e-5)


def test_fit_two_recordings_shares_one_core_and_evaluate_scores_each_session(tmp_path):
    import tensorflow as tf

    first = write_tree(str(tmp_path))
    second = write_tree(str(tmp_path), name="static2-1-1-preproc0", seed=1, n_neurons=4)
    out = tmp_path / "run"
    both = _last_json(_keras_sysid("fit", "--data", first, "--data", second, "--readout", "gaussian",
                                   "--max_epochs", "2", "--out", str(out)))
    sessions = both["sessions"]
    assert set(sessions) == {"static1_1_1_preproc0", "static2_1_1_preproc0"} and both["epochs"] == 2
    assert sessions["static2_1_1_preproc0"]["n_neurons"] == 4
    assert {"serving_static1_1_1_preproc0", "serving_static2_1_1_preproc0"} <= set(
        tf.saved_model.load(str(out / "saved_model")).signatures)
    scores = _last_json(_keras_sysid("evaluate", "--model", str(out / "model.keras"), "--data", second))
    assert scores["session"] == "static2_1_1_preproc0"
    assert scores["corr_single"] == pytest.approx(sessions["static2_1_1_preproc0"]["corr_single"], abs=1e-5)
    wrong = _keras_sysid("evaluate", "--model", str(out / "model.keras"), "--data", second, "--session", "nope")
    assert wrong.returncode != 0 and "has no session 'nope'" in wrong.stderr
    exported = _keras_sysid("export", "--model", str(out / "model.keras"), "--out", str(tmp_path / "served"))
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert ("serving_static2_1_1_preproc0: images float32 [batch, 20, 24, 1] -> responses float32 [batch, 4]"
            in exported.stdout)
    # The run's neuron ids, per session, go into the artefact.
    manifest = json.loads((tmp_path / "served" / "keras_sysid.json").read_text())
    ids = manifest["signatures"]["serving_static2_1_1_preproc0"]["neuron_ids"]
    assert isinstance(ids, list) and len(ids) == 4


def test_fit_names_what_a_recording_does_not_take(tmp_path):
    first = write_tree(str(tmp_path))
    state_without_data = _keras_sysid("fit", "--state", "shifter")
    assert state_without_data.returncode != 0 and "--state: for a recording" in state_without_data.stderr
    synthetic_flag = _keras_sysid("fit", "--data", first, "--n_neurons", "5")
    assert synthetic_flag.returncode != 0
    assert "--n_neurons: for the synthetic truth, not with --data" in synthetic_flag.stderr


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed")
def test_backend_flag_runs_the_fit_under_jax_with_the_animals_state(tmp_path):
    out, tree = tmp_path / "run", write_tree(str(tmp_path))
    result = _keras_sysid("fit", "--backend", "jax", "--data", tree, "--max_epochs", "1",
                          "--state", "shifter", "--state", "modulator", "--out", str(out))
    fitted = _last_json(result)
    assert fitted["backend"] == "jax" and "shifter" in fitted["spec"] and "modulator" in fitted["spec"]
    assert "no SavedModel under jax" in result.stdout and (out / "model.keras").exists()
    scored = _last_json(_keras_sysid("evaluate", "--backend", "jax", "--model", str(out / "model.keras"),
                                     "--data", tree))
    assert -1.0 <= scored["trial_corr"] <= 1.0 and scored["trial_corr"] != 0.0  # the state moves its predictions


def test_fit_and_evaluate_from_a_wheel_in_a_fresh_environment(tmp_path):
    """A non-editable install: the wheel's console script, its package, outside the repository."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    subprocess.run(pip + ["wheel", "--no-deps", "-w", str(wheels), _ROOT], check=True, timeout=600)
    wheel = next(wheels.glob("keras_sysid-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=600)
    python = str(venv / "bin" / "python")
    fresh_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies (and pip) come from this environment: its site folders as plain paths, after the fresh
    # environment's own, so its .pth files (an editable keras_sysid's finder among them) do not run.
    paths = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    with open(os.path.join(fresh_site, "dependencies.pth"), "w") as file:
        file.write("\n".join(paths) + "\n")
    env = {key: value for key, value in _ENV.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # --ignore-installed: pip sees this environment's keras_sysid (CI installs it non-editable) and would skip
    # the wheel as already satisfied; this installs it into the fresh environment without touching that one.
    subprocess.run([python, "-m", "pip", "--disable-pip-version-check", "-q", "install", "--no-deps", "--no-index",
                    "--ignore-installed", str(wheel)], check=True, timeout=600, env=env)
    # The package, the launcher and the zoo (package data) all come from the wheel.
    where = _run([python, "-c", "import numpy as np, keras_sysid, keras_sysid_launcher as launcher; "
                  "print(keras_sysid.__file__); print(launcher.__file__); "
                  "print(keras_sysid.zoo._resolve('synthetic_cnn_groundtruth')); "
                  "model = keras_sysid.zoo.load('synthetic_cnn_groundtruth'); "
                  "assert model.predict(np.zeros((2, 48, 48, 1), 'float32'), verbose=0).shape == (2, 1000)"],
                 cwd=str(tmp_path), env=env)
    assert where.returncode == 0, where.stderr[-3000:]
    assert all(line.startswith(fresh_site) for line in where.stdout.split()[-3:]), where.stdout
    tree, out = write_tree(str(tmp_path / "data")), tmp_path / "run"
    keras_sysid = [str(venv / "bin" / "keras-sysid")]
    fitted = _last_json(_run(keras_sysid, "fit", "--data", tree, "--readout", "gaussian", "--max_epochs", "1",
                             "--out", str(out), cwd=str(tmp_path), env=env))
    assert (out / "model.keras").exists() and (out / "saved_model" / "saved_model.pb").exists()
    scores = _last_json(_run(keras_sysid, "evaluate", "--model", str(out / "model.keras"), "--data", tree,
                             cwd=str(tmp_path), env=env))
    assert scores["corr_single"] == pytest.approx(fitted["corr_single"], abs=1e-5)
