"""Fits end by early stopping, the epoch cap is a safety that says so, and readouts start where the data say."""

import keras
import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid.training import stop_reason, stopping_line


class _History:
    def __init__(self, epochs, val_correlation):
        self.epoch = list(range(epochs))
        self.history = {"loss": [1.0] * epochs, "val_correlation": val_correlation}


def test_stop_reason_tells_early_stopping_from_the_cap_and_from_nan():
    assert stop_reason(_History(3, [0.1, 0.2, 0.2]), max_epochs=10) == "early_stopping"
    assert stop_reason(_History(10, [0.1] * 10), max_epochs=10) == "epoch_cap"
    assert stop_reason(_History(3, [0.1, 0.2, float("nan")]), max_epochs=10) == "not_finite"
    assert "epoch cap" in stopping_line({"stop_reason": "epoch_cap", "epochs": 10, "best_epoch": 9})
    assert "--max_epochs" in stopping_line({"stop_reason": "epoch_cap", "epochs": 10})
    assert stopping_line({"stop_reason": "early_stopping", "epochs": 7, "best_epoch": 3}).startswith(
        "stopped early at epoch 7 (best epoch 3)")


def test_an_epoch_sees_at_least_min_images_per_epoch():
    settings = ks.recipes.FitSettings(min_images_per_epoch=2048)
    assert settings.passes_per_epoch(540) == 4  # ceil(2048 / 540)
    assert settings.passes_per_epoch(5000) == 1
    assert ks.recipes.FitSettings(min_images_per_epoch=0).passes_per_epoch(10) == 1


@pytest.mark.parametrize("readout", ["gaussian", "gaussian_mask", "fixed_mask"])
def test_adapt_starts_each_neuron_where_its_responses_place_it(readout):
    """Cells anywhere in the image: a readout with positions starts at them, not in the grid's centre."""
    pop = ks.data.make_population("dog", n_neurons=30, n_train=1024, image_size=24, seed=0)
    keras.utils.set_random_seed(0)
    model = ks.build_model(n_neurons=30, image_shape=(24, 24), readout={"type": readout},
                           core={"type": "stacked_conv2d", "channels": 2, "kernel_sizes": [13], "paddings": "same"})
    model.adapt(pop.train.images * 40 + 128, pop.train.responses)
    error = np.linalg.norm(model.readout.rf_positions() - model.pixels_to_grid(pop.locations), axis=1)
    assert np.median(error) < 1.0 and np.mean(error < 2.0) > 0.75, np.sort(error)
    # Off, the readout keeps its own start (uniform in the central half for the Gaussian).
    keras.utils.set_random_seed(0)
    generic = ks.build_model(n_neurons=30, image_shape=(24, 24), readout={"type": readout, "start_from_data": False},
                             core={"type": "stacked_conv2d", "channels": 2, "kernel_sizes": [13], "paddings": "same"})
    generic.adapt(pop.train.images * 40 + 128, pop.train.responses)
    assert np.median(np.linalg.norm(generic.readout.rf_positions() - generic.pixels_to_grid(pop.locations), axis=1)) > 2.0


def test_noisy_positions_are_shrunk_towards_the_population_and_clear_ones_stand():
    """Neurons whose responses are noise start near the population's centre; cells with a receptive field at it."""
    pop = ks.data.make_population("dog", n_neurons=20, n_train=1024, image_size=24, seed=1)
    noise = np.random.default_rng(0).poisson(2.0, size=(1024, 20)).astype("float32")
    responses = np.concatenate([pop.train.responses, noise], axis=1)
    raw = ks.positions.envelope_positions(pop.train.images, responses)
    shrunk = ks.positions.shrunk_envelope_positions(pop.train.images, responses)
    centre = np.median(raw, axis=0)
    assert np.median(np.linalg.norm(shrunk[:20] - pop.locations, axis=1)) < 0.5
    assert np.median(np.linalg.norm(shrunk[20:] - centre, axis=1)) < 0.7 * np.median(
        np.linalg.norm(raw[20:] - centre, axis=1))
