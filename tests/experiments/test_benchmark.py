"""The FLOP count behind the benchmark's utilisation figure."""

import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid.experiments import benchmark


def test_training_flops_follow_the_layer_shapes():
    model = ks.build_model(
        n_neurons=100, image_shape=(36, 64), core={"type": "stacked_conv2d", "channels": 48, "kernel_sizes": [13, 3, 3]},
        readout={"type": "factorized"},
    )
    forward = benchmark.forward_flops_per_image(model)
    first = 2 * 24 * 52 * 13 * 13 * 1 * 48
    later = 2 * 24 * 52 * 3 * 3 * 48 * 48
    assert forward["core"] == first + 2 * later
    assert forward["readout"] == 2 * 48 * 24 * 52 * 100 + 2 * 48 * 100
    # Backward is twice the forward pass, except the first layer's input gradient.
    assert benchmark.training_flops_per_image(model) == 3 * (forward["core"] + forward["readout"]) - first


def test_readout_flops_grow_linearly_with_neurons():
    flops = [
        benchmark.forward_flops_per_image(
            ks.build_model(n_neurons=n, image_shape=(20, 20), core={"type": "stacked_conv2d", "channels": 4, "kernel_sizes": [5]},
                           readout={"type": "gaussian"})
        )["readout"]
        for n in (10, 20, 40)
    ]
    assert np.allclose(np.diff(flops), [flops[0], 2 * flops[0]])


def test_a_point_read_counts_four_cells_per_neuron_in_the_useful_flops():
    model = ks.build_model(
        n_neurons=100, image_shape=(36, 64), core={"type": "stacked_conv2d", "channels": 48, "kernel_sizes": [13, 3, 3]},
        readout={"type": "gaussian"},
    )
    assert benchmark.forward_flops_per_image(model)["readout"] == 2 * 4 * 48 * 100


def test_without_tensorflow_the_benchmark_feeds_shuffled_numpy_batches(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # "import tensorflow" now raises ImportError
    images = np.arange(10 * 2 * 2 * 1, dtype="float32").reshape(10, 2, 2, 1)
    responses = np.arange(10 * 3, dtype="float32").reshape(10, 3)
    stream = benchmark._training_stream(images, responses, batch_size=4, seed=0)
    assert len(stream) == 2
    batch_images, batch_responses = stream[0]
    assert batch_images.shape == (4, 2, 2, 1) and batch_responses.shape == (4, 3)
    # Images and responses stay paired.
    np.testing.assert_array_equal(batch_images[:, 0, 0, 0] / 4, batch_responses[:, 0] / 3)


def test_an_uninstalled_or_unknown_backend_is_named():
    with pytest.raises(ValueError, match="Unknown Keras backend 'theano'"):
        benchmark.matmul_rate(backend="theano")
