"""SavedModel export, checked the way a serving user loads it: TensorFlow only."""

import os
import subprocess
import sys

import numpy as np

import keras_sysid as ks
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
