"""The layers, models and zoo under Keras' JAX and PyTorch backends.

Each installed non-TensorFlow backend runs in a subprocess (Keras picks its
backend once per process): the layer and model test modules run there as a
whole, and models saved here under TensorFlow must predict the same there.
A backend that is not installed is skipped (CI installs JAX; see README).
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid.training import compile_model

_TESTS = os.path.dirname(os.path.abspath(__file__))
# Paths relative to this folder (the subprocess runs there).
_BACKEND_NEUTRAL_TESTS = [
    "test_layer_contracts.py", "readouts/test_readouts.py", "cores/test_cores.py", "test_models.py", "test_metrics.py",
    "training/test_training.py", "insilico/test_insilico.py",
]
_BACKENDS = [
    pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(name) is None, reason=f"{name} not installed"))
    for name in ("jax", "torch")
]
# Every registered readout, with its defaults: a new readout is covered by registering it.
_READOUTS = sorted(ks.readouts.registry())
_ZOO_MODELS = ["synthetic_cnn_groundtruth", "mouse_v1_gaussian"]

_PREDICT = """
import json, sys
import numpy as np
import keras
import keras_sysid as ks
assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
cases = json.loads(sys.argv[2])
worst = {}
for case in cases:
    model = ks.zoo.load(case["zoo"]) if "zoo" in case else keras.saving.load_model(case["path"])
    prediction = model.predict(np.load(case["images"]), verbose=0)
    expected = np.load(case["expected"])
    # Within 1e-5 of the TensorFlow prediction, relative to it where it exceeds 1 (float32 rounding).
    worst[case["name"]] = float(np.max(np.abs(prediction - expected) / np.maximum(1.0, np.abs(expected))))
print(json.dumps(worst))
"""


def _env(backend):
    return dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")


_LAYER_TEST_RUNS = {}


def start_layer_tests(backend):
    """Starts the backend-neutral test modules under ``backend`` in a subprocess; returns ``(process, output file)``.

    conftest.py calls this as soon as collection ends, so the run (minutes, mostly compiling) goes on beside
    the rest of the suite; :func:`test_layer_and_model_tests_pass_under` waits for it, last.
    """
    if backend not in _LAYER_TEST_RUNS:
        output = tempfile.TemporaryFile(mode="w+")
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *_BACKEND_NEUTRAL_TESTS],
            cwd=_TESTS, stdout=output, stderr=subprocess.STDOUT, text=True, env=_env(backend),
        )
        _LAYER_TEST_RUNS[backend] = (process, output)
    return _LAYER_TEST_RUNS[backend]


def stop_layer_tests():
    """Ends layer-test subprocesses still running (a session stopped early)."""
    for process, output in _LAYER_TEST_RUNS.values():
        if process.poll() is None:
            process.kill()
            process.wait()
        output.close()


@pytest.mark.parametrize("backend", _BACKENDS)
def test_layer_and_model_tests_pass_under(backend):
    process, output = start_layer_tests(backend)
    try:
        returncode = process.wait(timeout=1200)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    output.seek(0)
    assert returncode == 0, output.read()[-4000:]


@pytest.fixture(scope="module")
def saved_cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("backends")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (6, 20, 24, 1)).astype("float32")
    cases = []
    for name in _READOUTS:
        keras.utils.set_random_seed(0)
        model = ks.build_model(
            n_neurons=7, image_shape=(20, 24), core={"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [5, 3]},
            readout=name, image_mean=120.0, image_std=60.0, mean_responses=np.linspace(0.5, 2.0, 7),
        )
        compile_model(model)
        model.fit(images, rng.poisson(1.0, (6, 7)).astype("float32"), epochs=2, verbose=0)
        model.set_response_scale(np.linspace(1.0, 3.0, 7))
        cases.append(_case(folder, name, images, model.predict(images, verbose=0), model=model))
    for name in _ZOO_MODELS:
        model = ks.zoo.load(name)
        shape = model.image_shape
        zoo_images = rng.uniform(0, 255, (4, *shape)).astype("float32")
        cases.append(_case(folder, name, zoo_images, model.predict(zoo_images, verbose=0), zoo=name))
    return cases


def _case(folder, name, images, expected, model=None, zoo=None):
    case = {"name": name, "images": str(folder / f"{name}_images.npy"), "expected": str(folder / f"{name}_expected.npy")}
    np.save(case["images"], images)
    np.save(case["expected"], expected)
    if model is not None:
        case["path"] = str(folder / f"{name}.keras")
        model.save(case["path"])
    else:
        case["zoo"] = zoo
    return case


@pytest.mark.parametrize("backend", _BACKENDS)
def test_models_saved_under_tensorflow_predict_the_same_under(backend, saved_cases):
    result = subprocess.run(
        [sys.executable, "-c", _PREDICT, backend, json.dumps(saved_cases)],
        capture_output=True, text=True, env=_env(backend), timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    worst = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(worst) == {case["name"] for case in saved_cases}
    print(backend, worst)
    for name, difference in worst.items():
        assert difference <= 1e-5, (name, difference)
