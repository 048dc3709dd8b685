"""In-silico experiments: MEIs, input gradients and gradient receptive fields, on models with a known answer."""

import keras
import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid import insilico
from keras_sysid.insilico._gradients import NeuronGradients

_H, _W = 12, 16


def _linear_model(filters):
    """One linear neuron per filter: ``response_n = <filter_n, image>``."""
    filters = np.asarray(filters, "float32")
    model = keras.Sequential([keras.Input((_H, _W, 1)), keras.layers.Conv2D(len(filters), (_H, _W), use_bias=False),
                              keras.layers.Flatten()])
    model.layers[0].set_weights([np.transpose(filters, (1, 2, 0))[:, :, None, :]])
    return model


def _gaussian_blob(center, sigma):
    rows, cols = np.meshgrid(np.arange(_H), np.arange(_W), indexing="ij")
    return np.exp(-((rows - center[0]) ** 2 + (cols - center[1]) ** 2) / (2 * sigma**2))


@pytest.fixture(scope="module")
def filters():
    return np.random.default_rng(7).standard_normal((3, _H, _W)).astype("float32")


def test_the_mei_of_a_linear_neuron_under_a_norm_budget_is_its_normalised_filter(filters):
    result = insilico.most_exciting_inputs(_linear_model(filters), [0, 2, 1], norm=5.0, steps=300)
    assert result.images.shape == (3, _H, _W, 1) and list(result.neurons) == [0, 2, 1]
    for row, neuron in enumerate([0, 2, 1]):
        target = 5.0 * filters[neuron] / np.linalg.norm(filters[neuron])
        np.testing.assert_allclose(result.images[row, ..., 0], target, atol=0.01)
        assert result.activations[row] == pytest.approx(5.0 * np.linalg.norm(filters[neuron]), rel=1e-4)
    np.testing.assert_allclose(insilico.contrast_norm(result.images, 0.0), 5.0, rtol=1e-5)
    # The stopping rule ends the ascent once nothing improves; the trace shows the climb from the start.
    assert np.all(result.steps < 300)
    assert len(result.trace) >= 2 and np.all(result.trace[0] < 0.5 * result.trace[-1])


def test_the_budget_holds_with_a_pixel_range_and_a_background(filters):
    model = _linear_model(filters)
    result = insilico.most_exciting_inputs(model, [0], norm=4.0, background=0.5, pixel_range=(0.0, 1.0), steps=300)
    assert result.images.min() >= 0.0 and result.images.max() <= 1.0
    assert insilico.contrast_norm(result.images, 0.5)[0] == pytest.approx(4.0, rel=1e-3)
    # At least as good as the filter itself put on the budget (scaled, then clipped into the range).
    on_budget = 4.0 * filters[0] / np.linalg.norm(filters[0])
    for _ in range(20):
        on_budget = np.clip(on_budget * 4.0 / np.linalg.norm(on_budget), -0.5, 0.5)
    assert result.activations[0] >= np.sum(filters[0] * (on_budget + 0.5)) - 1e-3 * np.sum(np.abs(filters[0]))


def test_gradients_equal_finite_differences():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((_H, _W, 1)), keras.layers.Conv2D(4, 3, activation="elu"),
                              keras.layers.Flatten(), keras.layers.Dense(5, activation="softplus")])
    images = np.random.default_rng(2).standard_normal((2, _H, _W, 1)).astype("float32")
    values, gradients = NeuronGradients(model)(images, [1, 3])
    np.testing.assert_allclose(values, model.predict(images, verbose=0)[[0, 1], [1, 3]], rtol=1e-5)
    step = 1e-2
    for image, pixel, neuron in ((0, (3, 4, 0), 1), (1, (7, 9, 0), 3)):
        plus, minus = images.copy(), images.copy()
        plus[(image, *pixel)] += step
        minus[(image, *pixel)] -= step
        difference = (model.predict(plus, verbose=0)[image, neuron] - model.predict(minus, verbose=0)[image, neuron]) / (2 * step)
        assert gradients[(image, *pixel)] == pytest.approx(difference, rel=2e-2, abs=1e-5)


