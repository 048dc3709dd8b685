"""The command line's checks and messages: the session a recording is scored with, help and version, NWB flags,
what a reader chose, one --mixed_precision vocabulary, a quiet TensorFlow start-up."""

import ast
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from static_tree import write_tree

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
_KERAS_SYSID = os.path.join(os.path.dirname(sys.executable), "keras-sysid")
# A session name as keras_sysid.multisession.session_name_for makes it from each recording's name.
FIRST, SECOND = "static1_1_1_preproc0", "static2_1_1_preproc0"


def _run(*args, env=None, program=(_KERAS_SYSID,)):
    return subprocess.run([*program, *args], capture_output=True, text=True, env=env or _ENV, timeout=600, check=False)


def _last_json(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Three recordings of 5 neurons (20x24 images); a model of the first two and of a session of 4 neurons (16x16
    images); a model of 4 neurons (20x24 images)."""
    import keras_sysid as ks

    folder = tmp_path_factory.mktemp("cli_checks")
    recordings = {FIRST: write_tree(str(folder)), SECOND: write_tree(str(folder), name="static2-1-1-preproc0", seed=1),
                  "third": write_tree(str(folder), name="static3-1-1-preproc0", seed=2)}
    both = ks.build_multisession_model({FIRST: {"n_neurons": 5, "image_shape": (20, 24)},
                                        SECOND: {"n_neurons": 5, "image_shape": (20, 24)},
                                        "other": {"n_neurons": 4, "image_shape": (16, 16)}}, readout="gaussian")
    single = ks.build_model(n_neurons=4, image_shape=(20, 24), readout="gaussian")
    paths = {"both": str(folder / "both.keras"), "single": str(folder / "single.keras")}
    both.save(paths["both"])
    single.save(paths["single"])
    return recordings, paths


def test_evaluate_refuses_a_session_the_recording_cannot_be_before_scoring(models):
    recordings, paths = models
    evaluate = ("evaluate", "--model", paths["both"], "--data", recordings[SECOND])
    # The same neuron count and image size: only the recording's name tells the sessions apart.
    named = _run(*evaluate, "--session", FIRST)
    assert named.returncode == 1 and "predicting" not in named.stdout
    assert (f"error: recording static2-1-1-preproc0 is session '{SECOND}' of {paths['both']}, not --session {FIRST}"
            in named.stderr), named.stderr[-2000:]
    assert f"Leave out --session (or give --session {SECOND})." in named.stderr
    assert f"scoring it with session '{FIRST}' would compare different cells." in named.stderr
    # A recording of no session of the model, another neuron count and image size than the session's.
    other = _run("evaluate", "--model", paths["both"], "--data", recordings["third"], "--session", "other")
    assert other.returncode == 1 and "predicting" not in other.stdout
    assert (f"error: recording static3-1-1-preproc0 cannot be session 'other' of {paths['both']}: the recording has "
            "5 neurons, session 'other' 4; its images are 20x24x1, the session's 16x16x1. Choose the recording's "
            "session with --session." in other.stderr), other.stderr[-2000:]
    # A single-session model of other neurons.
    single = _run("evaluate", "--model", paths["single"], "--data", recordings[SECOND])
    assert single.returncode == 1 and "predicting" not in single.stdout
    assert (f"error: recording static2-1-1-preproc0 cannot be {paths['single']}'s: the recording has 5 neurons, "
            "the model 4." in single.stderr), single.stderr[-2000:]
    # The recording's own session, chosen or named after it, is scored.
    own = _last_json(_run(*evaluate, "--session", SECOND))
    assert own["session"] == SECOND and own["n_neurons"] == 5 and own["data"] == "static2-1-1-preproc0"


def test_help_and_version_exit_zero_and_list_the_nwb_flags():
    nwb_flags = ("--nwb_responses", "--nwb_stimulus", "--nwb_window", "--nwb_image_size", "--nwb_behavior",
                 "--nwb_pupil_center")
    for command in ("evaluate", "insilico"):
        result = _run(command, "--help")
        assert result.returncode == 0, result.stderr[-2000:]
        for flag in (*nwb_flags, "--model", "--backend"):
            assert f"  {flag}:" in result.stdout, (command, flag)
    assert _run("help", "insilico").returncode == 0
    assert _run("--help").returncode == 0
    bad = _run("evaluate", "--tier", "nope", "--help")  # a bad flag is still an error
    assert bad.returncode == 1 and "FATAL Flags parsing error" in bad.stderr
    with open(os.path.join(_ROOT, "keras_sysid", "__init__.py"), encoding="utf-8") as file:
        version = next(node.value.value for node in ast.parse(file.read()).body if isinstance(node, ast.Assign)
                       and any(getattr(target, "id", None) == "__version__" for target in node.targets))
    result = _run("--version")
    assert result.returncode == 0 and result.stdout == f"keras-sysid {version}\n" and result.stderr == ""
    # Without Keras: the version is read from the package's file.
    check = ("import sys, keras_sysid_launcher as launcher; "
             "assert launcher.load_early('keras_sysid.cli.main').main(['keras-sysid', '--version']) == 0; "
             "assert 'keras' not in sys.modules and 'keras_sysid' not in sys.modules, sorted(sys.modules)")
    result = _run("-c", check, program=(sys.executable,))
    assert result.returncode == 0 and result.stdout == f"keras-sysid {version}\n", result.stderr[-2000:]


def test_nwb_reader_messages_name_the_flags():
    from keras_sysid.cli._recordings import flag_names

    assert flag_names("s.nwb: holds several RoiResponseSeries: ['a/dff', 'b/raw']; choose one with responses=, "
                      "e.g. responses='a/dff'.") == ("s.nwb: holds several RoiResponseSeries: ['a/dff', 'b/raw']; "
                                                     "choose one with --nwb_responses, e.g. --nwb_responses='a/dff'.")
    assert flag_names("s.nwb: no TimeSeries named 'eye' (pupil_center=); candidates: none.") == (
        "s.nwb: no TimeSeries named 'eye' (--nwb_pupil_center); candidates: none.")
    assert flag_names("widen window= (samples are 0.033 s apart); image_size= cannot help") == (
        "widen --nwb_window (samples are 0.033 s apart); --nwb_image_size cannot help")
    assert flag_names("stimulus='x' with window=(0.1, 0.35), behavior=['run', 'lick']") == (
        "--nwb_stimulus='x' with --nwb_window=0.1,0.35, --nwb_behavior=run,lick")
    # Arguments that no flag sets stay as they are.
    unflagged = "images= is for a TimeIntervals stimulus; index_column='frame', tier_rule='auto', my_responses=2"
    assert flag_names(unflagged) == unflagged


def test_a_command_reading_an_nwb_file_names_the_flags_and_prints_what_was_chosen(tmp_path):
    pytest.importorskip("pynwb")
    from test_nwb import N_ROIS, _scene, _write

    import keras_sysid as ks
    from keras_sysid.cli._recordings import describe

    path = _write(tmp_path / "two.nwb", _scene(), fluorescence=True)  # two RoiResponseSeries
    model = str(tmp_path / "model.keras")
    ks.build_model(n_neurons=N_ROIS, image_shape=(18, 32), readout="gaussian").save(model)
    several = _run("evaluate", "--model", model, "--data", path)
    assert several.returncode == 1
    assert ("choose one with --nwb_responses, e.g. --nwb_responses='processing/ophys/DfOverF/dff'."
            in several.stderr), several.stderr[-2000:]
    assert "responses=" not in several.stderr.replace("--nwb_responses=", "")
    chosen = _run("evaluate", "--model", model, "--data", path, "--nwb_responses", "DfOverF/dff",
                  "--nwb_window", "0.05,0.3")
    scores = _last_json(chosen)
    assert scores["n_neurons"] == N_ROIS and scores["data"] == "two"
    line = describe(ks.data.load(path, responses="DfOverF/dff", window=(0.05, 0.3)))
    if line:  # once the NWB reader fills in Recording.provenance
        assert line in chosen.stdout


def test_describe_formats_the_provenance_in_one_or_two_short_lines():
    from keras_sysid.cli._recordings import describe
    from keras_sysid.data import Recording

    recording = Recording.from_arrays(np.random.default_rng(0).uniform(size=(12, 4, 4)),
                                      np.random.default_rng(1).uniform(size=(12, 3)))
    assert describe(recording) == ""
    recording.provenance = {"responses": "processing/ophys/DfOverF/dff", "window": (0.1, 0.35)}
    assert describe(recording) == "  chosen: responses processing/ophys/DfOverF/dff; window 0.1,0.35 s"
    recording.provenance = {"responses": "processing/ophys/DfOverF/dff",
                            "stimulus": "stimulus/presentation/natural_scenes", "window": np.array([0.0, 0.25]),
                            "image_size": (36, 64), "behavior": ["running_speed"], "pupil_center": None,
                            "presentations": np.int64(5900)}
    first, second = describe(recording).split("\n")
    assert first == "  chosen: responses processing/ophys/DfOverF/dff; stimulus stimulus/presentation/natural_scenes"
    assert second == "          window 0,0.25 s; image size 36,64; behavior running_speed; presentations 5900"


def test_benchmark_takes_fits_mixed_precision_words():
    result = _run("benchmark", "--help")
    assert result.returncode == 0
    assert "--mixed_precision: <preferred|true|false|both>" in result.stdout, result.stdout[-3000:]
    assert "(default: 'false')" in result.stdout.split("--mixed_precision:")[1].split("\n  --")[0]
    old = _run("benchmark", "--mixed_precision", "on")
    assert old.returncode == 1 and "value should be one of <preferred|true|false|both>" in old.stderr
    check = ("import json; from keras_sysid import devices; from keras_sysid.cli import benchmark; "
             "print(json.dumps([[benchmark.mixed_precision_options(c) for c in ('false', 'true', 'both', 'preferred')],"
             " devices.preferred_mixed_precision()]))")
    result = _run("-c", check, program=(sys.executable,))
    assert result.returncode == 0, result.stderr[-2000:]
    options, preferred = json.loads(result.stdout.strip().splitlines()[-1])
    assert options == [[False], [True], [False, True], [preferred]]


def _stderr_of(code, **env):
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False,
                            env={**environment, **env}, cwd=_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, result.stderr


def _assert_quiet(stderr):
    for noise in ("cuda", "oneDNN", "I0000", "absl::InitializeLog", "cpu_feature_guard"):
        assert noise not in stderr, stderr


def test_quiet_tensorflow_imports_nothing_of_keras_sysid_and_silences_the_banner():
    with open(os.path.join(_ROOT, "keras_sysid", "_quiet_tensorflow.py"), encoding="utf-8") as file:
        tree = ast.parse(file.read())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name.split(".")[0] in ("keras_sysid", "keras") for name in imported), imported
    # Run before the package, as the commands do (keras_sysid_launcher.load_early), then Keras.
    out, err = _stderr_of("import sys, keras_sysid_launcher as launcher; "
                          "launcher.load_early('keras_sysid._quiet_tensorflow'); "
                          "print('tensorflow' in sys.modules, 'keras_sysid' in sys.modules); import keras",
                          KERAS_BACKEND="tensorflow")
    assert out.split() == ["True", "False"]
    _assert_quiet(err)
    # Under another backend Keras does not import TensorFlow, and neither does the module.
    out, _ = _stderr_of("import sys, keras_sysid_launcher as launcher; "
                        "launcher.load_early('keras_sysid._quiet_tensorflow'); print('tensorflow' in sys.modules)",
                        KERAS_BACKEND="jax")
    assert out.split() == ["False"]


def _init_imports_quiet_tensorflow() -> bool:
    with open(os.path.join(_ROOT, "keras_sysid", "__init__.py"), encoding="utf-8") as file:
        return "_quiet_tensorflow" in file.read()


@pytest.mark.skipif(not _init_imports_quiet_tensorflow(),
                    reason="keras_sysid/__init__.py does not import keras_sysid._quiet_tensorflow (yet)")
def test_import_keras_sysid_starts_tensorflow_quietly():
    for code in ("import keras_sysid._quiet_tensorflow; import keras", "import keras_sysid"):
        _, err = _stderr_of(code, KERAS_BACKEND="tensorflow")
        _assert_quiet(err)
