"""The gathered point read equals the dense bilinear read it replaces (values and gradients)."""

import keras
import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid.readouts import _contraction, _point_read


def _dense_read(feature_maps, rows, columns, features):
    height, width = feature_maps.shape[1:3]
    mask = _contraction.triangle_mask(rows, columns, (height, width))
    return _contraction._contract(
        keras.ops.reshape(
            keras.ops.transpose(keras.ops.reshape(feature_maps, (feature_maps.shape[0], height * width, -1)), (0, 2, 1)),
            (-1, height * width),
        ),
        mask,
        features,
    )


def _value_and_gradients(function, arguments):
    """``function(*arguments)`` and the gradients of ``sum(output * probe)`` with respect to each argument."""
    probe = np.random.default_rng(7).standard_normal(
        keras.ops.convert_to_numpy(function(*[keras.ops.convert_to_tensor(a) for a in arguments])).shape
    ).astype("float32")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in arguments]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            output = function(*tensors)
            loss = tf.reduce_sum(output * probe)
        gradients = tape.gradient(loss, tensors)
    elif backend == "jax":
        import jax

        output = function(*arguments)
        gradients = jax.grad(lambda *a: (function(*a) * probe).sum(), argnums=tuple(range(len(arguments))))(*arguments)
    else:
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in arguments]
        output = function(*tensors)
        (output * torch.tensor(probe)).sum().backward()
        gradients = [t.grad for t in tensors]
    return keras.ops.convert_to_numpy(output), [keras.ops.convert_to_numpy(g) for g in gradients]


def _points(rng, height, width, n_neurons):
    rows = rng.uniform(0, height - 1, n_neurons)
    columns = rng.uniform(0, width - 1, n_neurons)
    # The grid's edges and corners, where the corner cells are clipped.
    rows[:4] = [0.0, height - 1, 0.0, height - 1]
    columns[:4] = [0.0, width - 1, width - 1, 0.0]
    # Many neurons in one cell: several blocks for it.
    rows[4:40] = 2.3
    columns[4:40] = 3.6
    return rows.astype("float32"), columns.astype("float32")


@pytest.mark.parametrize("block_size", [1, 4, 32])
@pytest.mark.parametrize("grid", [(7, 9), (1, 6), (5, 1)])
def test_point_read_equals_the_dense_bilinear_read_in_values_and_gradients(grid, block_size):
    rng = np.random.default_rng(0)
    height, width = grid
    n_neurons, channels = 57, 3
    feature_maps = rng.standard_normal((5, height, width, channels)).astype("float32")
    rows, columns = _points(rng, height, width, n_neurons)
    if height == 1:
        rows[:] = 0.0
    if width == 1:
        columns[:] = 0.0
    features = rng.standard_normal((channels, n_neurons)).astype("float32")
    arguments = [feature_maps, rows, columns, features]

    gathered, gathered_gradients = _value_and_gradients(
        lambda *a: _point_read.point_read(*a, block_size=block_size), arguments
    )
    dense, dense_gradients = _value_and_gradients(_dense_read, arguments)

    np.testing.assert_allclose(gathered, dense, rtol=1e-5, atol=1e-5)
    inside = (rows > 0) & (rows < height - 1) & (columns > 0) & (columns < width - 1)
    for name, got, expected in zip(["feature maps", "rows", "columns", "features"], gathered_gradients, dense_gradients):
        if name in ("rows", "columns"):
            # On the grid's edge lines the dense mask's kink has another one-sided derivative.
            got, expected = got[inside], expected[inside]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=name)


def test_gaussian_readout_predicts_as_the_dense_read_in_inference_and_training():
    rng = np.random.default_rng(1)
    layer = ks.readouts.GaussianReadout(300, seed=3)
    x = rng.standard_normal((4, 11, 13, 6)).astype("float32")
    layer(x)
    layer.mu.assign(rng.uniform(-1.2, 1.2, (300, 2)).astype("float32"))  # some outside: clipped
    for training in (False, True):
        rows, columns = layer.read_points(training=training)
        gathered = _point_read.point_read(keras.ops.convert_to_tensor(x), rows, columns, layer.features)
        dense = _contraction.masked_readout(
            keras.ops.convert_to_tensor(x),
            _contraction.triangle_mask(rows, columns, layer.grid_shape),
            layer.features,
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(gathered), keras.ops.convert_to_numpy(dense), rtol=1e-5, atol=1e-6
        )
    expected = keras.ops.convert_to_numpy(
        _contraction.masked_readout(keras.ops.convert_to_tensor(x), layer.read_mask(), layer.features) + layer.bias
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-6)


def test_the_mouse_v1_gaussian_zoo_model_predicts_as_with_the_dense_read(monkeypatch):
    model = ks.zoo.load("mouse_v1_gaussian")
    images = np.random.default_rng(2).uniform(0, 255, (8, *model.image_shape)).astype("float32")
    gathered = model.predict(images, verbose=0)

    def dense_drive(self, feature_maps, training=False):
        return _contraction.masked_readout(feature_maps, self.read_mask(feature_maps.dtype, training), self.features)

    monkeypatch.setattr(ks.readouts.GaussianReadout, "drive", dense_drive)
    dense_model = ks.zoo.load("mouse_v1_gaussian")
    dense = dense_model.predict(images, verbose=0)
    np.testing.assert_allclose(gathered, dense, rtol=1e-5, atol=1e-5)


def test_the_gathered_read_counts_four_cells_per_neuron():
    layer = ks.readouts.GaussianReadout(100)
    layer.build((None, 24, 52, 48))
    assert layer.flops_per_image() == 2 * 4 * 48 * 100