def test_diverse_meis_are_pushed_apart(filters):
    model = _linear_model(filters)
    alike = insilico.most_exciting_inputs(model, [0, 1], norm=5.0, steps=150, n_per_neuron=3)
    diverse = insilico.most_exciting_inputs(model, [0, 1], norm=5.0, steps=150, n_per_neuron=3, diversity=1.0)
    assert diverse.images.shape == (2, 3, _H, _W, 1) and diverse.activations.shape == (2, 3)

    def mean_cosine(images):
        flat = images.reshape(3, -1)
        unit = flat / np.linalg.norm(flat, axis=1, keepdims=True)
        return (np.sum(unit @ unit.T) - 3) / 6

    assert mean_cosine(alike.images[0]) > 0.99
    assert mean_cosine(diverse.images[0]) < 0.8
    assert np.all(diverse.activations > 0.5 * alike.activations)


def test_jitter_and_blur_give_smoother_meis(filters):
    model = _linear_model(filters)
    plain = insilico.most_exciting_inputs(model, [0], norm=5.0, steps=100)
    smooth = insilico.most_exciting_inputs(model, [0], norm=5.0, steps=100, blur_sigma=1.5, jitter=1)

    def roughness(image):
        return np.mean(np.square(np.diff(image[..., 0], axis=0))) + np.mean(np.square(np.diff(image[..., 0], axis=1)))

    assert roughness(smooth.images[0]) < 0.5 * roughness(plain.images[0])


def test_gradient_receptive_field_centres_and_sizes_of_known_filters():
    centers, sigmas = [(3.0, 4.0), (8.5, 11.25)], [1.5, 2.0]
    model = _linear_model([_gaussian_blob(c, s) for c, s in zip(centers, sigmas)])
    rfs = insilico.gradient_receptive_fields(model, [1, 0])
    np.testing.assert_allclose(rfs.center, [centers[1], centers[0]], atol=0.05)
    # The energy of a Gaussian filter of sd s is a Gaussian of sd s / sqrt(2).
    np.testing.assert_allclose(rfs.size, np.array([sigmas[1], sigmas[0]]) / np.sqrt(2), rtol=0.02)
    assert np.all(rfs.r2 > 0.99)
    images = np.random.default_rng(0).standard_normal((5, _H, _W, 1)).astype("float32")
    local = insilico.gradient_maps(model, [0], images)
    assert local.shape == (1, 5, _H, _W, 1)  # a linear model's gradient is its filter everywhere
    np.testing.assert_allclose(local[0, 3, ..., 0], _gaussian_blob(centers[0], sigmas[0]), atol=1e-5)
    at_images = insilico.gradient_receptive_fields(model, [0], images=images)
    np.testing.assert_allclose(at_images.center, [centers[0]], atol=0.05)


def test_fit_gaussian_envelope_finds_an_offset_bump():
    energy = 3.0 * _gaussian_blob((6.2, 9.7), 2.5) + 0.4
    center, size, r2 = insilico.fit_gaussian_envelope(energy[None])
    np.testing.assert_allclose(center[0], [6.2, 9.7], atol=0.01)
    assert size[0] == pytest.approx(2.5, rel=0.01) and r2[0] > 0.999


def test_models_with_state_inputs_and_ensembles_take_part():
    keras.utils.set_random_seed(0)
    build = dict(n_neurons=4, image_shape=(_H, _W), core={"type": "stacked_conv2d", "channels": 2, "kernel_sizes": [3],
                                                           "paddings": "same"}, readout={"type": "gaussian"})
    state = ks.build_model(**build, behavior_channels=True, behavior_stats={"mean": [2.0], "std": [1.0]})
    plain = ks.build_model(**build)
    for model in (state, ks.ensemble.Ensemble([state, plain])):
        result = insilico.most_exciting_inputs(model, [0, 3], steps=20)
        inputs = {"images": result.images, "behavior": np.full((2, 1), 2.0, "float32")}
        predicted = model.predict(inputs, verbose=0)[[0, 1], [0, 3]]
        np.testing.assert_allclose(result.activations, predicted, rtol=1e-4)


