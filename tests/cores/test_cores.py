import keras
import numpy as np
import pytest

from keras_sysid import cores, positions, regularizers

LAPLACIAN = np.array(regularizers._LAPLACIAN_3X3)


def _conv_same(image, kernel):
    padded = np.pad(image, 1)
    out = np.zeros_like(image)
    for r in range(image.shape[0]):
        for c in range(image.shape[1]):
            out[r, c] = np.sum(padded[r : r + 3, c : c + 3] * kernel)
    return out


def test_laplacian_smoothness_matches_hand_computation():
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((5, 5, 2, 3)).astype("float32")
    expected = 0.0
    for out in range(3):
        energy = np.sum(kernel[:, :, :, out] ** 2)
        for inp in range(2):
            expected += np.sum(_conv_same(kernel[:, :, inp, out], LAPLACIAN) ** 2) / energy
    value = keras.ops.convert_to_numpy(regularizers.LaplacianSmoothness(0.5)(keras.ops.convert_to_tensor(kernel)))
    np.testing.assert_allclose(value, 0.5 * expected, rtol=1e-5)


def test_laplacian_smoothness_is_scale_invariant_and_zero_for_planes():
    rng = np.random.default_rng(1)
    kernel = rng.standard_normal((7, 7, 1, 2)).astype("float32")
    penalty = regularizers.LaplacianSmoothness(1.0)
    a = float(keras.ops.convert_to_numpy(penalty(kernel)))
    b = float(keras.ops.convert_to_numpy(penalty(10 * kernel)))
    assert a == pytest.approx(b, rel=1e-5)
    # A constant filter has zero curvature inside; only the zero-padded border curves.
    flat = np.ones((7, 7, 1, 1), "float32")
    assert float(keras.ops.convert_to_numpy(penalty(flat))) < a


def test_group_sparsity_matches_hand_computation():
    rng = np.random.default_rng(2)
    kernel = rng.standard_normal((3, 3, 4, 5)).astype("float32")
    expected = 0.1 * np.sum(np.sqrt(np.sum(kernel**2, axis=(0, 1))))
    value = keras.ops.convert_to_numpy(regularizers.GroupSparsity(0.1)(kernel))
    np.testing.assert_allclose(value, expected, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, image, expected",
    [
        ({}, (36, 64), (24, 52, 48)),
        ({"channels": [8, 4], "kernel_sizes": [9, 3], "paddings": "same"}, (20, 30), (20, 30, 4)),
        ({"channels": 2, "kernel_sizes": [13], "batch_norm": False}, (48, 48), (36, 36, 2)),
    ],
)
def test_stacked_core_shapes(kwargs, image, expected):
    core = cores.StackedConv2DCore(**kwargs)
    out = core(np.zeros((3, *image, 1), "float32"))
    assert tuple(out.shape) == (3, *expected)
    assert core.compute_output_shape((3, *image, 1)) == (3, *expected)


def test_stacked_core_adds_one_penalty_per_layer():
    core = cores.StackedConv2DCore(channels=4, kernel_sizes=[5, 3, 3], smoothness=0.1, group_sparsity=0.2)
    core(np.zeros((1, 16, 16, 1), "float32"))
    assert len(core.losses) == 3
    first = core.conv_layers[0].kernel
    expected_first = regularizers.LaplacianSmoothness(0.1)(first)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(core.losses[0]), keras.ops.convert_to_numpy(expected_first), rtol=1e-5
    )


def test_stacked_core_rejects_bad_config_and_tiny_images():
    with pytest.raises(ValueError, match="paddings"):
        cores.StackedConv2DCore(kernel_sizes=[3, 3], paddings=["valid"])
    with pytest.raises(ValueError, match="too small"):
        cores.StackedConv2DCore(kernel_sizes=[13])(np.zeros((1, 8, 8, 1), "float32"))
    with pytest.raises(ValueError, match="rank 3"):
        cores.StackedConv2DCore().build((36, 64, 1))


def test_stacked_core_config_round_trip():
    core = cores.StackedConv2DCore(channels=[4, 6], kernel_sizes=[5, 3], smoothness=0.2, name="c")
    clone = cores.StackedConv2DCore.from_config(core.get_config())
    assert clone.get_config() == core.get_config()


def test_channel_rf_offsets_finds_a_shifted_kernel():
    core = cores.StackedConv2DCore(channels=2, kernel_sizes=[9], batch_norm=False)
    core.build((None, 21, 21, 1))
    kernel = np.zeros((9, 9, 1, 2), "float32")
    kernel[4, 4, 0, 0] = 1.0  # centred
    kernel[2, 7, 0, 1] = 1.0  # 2 rows up, 3 columns right
    core.conv_layers[0].kernel.assign(kernel)
    offsets = positions.channel_rf_offsets(core, (21, 21))
    np.testing.assert_allclose(offsets, [[0.0, 0.0], [-2.0, 3.0]], atol=1e-6)
