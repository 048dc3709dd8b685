"""tf.distribute training through tools/train.py gives the single-device result."""

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

from keras_sysid import distribute

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# float32: bfloat16 rounding differs with the per-replica batch (about 1e-4 of
# the loss), which would hide the exactness these tests check.
_SMALL_RUN = [
    "--n_neurons", "40", "--image_size", "24", "--n_train", "1024", "--epochs", "4", "--patience", "2",
    "--mixed_precision", "false",
]
# What the fitted model predicts must match, within what float32 summation
# order allows. Per step the arithmetic is the same up to rounding: two replicas
# sum their half-batch gradients and then add the halves, one device sums the
# whole batch, so gradients differ in the last bits, and the SGD test below
# holds the weights to 1e-5. A whole fit is 64 Adam steps, and Adam divides
# each gradient by its own running magnitude: for a weight whose gradient is
# near zero, a last-bit difference becomes a difference in the step itself,
# which carries through every later step. So whole fits are compared on scores
# on which that drift acts linearly (validation loss, correlation, the
# unexplained variance 1 - FEV: FEV itself, 0.17 here, is a small difference of
# near-equal numbers and amplifies it five-fold), with tolerances set from the
# drift measured on two CPU kinds. Relative drift, mirrored vs one device, AMD
# EPYC: val loss 7e-6, corr 9.5e-5, 1 - FEV 1e-4, RF error 2e-5; Intel Xeon
# (AMX): corr 1.8e-4. A real defect is still caught: batch norm on each
# replica's half-batch instead of the global batch (distribute.
# synchronized_batch_norm off) moves them by 7.6e-4, 1.1e-2, 2e-3 and 5e-2.
# (Keras' running training-loss log is aggregated over replicas and differs
# slightly; it is not compared.)
_TOLERANCES = {"best_val_loss": 1e-4, "unexplained": 1e-3, "corr_test": 1e-3, "rf_error_px": 1e-3}


def _scores(result):
    return {**{key: result[key] for key in ("best_val_loss", "corr_test", "rf_error_px")},
            "unexplained": 1.0 - result["fev"]}

_SGD_STEPS = """
import sys
import numpy as np
from keras_sysid import distribute
distribute.use_logical_cpus(2)
import keras
from keras_sysid.losses import PoissonLoss
from keras_sysid.models import build_model

rng = np.random.default_rng(0)
images = rng.uniform(0, 255, (64, 20, 20, 1)).astype("float32")
responses = rng.poisson(1.0, (64, 12)).astype("float32")
weights = {}
for name in ("default", "mirrored"):
    strategy = distribute.make_strategy(name)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = build_model(12, (20, 20, 1), core={"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [5],
                            "smoothness": 1.0, "group_sparsity": 1.0}, readout={"type": "factorized", "l1": 1.0},
                            image_mean=127.5, image_std=64.0, mean_responses=np.ones(12))
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss=PoissonLoss(), jit_compile=False)
        with distribute.synchronized_batch_norm(model):
            model.fit(images, responses, batch_size=16, epochs=2, shuffle=False, verbose=0)
    weights[name] = model.get_weights()
    print(name, strategy.num_replicas_in_sync)
worst = max(float(np.max(np.abs(a - b))) for a, b in zip(weights["default"], weights["mirrored"]))
print("max weight difference", worst)
"""


def _train(*args, env=None):
    # Each run in a folder of its own: the tool's default folder would resume an earlier test's run.
    if "--out" in args:
        out = ()
    else:
        folder = tempfile.mkdtemp(prefix="train_")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        out = ("--out", folder)
    command = [sys.executable, os.path.join(_ROOT, "tools", "train.py"), *_SMALL_RUN, *args, *out]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {})),
    )


def _result(process):
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def single_device():
    return _result(_train())


def test_mirrored_sgd_steps_equal_one_device_steps_with_penalties_counted_once():
    # Strong penalties: counting them once per replica would change every step.
    result = subprocess.run([sys.executable, "-c", _SGD_STEPS], capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("default 1") and lines[1].startswith("mirrored 2")
    assert float(lines[-1].split()[-1]) < 1e-5


def test_mirrored_over_two_logical_cpus_matches_one_device(single_device):
    mirrored = _result(_train("--strategy", "mirrored", "--logical_cpus", "2"))
    assert mirrored["replicas"] == 2 and single_device["replicas"] == 1
    assert mirrored["epochs"] == single_device["epochs"]
    for key, tolerance in _TOLERANCES.items():
        assert _scores(mirrored)[key] == pytest.approx(_scores(single_device)[key], rel=tolerance), key


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_two_workers_on_localhost_match_one_process(single_device, tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = [
        _train("--strategy", "multiworker", "--out", str(tmp_path / "out"), env={
            "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}),
        })
        for index in range(2)
    ]
    results = [_result(process) for process in processes]
    for result in results:
        assert result["replicas"] == 2
        for key, tolerance in _TOLERANCES.items():
            assert _scores(result)[key] == pytest.approx(_scores(single_device)[key], rel=tolerance), key
    # Only worker 0 writes the outputs.
    assert (tmp_path / "out" / "results.json").exists()


def test_multiworker_without_cluster_config_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.make_strategy("multiworker")


def test_unknown_strategy_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown strategy"):
        distribute.make_strategy("horovod")
