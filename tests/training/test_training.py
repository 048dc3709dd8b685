import keras
import numpy as np

import keras_sysid as ks
from keras_sysid.experiments.presets import SyntheticRunConfig
from keras_sysid.recipes.synthetic import run_synthetic
from keras_sysid.training import EarlyStoppingWithDecay, compile_model


class _FakeModel:
    """Stands in for a Keras model: weights are one number, the epoch's loss."""

    def __init__(self):
        self.optimizer = keras.optimizers.Adam(0.9)
        self.stop_training = False
        self.weights = [np.array(0.0)]

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [w.copy() for w in weights]


def test_schedule_restores_best_decays_three_times_then_stops():
    callback = EarlyStoppingWithDecay(patience=2, n_decays=3, verbose=0)
    model = _FakeModel()
    callback.set_model(model)
    callback.on_train_begin()
    losses = [5.0, 4.0, 4.5, 4.6, 3.0, 3.5, 3.6, 3.7, 3.8, 3.9, 3.9, 3.9]
    rates, stopped_at = [], None
    for epoch, loss in enumerate(losses):
        model.weights = [np.array(loss)]
        callback.on_epoch_end(epoch, {"val_loss": loss})
        rates.append(float(model.optimizer.learning_rate.numpy()))
        if model.stop_training:
            stopped_at = epoch
            break
    callback.on_train_end()
    np.testing.assert_allclose(rates[3], 0.3)  # first plateau: epochs 2, 3
    np.testing.assert_allclose(rates[-1], 0.9 / 27)
    assert stopped_at == 10  # plateaus end at epochs 3, 6, 8 (decays) and 10 (stop)
    assert float(model.weights[0]) == 3.0  # the best epoch's weights


def test_short_fit_recovers_rf_locations():
    config = SyntheticRunConfig(
        ground_truth="dog", n_neurons=40, n_types=2, image_size=28, n_train=3000, epochs=12, patience=3, seed=0
    )
    model, results = run_synthetic(config, verbose=0)
    assert results["frac_rf_within_1px"] >= 0.9, results
    assert results["fev"] > 0.5, results


def test_seeded_training_is_reproducible():
    def train():
        keras.utils.set_random_seed(7)
        pop = ks.data.make_population("dog", n_neurons=6, image_size=20, n_train=64, n_validation=8, n_test=8)
        model = ks.build_model(
            6, (20, 20), core={"type": "stacked_conv2d", "channels": 2, "kernel_sizes": [5]},
            mean_responses=pop.train.responses.mean(0),
        )
        compile_model(model)
        model.fit(pop.dataset("train", 16, seed=7), epochs=2, verbose=0)
        return model.get_weights()

    for a, b in zip(train(), train()):
        np.testing.assert_array_equal(a, b)


def test_schedule_in_max_mode_keeps_the_highest_correlation():
    callback = EarlyStoppingWithDecay(monitor="val_correlation", mode="max", patience=1, n_decays=0, verbose=0)
    model = _FakeModel()
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, value in enumerate([0.1, 0.3, 0.2]):
        model.weights = [np.array(value)]
        callback.on_epoch_end(epoch, {"val_correlation": value})
    assert model.stop_training
    callback.on_train_end()
    assert float(model.weights[0]) == 0.3
