"""Export for serving (keras_sysid.export and ``keras-sysid export``).

Every format is run by its own runtime (TensorFlow alone in a separate process for the SavedModel; ONNX
Runtime, OpenVINO and LiteRT's interpreter for the others) and compared with Keras; bad requests go to a live
SavedModel in a process that must survive them; the command's destination: a user's folders are never
deleted, an unwritable one is named first.
"""

import json
import os
import stat
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid import export
from keras_sysid.multisession import build_multisession_model

_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
_SHAPE = (12, 14, 1)
_CORE = {"type": "stacked_conv2d", "channels": 3, "kernel_sizes": [5, 3]}
_STATS = {"mean": [0.5, -1.0, 2.0], "std": [1.5, 0.5, 2.0]}
_PUPIL = {"mean": [0.0, 1.0], "std": [2.0, 1.0]}


def _randomise(model):
    rng = np.random.default_rng(0)
    for part in (model.readout, model.shifter, model.modulator):
        for weight in (part.trainable_weights if part is not None else []):
            if weight.name not in ("mu", "sigma"):
                weight.assign(rng.normal(scale=0.5, size=weight.shape).astype("float32"))
    model.set_response_scale(np.linspace(0.5, 3.0, model.n_neurons))
    return model


def _ensemble():
    """An image-only Gaussian member beside a state member (behaviour channels, shifter, modulator)."""
    keras.utils.set_random_seed(0)
    image_only = ks.build_model(5, _SHAPE[:2], core=_CORE, readout={"type": "gaussian", "init_mu_range": 0.8},
                                image_mean=100.0, image_std=50.0)
    state = ks.build_model(5, _SHAPE[:2], core=_CORE, readout="cortex_gaussian", image_mean=100.0, image_std=50.0,
                           behavior_channels=True, shifter={}, modulator={}, behavior_stats=_STATS,
                           pupil_stats=_PUPIL)
    state.readout.set_cortical_coordinates(np.random.default_rng(1).uniform(-300, 300, (5, 3)))
    return ks.Ensemble([_randomise(image_only), _randomise(state)])


def _sessions():
    keras.utils.set_random_seed(0)
    model = build_multisession_model({"a": {"n_neurons": 4, "image_shape": _SHAPE[:2]},
                                      "b": {"n_neurons": 3, "image_shape": _SHAPE[:2]}},
                                     core=_CORE, readout={"type": "gaussian", "init_mu_range": 0.8})
    for session in model.sessions.values():
        _randomise(session)
    return model


def _inputs(shapes, n=5, seed=0):
    rng = np.random.default_rng(seed)
    return {name: (rng.uniform(0, 255, (n, *shape)) if name == "images" else rng.normal(size=(n, *shape)))
            .astype("float32") for name, shape in shapes.items()}


def _keras_prediction(model, inputs):
    return model.predict(inputs if len(inputs) > 1 else inputs["images"], verbose=0)


def _max_relative_difference(got, expected):
    return float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))


def _export(model, folder, format, **described):
    os.makedirs(folder)
    return export.export_model(model, str(folder), format, **described)


# Every format on the ensemble (image-only and state members); the sessions' one-file-per-session logic is one
# loop for the file formats, so two of them stand for all three (each conversion costs seconds).
@pytest.mark.parametrize("kind, format", [("ensemble", format) for format in export.FORMATS]
                         + [("sessions", "saved_model"), ("sessions", "onnx"), ("sessions", "openvino")])
