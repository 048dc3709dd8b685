"""SavedModel export (keras_sysid.export and ``keras-sysid export``).

Checked the way a serving user loads it (TensorFlow only), and the command's destination: a user's folders are
never deleted, an unwritable one is named first.
"""

import os
import stat
import subprocess
import sys

import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid import export
from keras_sysid.export import export_saved_model

_TF_ONLY = """
import sys
import numpy as np
import tensorflow as tf
folder = sys.argv[1]
served = tf.saved_model.load(folder + "/saved").signatures["serving_default"]
spec = served.structured_input_signature[1]["images"]
assert spec.shape.as_list() == [None, 20, 24, 1], spec
for batch in (1, 5):
    images = np.load(folder + "/images.npy")[:batch]
    responses = served(images=tf.constant(images))["responses"].numpy()
    expected = np.load(folder + "/expected.npy")[:batch]
    assert responses.shape == expected.shape, responses.shape
    assert np.abs(responses - expected).max() <= 1e-5, np.abs(responses - expected).max()
assert not any(name.startswith("keras_sysid") for name in sys.modules)
print("ok")
"""


def test_saved_model_matches_keras_in_a_tensorflow_only_process(tmp_path):
    model = ks.build_model(
        7, (20, 24), core={"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [5, 3]},
        image_mean=100.0, image_std=50.0,
    )
    model.set_response_scale(np.linspace(0.5, 3.0, 7))
    images = np.random.default_rng(0).uniform(0, 255, (5, 20, 24, 1)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "expected.npy", model.predict(images, verbose=0))
    export_saved_model(model, str(tmp_path / "saved"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", _TF_ONLY, str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
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


def _export(*args, readonly=None):
    if readonly is not None and os.geteuid() == 0:
        command = [sys.executable, "-c", _AS_A_USER, readonly]
    else:
        command = [_KERAS_SYSID]
    return subprocess.run([*command, "export", *args], capture_output=True, text=True, env=_ENV, timeout=600,
                          check=False)


@pytest.fixture
def model_file(tmp_path):
    path = str(tmp_path / "tiny.keras")
    ks.build_model(3, (8, 8), core={"type": "stacked_conv2d", "channels": 2, "kernel_sizes": [3]}).save(path)
    return path


def test_export_keeps_a_users_folder_named_like_a_temporary_one(model_file, tmp_path):
    out = tmp_path / "serving"
    for mine in ("serving.exporting", ".serving.exporting", "serving.tmp"):
        (tmp_path / mine).mkdir()
        (tmp_path / mine / "notes.txt").write_text("mine")
    before = sorted(os.listdir(tmp_path))
    result = _export("--model", model_file, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote {out}: serving_default images [8, 8, 1] -> responses [3]" in result.stdout
    for mine in ("serving.exporting", ".serving.exporting", "serving.tmp"):
        assert (tmp_path / mine / "notes.txt").read_text() == "mine", mine
    # The SavedModel, complete, and nothing else: no temporary folder is left behind.
    assert sorted(os.listdir(tmp_path)) == sorted([*before, "serving"])
    assert (out / "saved_model.pb").is_file() and (out / "variables").is_dir()
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o777 & ~umask  # not a private temporary folder's 0700


def test_export_into_a_read_only_folder_is_refused_naming_it_before_loading(tmp_path):
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    try:
        # The model is never read: the destination is refused first.
        result = _export("--model", str(tmp_path / "absent.keras"), "--out", str(readonly / "serving" / "1"),
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