def test_bad_arguments_are_named(filters):
    model = _linear_model(filters)
    with pytest.raises(ValueError, match=r"Unknown neuron index \[3\]: the model predicts 3 neurons"):
        insilico.most_exciting_inputs(model, [0, 3])
    with pytest.raises(ValueError, match="non-empty list"):
        insilico.most_exciting_inputs(model, [])
    with pytest.raises(ValueError, match="norm .* positive and finite"):
        insilico.most_exciting_inputs(model, [0], norm=float("inf"))
    with pytest.raises(ValueError, match="pixel_range"):
        insilico.most_exciting_inputs(model, [0], pixel_range=(1.0, 2.0))
    with pytest.raises(ValueError, match=r"start must be finite images of shape \(1, 12, 16, 1\)"):
        insilico.most_exciting_inputs(model, [0], start=np.zeros((1, 10, 16, 1)))
    with pytest.raises(ValueError, match=r"images must have shape \(n, 12, 16, 1\)"):
        insilico.gradient_maps(model, [0], np.zeros((2, 12, 15, 1)))
    with pytest.raises(ValueError, match="Unknown neuron index"):
        insilico.gradient_receptive_fields(model, [-1])


def test_the_digital_twin_report_compares_meis_with_the_best_natural_image(tmp_path):
    keras.utils.set_random_seed(0)
    model = ks.build_model(n_neurons=3, image_shape=(_H, _W), core={"type": "stacked_conv2d", "channels": 2,
                           "kernel_sizes": [3], "paddings": "same"}, readout={"type": "gaussian"},
                           image_mean=100.0, image_std=40.0)
    images = np.random.default_rng(0).uniform(0, 200, (30, _H, _W, 1)).astype("float32")
    report = insilico.digital_twin_report(model, [2, 0], images, mei_steps=50, orientations=4,
                                          spatial_frequencies=(0.1, 0.2), phases=4, verbose=0)
    # Defaults from the images: their mean contrast as the budget, their range as the pixel range.
    assert report.meis.norm == pytest.approx(float(np.mean(insilico.contrast_norm(images, 100.0))), rel=1e-6)
    assert report.meis.images.min() >= images.min() - 1e-3 and report.meis.images.max() <= images.max() + 1e-3
    predicted = model.predict(images, verbose=0)[:, [2, 0]]
    np.testing.assert_allclose(report.best_natural_activation, predicted.max(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(report.best_natural_index, predicted.argmax(axis=0))
    rows = report.table()
    assert [row["neuron"] for row in rows] == [2, 0]
    assert all(row["mei_to_natural_ratio"] == pytest.approx(row["mei_activation"] / row["best_natural_activation"])
               for row in rows)
    paths = insilico.write_report(report, str(tmp_path), images)
    np.testing.assert_array_equal(np.load(paths["best_natural_images"]), images[report.best_natural_index])
    assert np.load(paths["meis"]).shape == (2, _H, _W, 1)


def test_an_ensemble_is_measured_around_its_members_mean_grey(filters):
    keras.utils.set_random_seed(0)
    build = dict(n_neurons=2, image_shape=(_H, _W), core={"type": "stacked_conv2d", "channels": 2, "kernel_sizes": [3],
                                                           "paddings": "same"}, readout={"type": "gaussian"})
    members = [ks.build_model(**build, image_mean=100.0, image_std=40.0),
               ks.build_model(**build, image_mean=110.0, image_std=50.0)]
    ensemble = ks.ensemble.Ensemble(members)
    result = insilico.most_exciting_inputs(ensemble, [1], steps=5)
    assert result.background == pytest.approx(105.0)
    assert result.norm == pytest.approx(45.0 * np.sqrt(_H * _W))
    rfs = insilico.gradient_receptive_fields(ensemble, [0])
    assert rfs.maps.shape == (1, _H, _W, 1)