def test_every_format_predicts_what_keras_predicts_in_its_own_runtime(kind, format, tmp_path):
    model = _ensemble() if kind == "ensemble" else _sessions()
    described = _export(model, tmp_path / "out", format, neuron_ids={"a": [10, 11, 12, 13], "b": [7, 8, 9]}
                        if kind == "sessions" else np.arange(100, 105))
    for signature, served in export.signatures(model).items():
        inputs = _inputs(export.input_shapes(served))
        expected = _keras_prediction(served, inputs)
        got = export.runtime_predictor(str(tmp_path / "out"), signature)(inputs)
        assert got.shape == expected.shape and _max_relative_difference(got, expected) <= 1e-4, signature
        facts = described["signatures"][signature]
        assert facts["outputs"]["responses"]["shape"] == [None, served.n_neurons]
        assert list(facts["inputs"]) == list(export.input_shapes(served))
    assert described["signatures"][next(iter(described["signatures"]))]["neuron_ids"] == (
        [10, 11, 12, 13] if kind == "sessions" else [100, 101, 102, 103, 104])
    with open(tmp_path / "out" / export.MANIFEST_FILE) as file:
        assert json.load(file)["signatures"].keys() == described["signatures"].keys()
    if format == "onnx":
        import onnx

        props = {prop.key: prop.value for prop in onnx.load(str(tmp_path / "out" / "model.onnx" if kind == "ensemble"
                                                                   else tmp_path / "out" / "model_a.onnx")).metadata_props}
        assert json.loads(props["keras_sysid"])["format"] == "onnx"
    if format == "openvino":
        import openvino

        read = openvino.Core().read_model(str(tmp_path / "out" / ("model.xml" if kind == "ensemble" else "model_b.xml")))
        assert json.loads(read.get_rt_info(["keras_sysid"]).astype(str))["format"] == "openvino"


@pytest.mark.parametrize("name", ["mouse_v1_gaussian", "mouse_v1_factorized", "mouse_v1_behavior"])
def test_the_zoos_mouse_v1_models_export_to_every_format_within_1e_4(name, tmp_path):
    model = ks.zoo.load(name)
    inputs = _inputs(export.input_shapes(model), n=4)
    expected = _keras_prediction(model, inputs)
    for format in export.FORMATS:
        _export(model, tmp_path / format, format, card=ks.zoo.metadata(name))
        got = export.runtime_predictor(str(tmp_path / format))(inputs)
        assert _max_relative_difference(got, expected) <= 1e-4, format


_TF_ONLY = """
import json, sys
import numpy as np
import tensorflow as tf
folder = sys.argv[1]
loaded = tf.saved_model.load(folder + "/saved")
served, uint8 = loaded.signatures["serving_default"], loaded.signatures["serving_default_uint8"]
images = np.load(folder + "/images.npy")
expected = np.load(folder + "/expected.npy")
for batch in (1, 5):
    responses = served(images=tf.constant(images[:batch]))["responses"].numpy()
    assert responses.shape == expected[:batch].shape, responses.shape
    assert np.abs(responses - expected[:batch]).max() <= 1e-5 * np.abs(expected).max()
as_stored = uint8(images=tf.constant(images.astype("uint8")))["responses"].numpy()
assert np.abs(as_stored - served(images=tf.constant(images.astype("uint8").astype("float32")))["responses"].numpy()).max() == 0
manifest = json.loads(loaded.signatures["metadata"]()["keras_sysid_json"].numpy())
assert manifest == json.load(open(folder + "/saved/assets/keras_sysid.json"))
assert not any(name.startswith("keras_sysid") for name in sys.modules)
print(json.dumps(manifest))
"""


