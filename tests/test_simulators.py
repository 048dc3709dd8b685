import keras
import numpy as np
import pytest

from keras_sysid.data import make_population
from keras_sysid.simulators import groundtruth_model


@pytest.mark.parametrize("ground_truth", ["dog", "cnn"])
def test_groundtruth_model_reproduces_the_noise_free_rates(ground_truth, tmp_path):
    population = make_population(ground_truth, n_neurons=12, n_types=3, image_size=24, n_train=16,
                                 n_validation=4, n_test=32, seed=3)
    simulator = groundtruth_model(population)
    expected = population.test.clean_responses
    predicted = simulator.predict(population.test.images, verbose=0)
    np.testing.assert_allclose(predicted, expected, rtol=1e-4, atol=1e-4)
    path = str(tmp_path / "truth.keras")
    simulator.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(population.test.images, verbose=0), predicted, rtol=1e-6)
