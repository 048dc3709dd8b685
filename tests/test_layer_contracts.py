"""The contract every registered readout and core keeps, checked on each of them.

In the spirit of Keras' ``run_layer_test``: a layer is covered by being
registered, so a new readout or core file gets these tests without a line
here. ``tests/test_backends.py`` reruns this module under every installed
Keras backend.
"""

import keras
import numpy as np
import pytest

import keras_sysid as ks

_READOUTS = sorted(ks.readouts.registry())
_CORES = sorted(ks.cores.registry())
_IMAGE_SHAPE = (16, 18, 1)
_SMALL_CORE = {"type": "stacked_conv2d", "channels": 3, "kernel_sizes": [5, 3]}
_N_NEURONS = 5


def _images(n=8, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *_IMAGE_SHAPE)).astype("float32")


def _model(readout="factorized", core=None, seed=0):
    keras.utils.set_random_seed(seed)
    return ks.build_model(
        _N_NEURONS, _IMAGE_SHAPE, core=_SMALL_CORE if core is None else core, readout=readout,
        image_mean=127.5, image_std=70.0, mean_responses=np.linspace(0.5, 2.0, _N_NEURONS),
    )


def _cortex(grid_positions):
    """Cortical coordinates that map linearly onto grid positions (retinotopy), for a readout that reads them."""
    return grid_positions @ np.array([[3.0, 1.0], [-2.0, 0.5]]) + 100.0


def _weight_counts(layer):
    seed_generators = sum(len(getattr(sublayer, "_seed_generators", [])) for sublayer in layer._flatten_layers())
    return len(layer.trainable_weights), len(layer.non_trainable_weights), seed_generators


def _keras_round_trip(model, tmp_path, name):
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    return keras.saving.load_model(path, safe_mode=True)


def _loss_drops(model, seed=0):
    rng = np.random.default_rng(seed)
    images = _images(32, seed)
    # Responses that depend on the image, so the fit has something to learn.
    drive = images[:, 4:12, 4:14, 0].mean(axis=(1, 2)) / 255.0
    responses = rng.poisson(np.outer(drive, np.linspace(1.0, 3.0, _N_NEURONS))).astype("float32")
    ks.compile_model(model, learning_rate=0.01, jit_compile=False)
    before = model.evaluate(images, responses, verbose=0, return_dict=True)["loss"]
    model.fit(images, responses, batch_size=32, epochs=15, verbose=0, shuffle=False)
    after = model.evaluate(images, responses, verbose=0, return_dict=True)["loss"]
    return before, after


# -- readouts -------------------------------------------------------------------


@pytest.mark.parametrize("name", _READOUTS)
def test_readout_is_registered_by_type_name_and_gettable(name):
    cls = ks.readouts.registry()[name]
    assert issubclass(cls, ks.readouts.Readout) and cls.type_name == name
    layer = ks.readouts.get(name, n_neurons=3)
    assert isinstance(layer, cls) and layer.n_neurons == 3
    again = ks.readouts.get(keras.saving.serialize_keras_object(layer), n_neurons=4)
    assert type(again) is cls and again.n_neurons == 4
    assert ks.readouts.get(layer) is layer
    with pytest.raises(ValueError, match="n_neurons"):
        ks.readouts.get(name, n_neurons=0)


@pytest.mark.parametrize("name", _READOUTS)
def test_readout_output_shape_bias_and_config(name):
    layer = ks.readouts.get(name, n_neurons=_N_NEURONS)
    maps = np.random.default_rng(0).normal(size=(3, 9, 11, 4)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(maps))
    assert out.shape == (3, _N_NEURONS) == tuple(layer.compute_output_shape(maps.shape))
    assert np.all(np.isfinite(out))
    assert layer.grid_shape[0] >= 1 and layer.input_channels == 4
    # The bias is created last (weight files keep their order) and is what the
    # model sets from mean responses.
    assert layer.trainable_weights[-1] is layer.bias and tuple(layer.bias.shape) == (_N_NEURONS,)
    config = layer.get_config()
    assert config["n_neurons"] == _N_NEURONS
    assert type(layer).from_config(config).get_config() == config
    with pytest.raises(ValueError, match="feature maps"):
        ks.readouts.get(name, n_neurons=2)(np.zeros((2, 9, 11), "float32"))


@pytest.mark.parametrize("name", _READOUTS)
def test_readout_penalty_is_finite_and_added_as_a_layer_loss(name):
    layer = ks.readouts.get(name, n_neurons=_N_NEURONS)
    layer(np.ones((2, 9, 11, 4), "float32"))
    penalty = float(keras.ops.convert_to_numpy(layer.penalty()))
    assert np.isfinite(penalty) and penalty >= 0.0
    if layer.has_penalty():
        assert len(layer.losses) == 1
        assert float(keras.ops.convert_to_numpy(layer.losses[0])) == pytest.approx(penalty, rel=1e-5)
        assert keras.backend.standardize_dtype(layer.losses[0].dtype) == "float32"
    else:
        assert not layer.losses