def test_saved_model_matches_keras_and_describes_itself_in_a_tensorflow_only_process(tmp_path):
    model = ks.build_model(7, (20, 24), core=_CORE, image_mean=100.0, image_std=50.0)
    model.set_response_scale(np.linspace(0.5, 3.0, 7))
    images = np.round(np.random.default_rng(0).uniform(0, 255, (5, 20, 24, 1))).astype("float32")
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "expected.npy", model.predict(images, verbose=0))
    export.export_saved_model(model, str(tmp_path / "saved"), card={"data": "a recording", "output": "dF/F"},
                              neuron_ids=[f"roi{i}" for i in range(7)], data_fingerprint="ab" * 32)
    result = subprocess.run([sys.executable, "-c", _TF_ONLY, str(tmp_path)], capture_output=True, text=True, env=_ENV,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads(result.stdout.strip().splitlines()[-1])
    default = manifest["signatures"]["serving_default"]
    assert default["inputs"]["images"] == {"shape": [None, 20, 24, 1], "dtype": "float32",
                                           "units": export.manifest(model, "saved_model")["signatures"]
                                           ["serving_default"]["inputs"]["images"]["units"]}
    assert manifest["signatures"]["serving_default_uint8"]["inputs"]["images"]["dtype"] == "uint8"
    assert default["neuron_ids"] == [f"roi{i}" for i in range(7)] and default["outputs"]["responses"]["units"] == "dF/F"
    assert manifest["data_fingerprint"] == "ab" * 32 and manifest["data"] == "a recording"
    assert "mean 100 and std 50" in manifest["input_scale"]
    assert {"keras_sysid", "keras", "tensorflow"} <= set(manifest["versions"])


_BAD_REQUESTS = """
import sys
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
served = loaded.signatures["serving_default"]
good = {"images": np.full((2, 12, 14, 1), 100, "float32"), "behavior": np.zeros((2, 3), "float32"),
        "pupil_center": np.zeros((2, 2), "float32")}
requests = {
    "rank 2": {"images": np.zeros((12, 14), "float32")},
    "rank 3": {"images": np.zeros((2, 12, 14), "float32")},
    "rank 5": {"images": np.zeros((1, 2, 12, 14, 1), "float32")},
    "image size": {"images": np.zeros((2, 10, 14, 1), "float32")},
    "channels": {"images": np.zeros((2, 12, 14, 3), "float32")},
    "empty batch": {"images": np.zeros((0, 12, 14, 1), "float32")},
    "NaN": {"images": np.full((2, 12, 14, 1), np.nan, "float32")},
    "inf behaviour": {"behavior": np.array([[np.inf, 0, 0], [0, 0, 0]], "float32")},
    "behaviour width": {"behavior": np.zeros((2, 4), "float32")},
    "float64": {"images": np.zeros((2, 12, 14, 1), "float64")},
    "uint8 to the float signature": {"images": np.zeros((2, 12, 14, 1), "uint8")},
}
for name, change in requests.items():
    try:
        served(**{key: tf.constant(value) for key, value in dict(good, **change).items()})
        print(f"{name}|ACCEPTED")
    except tf.errors.InvalidArgumentError as error:
        print(f"{name}|" + " ".join(error.message.split()))
print("alive|", served(**{key: tf.constant(value) for key, value in good.items()})["responses"].shape)
"""


def test_a_live_saved_model_refuses_each_bad_request_naming_the_input_and_survives(tmp_path):
    model = _ensemble()
    export.export_saved_model(model, str(tmp_path / "saved"))
    result = subprocess.run([sys.executable, "-c", _BAD_REQUESTS, str(tmp_path / "saved")], capture_output=True,
                            text=True, env=_ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = dict(line.split("|", 1) for line in result.stdout.strip().splitlines())
    images = "images: expected float32 of shape [batch, 12, 14, 1], batch >= 1; got a request of shape"
    for name, given in (("rank 2", "[12 14]"), ("rank 3", "[2 12 14]"), ("rank 5", "[1 2 12 14 1]"),
                        ("image size", "[2 10 14 1]"), ("channels", "[2 12 14 3]"), ("empty batch", "[0 12 14 1]")):
        assert f"{images}] [{given[1:-1]}]" in answers[name], (name, answers[name])
    assert "images: values must be finite; the request has] [336] [NaN or infinite entries]" in answers["NaN"]
    assert "behavior: values must be finite; the request has] [1]" in answers["inf behaviour"]
    assert "behavior: expected float32 of shape [batch, 3], batch >= 1; got a request of shape] [2 4]" in answers[
        "behaviour width"]
    for name, given in (("float64", "double"), ("uint8 to the float signature", "uint8")):
        # The signature's inputs are in alphabetical order, as the function's name lists them: images is #1.
        assert "takes_behavior_float32_and_images_float32_and_pupil_center_float32" in answers[name]
        assert f"input #1(zero-based) was expected to be a float tensor but is a {given} tensor" in answers[name]
    assert answers["alive"].strip() == "(2, 5)"


def test_other_runtimes_refuse_a_wrong_shape_with_an_error_not_an_abort(tmp_path):
    model = ks.build_model(3, _SHAPE[:2], core=_CORE, readout="gaussian")
    for format in ("onnx", "openvino", "litert"):
        _export(model, tmp_path / format, format)
        predict = export.runtime_predictor(str(tmp_path / format))
        with pytest.raises(Exception, match=r"(?i)shape|dim|size"):
            predict(np.zeros((2, 10, 14, 1), "float32"))
        assert predict(np.zeros((2, *_SHAPE), "float32")).shape == (2, 3)


def test_a_missing_converter_is_named_with_the_extra(monkeypatch):
    real = export.importlib.util.find_spec
    monkeypatch.setattr(export.importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    with pytest.raises(export.ExportError, match=r'exporting to onnx needs tf2onnx.*pip install "keras_sysid\[serve\]"'):
        export.check_format("onnx")
    with pytest.raises(export.ExportError, match="unknown export format 'tflite'; formats: saved_model, onnx"):
        export.check_format("tflite")


def test_a_pruned_mask_readout_is_refused_outside_tensorflow_naming_what_to_export(tmp_path):
    model = ks.build_model(3, _SHAPE[:2], core=_CORE, readout="pruned_mask")
    with pytest.raises(export.ExportError, match="pruned-mask readout .* cannot be exported to onnx; export the "
                                                 "factorized model it was made from"):
        _export(model, tmp_path / "out", "onnx")


def test_neuron_ids_must_match_the_outputs():
    model = ks.build_model(3, _SHAPE[:2], core=_CORE)
    with pytest.raises(export.ExportError, match="serving_default: 2 neuron ids for 3 output columns"):
        export.manifest(model, "onnx", neuron_ids=[1, 2])


# -- the command ---------------------------------------------------------------------


_KERAS_SYSID = os.path.join(os.path.dirname(sys.executable), "keras-sysid")
# The command as a user who is not root runs it (root may write into any folder): the folder given is not writable.
_AS_A_USER = """
import os, sys
readonly, real_access = os.path.realpath(sys.argv[1]), os.access
os.access = lambda path, mode, *args, **kwargs: (
    False if os.path.realpath(path) == readonly and mode & os.W_OK else real_access(path, mode, *args, **kwargs))
import keras_sysid_launcher as launcher
sys.exit(launcher.load_early("keras_sysid.cli.main").main(["keras-sysid", *sys.argv[2:]]))
"""


def _command(*args, readonly=None):
    if readonly is not None and os.geteuid() == 0:
        command = [sys.executable, "-c", _AS_A_USER, readonly]
    else:
        command = [_KERAS_SYSID]
    return subprocess.run([*command, "export", *args], capture_output=True, text=True, env=_ENV, timeout=600,
                          check=False)


@pytest.fixture
def model_file(tmp_path):
    path = str(tmp_path / "run" / "model.keras")
    os.makedirs(os.path.dirname(path))
    ks.build_model(3, (8, 8), core={"type": "stacked_conv2d", "channels": 2, "kernel_sizes": [3]}).save(path)
    # What keras-sysid fit writes beside the model, which the export carries.
    with open(tmp_path / "run" / "results.json", "w") as file:
        json.dump({"data": "session1", "corr_single": 0.4, "data_fingerprint": "cd" * 32}, file)
    np.savez(tmp_path / "run" / "scores.npz", neuron_ids=np.array([5, 9, 2]))
    return path


def test_export_keeps_a_users_folder_named_like_a_temporary_one(model_file, tmp_path):
    out = tmp_path / "serving"
    for mine in ("serving.exporting", ".serving.exporting", "serving.tmp"):
        (tmp_path / mine).mkdir()
        (tmp_path / mine / "notes.txt").write_text("mine")
    before = sorted(os.listdir(tmp_path))
    result = _command("--model", model_file, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "serving_default: images float32 [batch, 8, 8, 1] -> responses float32 [batch, 3]" in result.stdout
    assert '{"signature_name": "serving_default", "instances": [{"images": "<float32 [8, 8, 1]>"}]}' in result.stdout
    for mine in ("serving.exporting", ".serving.exporting", "serving.tmp"):
        assert (tmp_path / mine / "notes.txt").read_text() == "mine", mine
    # The SavedModel, complete, and nothing else: no temporary folder is left behind.
    assert sorted(os.listdir(tmp_path)) == sorted([*before, "serving"])
    assert (out / "saved_model.pb").is_file() and (out / "variables").is_dir()
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o777 & ~umask  # not a private temporary folder's 0700
    manifest = json.loads((out / "assets" / export.MANIFEST_FILE).read_text())
    assert manifest["signatures"]["serving_default"]["neuron_ids"] == [5, 9, 2]
    assert manifest["data_fingerprint"] == "cd" * 32 and manifest["card"]["corr_single"] == 0.4
    request = json.loads((out / "example_request.json").read_text())
    assert request["signature_name"] == "serving_default" and np.shape(request["instances"][0]["images"]) == (8, 8, 1)


def test_serving_layout_writes_name_and_the_next_version(model_file, tmp_path):
    base = tmp_path / "models"
    for expected in ("1", "2"):
        result = _command("--model", model_file, "--out", str(base), "--serving_layout", "--format", "onnx")
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"wrote {base / 'run' / expected} (onnx)" in result.stdout
        assert "serving_default (model.onnx): images float32 [batch, 8, 8, 1]" in result.stdout
    assert sorted(os.listdir(base / "run")) == ["1", "2"]
    assert sorted(os.listdir(base / "run" / "2")) == [export.MANIFEST_FILE, "model.onnx"]


def test_data_gives_the_recordings_unit_ids_and_fingerprint_and_a_mismatch_is_refused(tmp_path):
    from static_tree import IMAGE_SHAPE, N_NEURONS, write_tree

    tree = write_tree(str(tmp_path))
    path = str(tmp_path / "model.keras")
    ks.build_model(N_NEURONS, IMAGE_SHAPE, core={"type": "stacked_conv2d", "channels": 2, "kernel_sizes": [3]}).save(path)
    result = _command("--model", path, "--data", tree, "--format", "litert", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / export.MANIFEST_FILE).read_text())
    assert manifest["signatures"]["serving_default"]["neuron_ids"] == list(range(1, N_NEURONS + 1))
    assert manifest["data_fingerprint"] == ks.data.load(tree).fingerprint()
    other = str(tmp_path / "other.keras")
    ks.build_model(N_NEURONS + 1, IMAGE_SHAPE, core={"type": "stacked_conv2d", "channels": 2, "kernel_sizes": [3]}
                   ).save(other)
    refused = _command("--model", other, "--data", tree, "--out", str(tmp_path / "refused"))
    assert refused.returncode == 1 and not (tmp_path / "refused").exists()
    assert refused.stderr.strip().splitlines()[-1] == (
        f"error: --data {tree} has {N_NEURONS} neurons; the model predicts {N_NEURONS + 1}: not the recording it "
        "was trained on.")


def test_export_into_a_read_only_folder_is_refused_naming_it_before_loading(tmp_path):
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    try:
        # The model is never read: the destination is refused first.
        result = _command("--model", str(tmp_path / "absent.keras"), "--out", str(readonly / "serving" / "1"),
                          readonly=str(readonly))
    finally:
        readonly.chmod(0o755)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: cannot write {readonly / 'serving' / '1'}: the folder {readonly} is not writable "
        "(read-only, or not yours).")
    assert "Traceback" not in result.stderr and os.listdir(readonly) == []


def test_check_writable_names_the_folder_that_is_not_one(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match=f"cannot write .*: {tmp_path / 'a_file'} is not a folder"):
        export.check_writable(str(tmp_path / "a_file" / "serving"))
    assert export.check_writable(str(tmp_path / "new" / "deeper" / "1") + "/") == str(tmp_path / "new" / "deeper" / "1")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(tmp_path) else real_access(path, mode))
    with pytest.raises(ValueError, match=f"the folder {tmp_path} is not writable"):
        export.check_writable(str(tmp_path / "new" / "deeper" / "1"))
