"""One's own arrays the obvious way (adapt, array fits, lists), and bad input named before any work."""

import warnings

import keras
import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid import evaluation, validation
from keras_sysid.data import EpochStream, make_dataset
from keras_sysid.models import variable_stats

_CORE = {"type": "stacked_conv2d", "channels": 2, "kernel_sizes": [5], "paddings": "same"}


def _model(n_neurons=10, **kwargs):
    keras.utils.set_random_seed(0)
    return ks.build_model(n_neurons=n_neurons, image_shape=(16, 16), core=_CORE, readout={"type": "factorized"},
                          **kwargs)


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(96, 16, 16, 1)).astype("float32")
    # Neurons on very different scales, as deconvolved calcium traces are.
    responses = (rng.poisson(1.0, size=(96, 10)) * np.logspace(-2, 2, 10)).astype("float32")
    return images, responses


def test_adapt_learns_input_statistics_response_scale_and_mean_rates(arrays):
    images, responses = arrays
    model = _model()
    assert model.adapt(images, responses) is model
    assert model.image_mean == pytest.approx(images.mean(dtype="float64"))
    assert model.image_std == pytest.approx(images.std(dtype="float64"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.response_scale.value),
                               ks.normalization.response_scale(responses), rtol=1e-6)
    # The readout bias is set so that the model starts near every neuron's mean, in the data's units.
    predicted = model.predict(images, verbose=0).mean(axis=0)
    np.testing.assert_allclose(predicted, responses.mean(axis=0), rtol=0.1)
    # The statistics are part of the saved config.
    assert model.get_config()["image_mean"] == model.image_mean


def test_adapt_refuses_bad_arrays_and_state_the_model_does_not_take(arrays):
    images, responses = arrays
    with pytest.raises(ValueError, match="constant"):
        _model().adapt(np.full_like(images, 3.0))
    with pytest.raises(ValueError, match="have 9 neurons but the model predicts 10"):
        _model().adapt(images, responses[:, :9])
    with pytest.raises(ValueError, match="does not take 'behavior'"):
        _model().adapt(images, responses, behavior=np.zeros((96, 3)))
    with pytest.raises(ValueError, match="negative mean response"):
        _model().adapt(images, responses - 100)
    stateful = _model(behavior_channels=True, behavior_stats={"mean": [0.0, 0.0], "std": [1.0, 1.0]})
    behavior = np.random.default_rng(1).normal(3.0, 2.0, size=(96, 2))
    stateful.adapt(images, responses, behavior=behavior)
    assert stateful.behavior_stats == variable_stats(behavior)


def test_the_loss_weighs_neurons_by_their_scale(arrays):
    images, responses = arrays
    scaled = _model().adapt(images, responses)
    plain = _model(image_mean=scaled.image_mean, image_std=scaled.image_std)
    plain.set_weights(scaled.get_weights())
    plain.set_response_scale(np.ones(10))
    scale = keras.ops.convert_to_numpy(scaled.response_scale.value)
    for model in (scaled, plain):
        model.compile(loss=ks.PoissonLoss(), jit_compile=False)
    # Predictions in data units against data, in units of each neuron's scale, equal
    # the unscaled model against responses divided by the scale.
    loss_scaled = scaled.evaluate(images, responses, verbose=0, batch_size=96)
    loss_plain = plain.evaluate(images, responses / scale, verbose=0, batch_size=96)
    assert loss_scaled == pytest.approx(loss_plain, rel=1e-5)


