import keras
import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid import devices


@pytest.fixture
def mixed_policy():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def _model():
    return ks.build_model(
        7, (20, 24), core={"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [5, 3]},
        readout={"type": "factorized"}, image_mean=10.0, image_std=2.0,
    )


def test_float32_copy_of_a_mixed_precision_model_predicts_in_float32(mixed_policy):
    keras.utils.set_random_seed(0)
    mixed = _model()
    images = np.random.default_rng(0).normal(10, 2, (5, 20, 24, 1)).astype("float32")
    rounded = mixed.predict(images, verbose=0)
    copy = devices.float32_copy(mixed)
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # restored
    assert all(layer.dtype_policy.compute_dtype == "float32" for layer in copy._flatten_layers())
    keras.mixed_precision.set_global_policy("float32")
    reference = _model()
    reference.set_weights(mixed.get_weights())
    expected = reference.predict(images, verbose=0)
    np.testing.assert_allclose(copy.predict(images, verbose=0), expected, rtol=1e-6)
    assert np.abs(rounded - expected).max() > 1e-4 * np.abs(expected).max()  # what the copy avoids
    assert devices.float32_copy(copy) is copy


def test_preferred_precision_is_a_boolean_per_device_kind():
    assert isinstance(devices.preferred_mixed_precision(), bool)
    assert devices.mixed_policy_name() in ("mixed_bfloat16", "mixed_float16")
