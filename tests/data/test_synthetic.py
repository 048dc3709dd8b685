import numpy as np
import pytest

from keras_sysid.data import make_dataset, make_population


@pytest.mark.parametrize("ground_truth", ["dog", "cnn"])
def test_population_shapes_seed_and_truth(ground_truth):
    kwargs = dict(n_neurons=12, n_types=3, image_size=24, n_train=40, n_validation=8, n_test=16, seed=3)
    pop = make_population(ground_truth, **kwargs)
    again = make_population(ground_truth, **kwargs)
    assert pop.train.images.shape == (40, 24, 24, 1) and pop.train.images.dtype == np.float32
    assert pop.train.responses.shape == (40, 12)
    assert pop.test.clean_responses.shape == (16, 12)
    assert pop.locations.shape == (12, 2) and pop.types.tolist() == [0, 1, 2] * 4
    assert np.all((pop.locations >= 6) & (pop.locations < 18))
    np.testing.assert_array_equal(pop.train.responses, again.train.responses)
    # The kept generator reproduces the clean rates, and noise is on top of them.
    np.testing.assert_allclose(pop.model.respond(pop.test.images), pop.test.clean_responses, rtol=1e-5, atol=1e-6)
    assert np.all(pop.train.clean_responses > 0)
    assert not np.allclose(pop.train.responses, pop.train.clean_responses)
    different = make_population(ground_truth, **{**kwargs, "seed": 4})
    assert not np.allclose(different.train.responses, pop.train.responses)


def test_mean_rate_is_the_target():
    pop = make_population("dog", n_neurons=50, n_train=2000, image_size=32, mean_rate=2.0)
    assert pop.train.clean_responses.mean() == pytest.approx(2.0, rel=0.05)


def test_dog_cell_is_a_linear_filter_at_its_location():
    pop = make_population("dog", n_neurons=3, image_size=32, n_train=4, n_validation=1, n_test=1)
    filters = pop.model.filters
    for index, (row, col) in enumerate(pop.locations.astype(int)):
        peak = np.unravel_index(np.argmax(filters[index]), filters[index].shape)
        assert peak == (row, col)  # centre of an ON centre-surround cell


def test_cnn_ground_truth_is_even_so_linear_models_fail():
    pop = make_population("cnn", n_neurons=20, n_types=4, image_size=24, n_train=8, n_validation=1, n_test=1)
    images = pop.train.images
    np.testing.assert_allclose(pop.model.respond(images), pop.model.respond(-images), rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown ground truth"):
        make_population("gabor")
    with pytest.raises(ValueError, match="n_neurons"):
        make_population(n_neurons=0)
    with pytest.raises(ValueError, match="margin"):
        make_population("dog", margin=2)


def test_dataset_batches_and_validates():
    pop = make_population("dog", n_neurons=5, image_size=20, n_train=10, n_validation=3, n_test=3)
    batches = list(pop.dataset("train", batch_size=4))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    assert batches[0][1].shape == (4, 5)
    first = np.concatenate([b[1].numpy() for b in pop.dataset("train", batch_size=4, seed=1)])
    second = np.concatenate([b[1].numpy() for b in pop.dataset("train", batch_size=4, seed=1)])
    np.testing.assert_array_equal(first, second)
    with pytest.raises(ValueError, match="split"):
        pop.dataset("test2")
    with pytest.raises(ValueError, match="3 trials but there are 4 images"):
        make_dataset(np.zeros((4, 5, 5, 1)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="empty"):
        make_dataset(np.zeros((0, 5, 5, 1)), np.zeros((0, 2)))


def test_new_neurons_share_the_features_of_the_population():
    from keras_sysid.data.synthetic import new_neurons

    old = make_population("cnn", n_neurons=40, n_types=3, image_size=24, n_train=64, n_validation=8, n_test=8, seed=0)
    new = new_neurons(old, n_neurons=10, n_train=32, n_validation=8, n_test=16, seed=5)
    assert new.n_neurons == 10 and new.train.images.shape == (32, 24, 24, 1)
    np.testing.assert_array_equal(new.model.layer1, old.model.layer1)
    # A new neuron computes the old feature map of its type, read at its place,
    # through the old output stage of its type.
    maps = old.model.feature_maps(new.test.images)
    stage = old.model.output
    for neuron in range(10):
        kind = new.types[neuron]
        reference = int(np.flatnonzero(old.types == kind)[0])
        row, col = new.locations[neuron].astype(int) - 4
        z = (maps[:, row, col, kind] - stage.drive_mean[reference]) / stage.drive_std[reference]
        expected = np.logaddexp(0.0, stage.gain * z + stage.offset)
        np.testing.assert_allclose(new.test.clean_responses[:, neuron], expected, rtol=1e-5, atol=1e-6)


def test_epoch_stream_passes_per_epoch_make_longer_epochs_that_resume_exactly():
    from keras_sysid.data.pipeline import EpochStream

    images = np.arange(10 * 4, dtype="float32").reshape(10, 2, 2, 1)
    responses = np.arange(10, dtype="float32")[:, None]
    single = EpochStream(images, responses, batch_size=4, seed=2)
    triple = EpochStream(images, responses, batch_size=4, seed=2, passes_per_epoch=3)
    assert (single.steps_per_epoch, triple.steps_per_epoch) == (3, 9)
    # One triple epoch is three single passes; starting at triple epoch 1 is starting at pass 3.
    passes = [b[1].numpy().ravel().tolist() for b in single.dataset().take(12)]
    assert [b[1].numpy().ravel().tolist() for b in triple.dataset().take(9)] == passes[:9]
    assert [b[1].numpy().ravel().tolist() for b in triple.dataset(first_epoch=1).take(3)] == passes[9:12]
    with pytest.raises(ValueError, match="passes_per_epoch"):
        EpochStream(images, responses, passes_per_epoch=0)
