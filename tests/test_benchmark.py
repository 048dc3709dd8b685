"""The FLOP count behind the benchmark's utilisation figure."""

import numpy as np

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