def test_fit_with_schedule_takes_arrays_as_the_same_epoch_stream(arrays):
    images, responses = arrays
    from_arrays = _model().adapt(images, responses)
    history = ks.fit_with_schedule(from_arrays, (images, responses), (images[:32], responses[:32]), max_epochs=2,
                                   verbose=0, batch_size=32, seed=3)
    assert len(history.epoch) == 2
    from_stream = _model().adapt(images, responses)
    ks.fit_with_schedule(from_stream, EpochStream(images, responses, batch_size=32, seed=3),
                         (images[:32], responses[:32]), max_epochs=2, verbose=0)
    for a, b in zip(from_arrays.get_weights(), from_stream.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_lists_of_arrays_are_the_models_inputs(arrays):
    images, _ = arrays
    model = _model()
    expected = model.predict(images[:5], verbose=0)
    np.testing.assert_allclose(model.predict([images[:5]], verbose=0), expected, rtol=1e-6)
    np.testing.assert_allclose(model.predict(list(images[:5]), verbose=0), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="list of 2 arrays; this model takes 1"):
        model.predict([images[:5], images[:5]], verbose=0)
    stateful = _model(behavior_channels=True, behavior_stats={"mean": [0.0], "std": [1.0]})
    behavior = np.ones((5, 1), "float32")
    np.testing.assert_allclose(stateful.predict([images[:5], behavior], verbose=0),
                               stateful.predict({"images": images[:5], "behavior": behavior}, verbose=0), rtol=1e-6)


def test_a_wrong_neuron_count_is_named_for_arrays_streams_and_datasets(arrays):
    images, responses = arrays
    wrong = np.zeros((96, 20), "float32")
    message = "training responses have 20 neurons but the model predicts 10"
    for train in ((images, wrong), EpochStream(images, wrong), make_dataset(images, wrong)):
        with pytest.raises(ValueError, match=message):
            ks.fit_with_schedule(_model(), train, (images, responses), max_epochs=1, verbose=0)
    model = ks.compile_model(_model(), jit_compile=False)
    with pytest.raises(ValueError, match=message):
        model.fit(make_dataset(images, wrong), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="validation responses have 20 neurons"):
        model.fit(images, responses, validation_data=make_dataset(images, wrong), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="evaluation images have shape"):
        model.evaluate(make_dataset(np.zeros((8, 12, 12, 1)), np.zeros((8, 10))), verbose=0)


def test_responses_a_poisson_loss_cannot_model_are_refused_small_negatives_are_not(arrays):
    images, responses = arrays
    with pytest.raises(ValueError, match="10 of 10 neurons have a negative mean response.*responses.min"):
        ks.fit_with_schedule(_model(), (images, responses - 500), (images, responses), max_epochs=1, verbose=0)
    model = ks.compile_model(_model(), jit_compile=False)
    with pytest.raises(ValueError, match="negative mean response"):
        model.fit(images, responses - 500, epochs=1, verbose=0)
    deconvolved = responses.copy()
    deconvolved[::7, 0] = -0.01  # deconvolution noise: fine
    ks.fit_with_schedule(_model(), (images, deconvolved), (images, responses), max_epochs=1, verbose=0)
    # Another loss: the user's choice, not checked.
    other = _model()
    other.compile(optimizer="adam", loss="mse", jit_compile=False)
    other.fit(images, responses - 500, epochs=1, verbose=0)


def test_images_off_the_training_scale_warn(arrays):
    images, responses = arrays
    model = _model().adapt(images, responses)
    with pytest.warns(UserWarning, match="fitted on images with mean 12[0-9]"):
        model.predict(images / 255.0, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(images, verbose=0)
        model.predict(np.full((2, 16, 16, 1), 128.0, "float32"), verbose=0)  # a grey screen is a stimulus
        _model().predict(images / 255.0, verbose=0)  # default statistics: the scale is unknown


def test_warn_if_off_scale_thresholds():
    rng = np.random.default_rng(0)
    natural = rng.normal(110, 60, size=(10, 8, 8, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validation.warn_if_off_scale(natural, 111.0, 61.0)
        validation.warn_if_off_scale(natural * 0.5 + 55, 111.0, 61.0)  # half the contrast
    with pytest.warns(UserWarning):
        validation.warn_if_off_scale(natural + 400, 111.0, 61.0)


def test_scoring_a_tier_without_repeats_is_refused_before_computing():
    responses = np.ones((4, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning on the way to the error
        with pytest.raises(ValueError, match="No image of the trials given was shown more than once"):
            evaluation.score_repeats(responses, responses, [np.array([i]) for i in range(4)])


def test_the_spec_check_compares_only_what_a_dataset_knows(arrays):
    import tensorflow as tf

    images, responses = arrays
    unknown = tf.data.Dataset.from_generator(
        lambda: iter([(images[:32], responses[:32])]),
        output_signature=(tf.TensorSpec((None, None, None, 1), tf.float32), tf.TensorSpec((None, 10), tf.float32)))
    model = ks.compile_model(_model(), jit_compile=False)
    validation.check_element_spec(unknown, model.input_shapes(), model.n_neurons, "training")  # nothing to refuse
    wrong = tf.data.Dataset.from_generator(
        lambda: iter([(images[:32], responses[:32])]),
        output_signature=(tf.TensorSpec((None, 12, None, 1), tf.float32), tf.TensorSpec((None, 10), tf.float32)))
    with pytest.raises(ValueError, match="training images have shape"):
        model.fit(wrong, epochs=1, verbose=0)


def test_adapt_takes_the_dict_of_inputs_and_names_a_missing_image_array(arrays):
    images, responses = arrays
    behavior = np.random.default_rng(1).normal(3.0, 2.0, size=(96, 2))
    model = _model(behavior_channels=True, behavior_stats={"mean": [0.0, 0.0], "std": [1.0, 1.0]})
    model.adapt({"images": images, "behavior": behavior}, responses)
    assert model.behavior_stats == variable_stats(behavior) and model.image_mean == pytest.approx(images.mean())
    with pytest.raises(ValueError, match="adapt needs the training images as an array"):
        _model().adapt({"behavior": behavior}, responses)


def test_a_single_unchanneled_array_in_a_list_gets_the_channel_hint(arrays):
    images, _ = arrays
    with pytest.raises(ValueError, match="add a trailing channel axis"):
        _model().predict([images[..., 0]], verbose=0)


def test_the_scaled_loss_keeps_float32_targets_under_mixed_precision(arrays):
    images, responses = arrays
    targets = responses[:8] + 0.0123  # not representable in bfloat16
    model = _model()
    predictions = model.predict(images[:8], verbose=0)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = _model()
        mixed.set_weights(model.get_weights())
        mixed.compile(loss=ks.PoissonLoss(), jit_compile=False)
        loss = float(mixed.compute_loss(y=targets, y_pred=keras.ops.convert_to_tensor(predictions, "bfloat16")))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rounded = keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.convert_to_tensor(predictions, "bfloat16"), "float32"))
    expected = float(np.mean(np.sum(rounded - targets * np.log(rounded + 1e-8), axis=1)))
    assert loss == pytest.approx(expected + sum(float(l) for l in mixed.losses), rel=1e-5)
