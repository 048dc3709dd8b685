"""The zero-inflated gamma loss: the likelihood of keras_sysid.information_gain's family, serializable, usable in fits."""

import keras
import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid import information_gain as ig
from keras_sysid.losses import ZeroInflatedGammaLoss
from keras_sysid.training import fit_with_schedule


def _calcium_like(rng, trials, n_neurons):
    """Silent trials at 1e-8, events with probability growing with a rate, gamma sizes."""
    rates = rng.gamma(1.0, 1.0, size=(trials, n_neurons))
    events = rng.random(rates.shape) < 1 - np.exp(-rates)
    return np.where(events, rng.gamma(2.0, rates), 1e-8 * rng.random(rates.shape)), rates


def test_differences_of_the_loss_are_the_families_log_likelihood_differences():
    rng = np.random.default_rng(0)
    responses, rates = _calcium_like(rng, 64, 5)
    loss = ZeroInflatedGammaLoss.from_responses(responses)
    loc, size, shape = (np.array(v) for v in (loss.loc, loss.event_size, loss.shape))

    def log_likelihood(means):
        q = 1 - np.exp(-means / size)
        return ig.zig_log_density(responses, loc, q, ig.excess_for_mean(loc, q, means), shape).sum(1).mean()

    first, second = rates + 0.05, 2 * rates + 0.1
    keras_difference = float(loss(responses, first.astype("float32")) - loss(responses, second.astype("float32")))
    numpy_difference = -(log_likelihood(first) - log_likelihood(second))
    assert keras_difference == pytest.approx(numpy_difference, rel=1e-3, abs=1e-3)


def test_the_loss_prefers_the_true_rates_and_round_trips_its_config():
    rng = np.random.default_rng(1)
    responses, rates = _calcium_like(rng, 2000, 3)
    loss = ZeroInflatedGammaLoss.from_responses(responses)
    flat = np.broadcast_to(responses.mean(0), responses.shape).astype("float32")
    assert float(loss(responses, rates.astype("float32"))) < float(loss(responses, flat))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, ZeroInflatedGammaLoss) and restored.get_config() == loss.get_config()


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="one value per neuron"):
        ZeroInflatedGammaLoss(loc=[0.1, 0.1], event_size=[1.0], shape=[1.0, 1.0])
    with pytest.raises(ValueError, match="loc > 0"):
        ZeroInflatedGammaLoss(loc=[0.0], event_size=[1.0], shape=[1.0])


def test_fit_with_schedule_trains_with_the_loss_and_refuses_another_neuron_count():
    rng = np.random.default_rng(2)
    images = rng.normal(size=(48, 12, 12, 1)).astype("float32")
    responses = _calcium_like(rng, 48, 4)[0].astype("float32")
    model = ks.build_model(n_neurons=4, image_shape=(12, 12), core={"type": "identity"},
                           readout={"type": "factorized"}, mean_responses=responses.mean(0))
    loss = ZeroInflatedGammaLoss.from_responses(responses[:32])
    history = fit_with_schedule(model, (images[:32], responses[:32]), (images[32:], responses[32:]), max_epochs=2,
                                verbose=0, batch_size=16, loss=loss)
    assert len(history.epoch) == 2 and np.all(np.isfinite(history.history["loss"]))
    assert model.loss is loss
    with pytest.raises(ValueError, match="parameters for 3 neurons but the model predicts 4"):
        fit_with_schedule(model, (images[:32], responses[:32]), (images[32:], responses[32:]), max_epochs=1,
                          verbose=0, loss=ZeroInflatedGammaLoss.from_responses(responses[:32, :3]))