@pytest.mark.parametrize("name", _READOUTS)
def test_readout_weight_counts_survive_a_keras_round_trip_with_identical_predictions(name, tmp_path):
    model = _model(name)
    images = _images()
    expected = model.predict(images, verbose=0)
    loaded = _keras_round_trip(model, tmp_path, name)
    assert type(loaded.readout) is type(model.readout)
    assert _weight_counts(loaded.readout) == _weight_counts(model.readout)
    assert [tuple(w.shape) for w in loaded.readout.weights] == [tuple(w.shape) for w in model.readout.weights]
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), expected)
    # Frozen, every weight is non-trainable.
    model.readout.trainable = False
    trainable, non_trainable, _ = _weight_counts(model.readout)
    assert trainable == 0 and non_trainable == len(model.readout.weights)


@pytest.mark.parametrize("name", _READOUTS)
def test_readout_a_few_steps_reduce_the_loss(name):
    before, after = _loss_drops(_model(name))
    assert after < before


@pytest.mark.parametrize("name", _READOUTS)
def test_readout_positions_placement_and_flops_keep_the_contract(name):
    model = _model(name)
    readout = model.readout
    assert isinstance(readout.flops_per_image(), int) and readout.flops_per_image() > 0
    try:
        on_grid = readout.rf_positions()
    except NotImplementedError as error:
        assert type(readout).__name__ in str(error)
    else:
        assert on_grid.shape == (_N_NEURONS, 2) and np.all(np.isfinite(on_grid))
        weights = readout.channel_weights()
        assert weights.shape == (3, _N_NEURONS) and np.all(weights >= 0)
    target = np.column_stack([np.linspace(1.0, model.grid_shape[0] - 2.0, _N_NEURONS),
                              np.linspace(2.0, model.grid_shape[1] - 2.0, _N_NEURONS)[::-1]])
    # The neurons' metadata first, for a readout whose positions follow it (cortical coordinates).
    readout.setup_from_data(ks.readouts.NeuronEvidence(neurons={"cell_motor_coordinates": _cortex(target)}))
    try:
        readout.place_at(target)
    except NotImplementedError as error:
        assert type(readout).__name__ in str(error)
        return
    # Placed neurons report (about) the positions they were placed at.
    np.testing.assert_allclose(readout.rf_positions(), target, atol=0.51)
    with pytest.raises(ValueError, match="positions"):
        readout.place_at(target[:-1])
    with pytest.raises(ValueError, match="NaN"):
        readout.place_at(np.full_like(target, np.nan))


@pytest.mark.parametrize("name", _READOUTS)
def test_readout_sets_itself_up_from_data_through_the_hook(name):
    model = _model(name)
    readout = model.readout
    images = _images()
    expected = model.predict(images, verbose=0)
    target = np.column_stack([np.linspace(1.0, model.grid_shape[0] - 2.0, _N_NEURONS),
                              np.linspace(2.0, model.grid_shape[1] - 2.0, _N_NEURONS)[::-1]])
    asked = []

    def locate():
        asked.append(True)
        return target

    readout.setup_from_data(ks.readouts.NeuronEvidence(neurons={"cell_motor_coordinates": _cortex(target)},
                                                       locate=locate))
    if getattr(readout, "start_from_data", False):
        # Started where the data place each neuron.
        np.testing.assert_allclose(readout.rf_positions(), target, atol=0.51)
    else:
        # The data's positions are estimated only for a readout that asks for them.
        assert not asked
        np.testing.assert_array_equal(model.predict(images, verbose=0), expected)


# -- cores ----------------------------------------------------------------------


def _core_spec(name):
    return _SMALL_CORE if name == "stacked_conv2d" else {"type": name}


@pytest.mark.parametrize("name", _CORES)
def test_core_is_registered_shapes_and_config(name):
    cls = ks.cores.registry()[name]
    assert issubclass(cls, ks.cores.Core) and cls.type_name == name
    core = ks.cores.get(_core_spec(name))
    assert isinstance(core, cls) and ks.cores.get(core) is core
    images = _images(2)
    out = keras.ops.convert_to_numpy(core(images))
    assert out.ndim == 4 and out.shape == tuple(core.compute_output_shape(images.shape))
    config = core.get_config()
    assert type(core).from_config(config).get_config() == config
    with pytest.raises(ValueError, match="rank"):
        ks.cores.get(_core_spec(name)).build((16, 18, 1))


@pytest.mark.parametrize("name", _CORES)
def test_core_round_trip_penalties_and_training(name, tmp_path):
    # A fully connected readout: every core, even the identity, then has weights to fit.
    readout = {"type": "fully_connected", "l2": 0.01}
    model = _model(readout, core=_core_spec(name))
    images = _images()
    expected = model.predict(images, verbose=0)
    loaded = _keras_round_trip(model, tmp_path, f"core_{name}")
    assert _weight_counts(loaded.core) == _weight_counts(model.core)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), expected)
    model(images[:2], training=True)
    for loss in model.core.losses:
        assert np.isfinite(float(keras.ops.convert_to_numpy(loss)))
    before, after = _loss_drops(model)
    assert after < before
