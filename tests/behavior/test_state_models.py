"""State-aware models trained end to end, and their input checks (the layers: test_behavior_models.py)."""

import keras
import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid.models import variable_stats

_SHAPE = (16, 18, 1)
_CORE = {"type": "stacked_conv2d", "channels": 3, "kernel_sizes": [5, 3]}


def _state(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "images": rng.uniform(0, 255, (n, *_SHAPE)).astype("float32"),
        "behavior": rng.normal([5, 0, 1], [1, 0.3, 1], (n, 3)).astype("float32"),
        "pupil_center": rng.normal([150, 120], [8, 6], (n, 2)).astype("float32"),
    }


def _state_model(readout="factorized", seed=0, n_neurons=4, **parts):
    keras.utils.set_random_seed(seed)
    x = _state(32, seed=seed + 100)
    parts = parts or {"behavior_channels": True, "shifter": {}, "modulator": {}}
    return ks.build_model(
        n_neurons, _SHAPE, core=_CORE, readout=readout, image_mean=127.5, image_std=70.0,
        behavior_stats=variable_stats(x["behavior"]), pupil_stats=variable_stats(x["pupil_center"]), **parts,
    )


def _trained(model, seed=0, epochs=3):
    x = _state(32, seed)
    y = np.random.default_rng(seed).poisson(2.0, (32, model.n_neurons)).astype("float32")
    ks.compile_model(model, learning_rate=0.01, jit_compile=False)
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, shuffle=False)
    return model


def test_every_part_gets_gradients_and_learns():
    model = _state_model()
    before = [keras.ops.convert_to_numpy(w) for w in model.shifter.trainable_weights + model.modulator.trainable_weights]
    _trained(model)
    after = [keras.ops.convert_to_numpy(w) for w in model.shifter.trainable_weights + model.modulator.trainable_weights]
    assert all(not np.allclose(a, b) for a, b in zip(before, after))
    assert all(np.all(np.isfinite(w)) for w in after)
    gains = np.asarray(model.modulator(np.random.default_rng(1).normal(size=(8, 3)).astype("float32")))
    assert np.all(gains > 0) and np.ptp(gains) > 0



def test_missing_or_bad_state_is_named_before_any_work():
    model = _state_model()
    x = _state(4)
    with pytest.raises(ValueError, match="needs 'behavior', 'pupil_center' besides the images"):
        model.predict(x["images"], verbose=0)
    with pytest.raises(ValueError, match="needs 'pupil_center'"):
        model.predict({"images": x["images"], "behavior": x["behavior"]}, verbose=0)
    bad = dict(x, behavior=np.where(np.eye(4, 3) > 0, np.nan, x["behavior"]).astype("float32"))
    with pytest.raises(ValueError, match="prediction behavior contain 3 NaN"):
        model.predict(bad, verbose=0)
    with pytest.raises(ValueError, match=r"behavior must have shape \(trials, 3\)"):
        model.predict(dict(x, behavior=x["behavior"][:, :2]), verbose=0)
    with pytest.raises(ValueError, match="behavior have 3 trials but there are 4 images"):
        model.predict(dict(x, behavior=x["behavior"][:3]), verbose=0)
    with pytest.raises(ValueError, match="needs behavior_stats"):
        ks.build_model(4, _SHAPE, core=_CORE, modulator={})
    # An image-only model takes images or the dict.
    plain = ks.build_model(4, _SHAPE, core=_CORE)
    np.testing.assert_allclose(plain.predict(x, verbose=0), plain.predict(x["images"], verbose=0), rtol=1e-6)

