"""Gratings, tuning curves and Gabor fits on models and images whose answers are known."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_sysid.insilico.tuning import (
    GaborFit,
    TuningCurves,
    fit_gabor,
    gratings,
    orientation_selectivity,
    tuning_curves,
)

SIZE = 32


def _gabor(shape, center, orientation, frequency, phase, sigma, amplitude=1.0):
    """Written out independently of the module, in its documented convention."""
    rows, cols = np.meshgrid(np.arange(shape[0], dtype=float), np.arange(shape[1], dtype=float), indexing="ij")
    x = cols - center[1]
    y = -(rows - center[0])
    envelope = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    along = x * np.cos(orientation) + y * np.sin(orientation)
    return amplitude * envelope * np.cos(2 * np.pi * frequency * along + phase)


def _difference_of_gaussians(shape, sigma_center=2.0, sigma_surround=5.0):
    rows, cols = np.meshgrid(np.arange(shape[0], dtype=float), np.arange(shape[1], dtype=float), indexing="ij")
    squared = (rows - (shape[0] - 1) / 2) ** 2 + (cols - (shape[1] - 1) / 2) ** 2
    center = np.exp(-squared / (2 * sigma_center**2)) / sigma_center**2
    surround = np.exp(-squared / (2 * sigma_surround**2)) / sigma_surround**2
    return center - surround


def _filter_model(*filters):
    """One neuron per filter: the filter's dot product with the image, rectified."""
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 1)),
            keras.layers.Conv2D(len(filters), SIZE, padding="valid", use_bias=False),
            keras.layers.Flatten(),
            keras.layers.Activation("relu"),
        ]
    )
    kernel = np.stack([f / np.abs(f).sum() for f in filters], axis=-1)[:, :, None, :]
    model.layers[0].set_weights([kernel.astype("float32")])
    return model


def _angle_difference(a, b):
    """Distance between orientations, modulo pi."""
    return np.abs(np.angle(np.exp(2j * (np.asarray(a) - np.asarray(b))))) / 2


@pytest.fixture(scope="module")
def two_gabor_model():
    center = ((SIZE - 1) / 2, (SIZE - 1) / 2)
    return _filter_model(
        _gabor((SIZE, SIZE), center, np.radians(30), 0.08, 0.0, 5.0),
        _gabor((SIZE, SIZE), center, np.radians(120), 0.16, 0.0, 4.0),
    )


# -- gratings ----------------------------------------------------------------------


def test_gratings_orientation_convention_and_phase():
    stack = gratings((20, 24, 2), [0.0, np.pi / 2, np.pi / 4], [0.1], [0.0, 1.0])
    assert stack.shape == (3, 1, 2, 20, 24, 2) and stack.dtype == np.float32
    assert np.abs(stack).max() <= 1.0 + 1e-6
    np.testing.assert_array_equal(stack[..., 0], stack[..., 1])
    vertical, horizontal = stack[0, 0, 0, :, :, 0], stack[1, 0, 0, :, :, 0]
    # Vertical bars: constant down each column, varying along columns.
    np.testing.assert_allclose(vertical, np.broadcast_to(vertical[:1], vertical.shape), atol=1e-6)
    assert np.ptp(vertical[0]) > 1.0
    np.testing.assert_allclose(horizontal, np.broadcast_to(horizontal[:, :1], horizontal.shape), atol=1e-6)
    assert np.ptp(horizontal[:, 0]) > 1.0
    # Vertical bars turned 45 degrees counter-clockwise (row 0 on top) run from top left to bottom
    # right: the image is constant one row down and one column right.
    oblique = stack[2, 0, 0, :, :, 0]
    np.testing.assert_allclose(oblique[1:, 1:], oblique[:-1, :-1], atol=1e-5)
    assert np.ptp(oblique[0]) > 1.0
    # The phase is relative to the centre (an integer pixel here).
    centred = gratings((21, 21), [0.3, 1.2], [0.05, 0.13], [0.0, 1.0, 2.5])
    expected = np.broadcast_to(np.cos([0.0, 1.0, 2.5]), (2, 2, 3))
    np.testing.assert_allclose(centred[:, :, :, 10, 10, 0], expected, atol=1e-6)
    shifted = gratings((21, 21), [0.7], [0.1], [0.4], center=(3, 15))
    assert shifted[0, 0, 0, 3, 15, 0] == pytest.approx(np.cos(0.4), abs=1e-6)


def test_gratings_aperture():
    radius, edge, center = 5.0, 2.0, (12.0, 9.0)
    stack = gratings((24, 20), [0.4], [0.1], [0.0], center=center, radius=radius, edge=edge)[0, 0, 0, :, :, 0]
    rows, cols = np.meshgrid(np.arange(24), np.arange(20), indexing="ij")
    distance = np.hypot(rows - center[0], cols - center[1])
    assert np.all(stack[distance >= radius + edge] == 0)
    full = gratings((24, 20), [0.4], [0.1], [0.0], center=center)[0, 0, 0, :, :, 0]
    np.testing.assert_allclose(stack[distance <= radius], full[distance <= radius], atol=1e-6)
    ramp = (distance > radius) & (distance < radius + edge)
    assert np.all(np.abs(stack[ramp]) <= np.abs(full[ramp]) + 1e-6)


# -- tuning curves -------------------------------------------------------------------


def test_gabor_neuron_is_tuned_to_its_orientation_and_frequency(two_gabor_model):
    curves = tuning_curves(two_gabor_model, [0])
    assert isinstance(curves, TuningCurves)
    assert curves.responses.shape == (1, 12, 4, 8)
    step = np.pi / 12
    assert _angle_difference(curves.preferred_orientation[0], np.radians(30)) <= step
    assert 0 <= curves.preferred_orientation[0] < np.pi
    assert curves.preferred_spatial_frequency[0] == pytest.approx(0.08)
    assert curves.osi[0] > 0.5
    curve = curves.orientation_curve()
    assert curve.shape == (1, 12)
    assert _angle_difference(curves.orientations[curve[0].argmax()], np.radians(30)) <= step


def test_centre_surround_neuron_is_untuned():
    curves = tuning_curves(_filter_model(_difference_of_gaussians((SIZE, SIZE))), [0], spatial_frequencies=(0.04, 0.08))
    assert curves.osi[0] < 0.2
    assert curves.responses.max() > 0


def test_neurons_are_selected_and_ordered(two_gabor_model):
    both = tuning_curves(two_gabor_model, [1, 0], orientations=6, phases=4)
    np.testing.assert_array_equal(both.neurons, [1, 0])
    assert both.responses.shape == (2, 6, 4, 4)
    assert _angle_difference(both.preferred_orientation, np.radians([120, 30])).max() <= np.pi / 6
    np.testing.assert_allclose(both.preferred_spatial_frequency, [0.16, 0.08])
    single = tuning_curves(two_gabor_model, [0], orientations=6, phases=4)
    np.testing.assert_allclose(both.responses[1], single.responses[0], rtol=1e-5, atol=1e-7)


def test_centers_background_contrast_and_plain_callables(two_gabor_model):
    kwargs = dict(orientations=4, spatial_frequencies=(0.08,), phases=4)
    # An aperture far from the receptive field leaves the neuron at its background response.
    far = tuning_curves(two_gabor_model, [0, 0], centers=[[15.5, 15.5], [2.0, 2.0]], radius=1.5, **kwargs)
    assert far.responses[0].max() > 10 * far.responses[1].max()
    # Background and contrast are in data units: a linear neuron's drive scales with contrast.
    doubled = tuning_curves(two_gabor_model, [0], contrast=2.0, background=0.0, **kwargs)
    single = tuning_curves(two_gabor_model, [0], **kwargs)
    np.testing.assert_allclose(doubled.responses, 2 * single.responses, rtol=1e-4, atol=1e-6)
    # A callable without predict or input_shape needs the image shape.
    function = lambda images: two_gabor_model(images)  # noqa: E731
    with pytest.raises(ValueError, match="image_shape"):
        tuning_curves(function, [0], **kwargs)
    called = tuning_curves(function, [0], image_shape=(SIZE, SIZE, 1), batch_size=5, **kwargs)
    np.testing.assert_allclose(called.responses, single.responses, rtol=1e-4, atol=1e-6)


def test_package_model_gives_its_image_shape():
    import keras_sysid as ks

    # A subclassed model has no input_shape: the image shape comes from input_shapes().
    model = ks.build_model(n_neurons=3, image_shape=(16, 16))
    curves = tuning_curves(model, [2, 0], orientations=4, spatial_frequencies=(0.1,), phases=2)
    assert curves.responses.shape == (2, 4, 1, 2)
    assert np.all(np.isfinite(curves.responses))


def test_orientation_selectivity():
    orientations = np.arange(8) * np.pi / 8
    curves = np.stack([np.ones(8), np.eye(8)[3], np.eye(8)[5] - 2.0, np.zeros(8)])
    preferred, osi = orientation_selectivity(curves, orientations)
    np.testing.assert_allclose(osi, [0.0, 1.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(preferred[1:3], orientations[[3, 5]])
    assert np.all((preferred >= 0) & (preferred < np.pi))


# -- Gabor fits ------------------------------------------------------------------------


def test_fit_gabor_recovers_parameters():
    shape = (32, 40)
    truth = [
        ((15.3, 20.6), np.radians(30), 0.1, 0.5, 4.0, 1.0),
        ((12.0, 25.2), np.radians(100), 0.18, 2.0, 3.0, 2.5),
        ((18.7, 14.1), np.radians(165), 0.06, 4.0, 5.5, 0.7),
    ]
    images = np.stack([_gabor(shape, *parameters) for parameters in truth])[..., None]
    fit = fit_gabor(images)
    assert isinstance(fit, GaborFit) and fit.center.shape == (3, 2)
    centers, orientations, frequencies, _, sigmas, amplitudes = (np.array(v) for v in zip(*truth))
    np.testing.assert_allclose(fit.center, centers, atol=0.5)
    assert np.degrees(_angle_difference(fit.orientation, orientations)).max() < 5
    np.testing.assert_allclose(fit.spatial_frequency, frequencies, rtol=0.1)
    np.testing.assert_allclose(fit.sigma, sigmas, rtol=0.1)
    np.testing.assert_allclose(fit.amplitude, amplitudes, rtol=0.1)
    assert np.all((fit.orientation >= 0) & (fit.orientation < np.pi))
    assert np.all(fit.r2 > 0.99)

    rng = np.random.default_rng(0)
    noisy = images + rng.normal(0.0, 0.5, images.shape) * images.std(axis=(1, 2, 3), keepdims=True)
    noisy_fit = fit_gabor(noisy)
    assert np.all(noisy_fit.r2 < 0.99)
    assert np.degrees(_angle_difference(noisy_fit.orientation, orientations)).max() < 5


def test_fit_gabor_shares_the_grating_convention():
    # A grating seen through a Gaussian window is a Gabor of the grating's orientation and phase.
    rows, cols = np.meshgrid(np.arange(33), np.arange(33), indexing="ij")
    window = np.exp(-((rows - 16.0) ** 2 + (cols - 16.0) ** 2) / (2 * 5.0**2))
    orientation, phase = 2.0, 1.0
    image = gratings((33, 33), [orientation], [0.12], [phase])[0, 0, 0, :, :, 0] * window
    fit = fit_gabor(image[None])
    assert fit.orientation[0] == pytest.approx(orientation, abs=1e-3)
    assert fit.phase[0] == pytest.approx(phase, abs=1e-3)


# -- bad arguments ------------------------------------------------------------------


def test_bad_arguments(two_gabor_model):
    with pytest.raises(ValueError, match=r"Unknown neuron index \[2\]"):
        tuning_curves(two_gabor_model, [0, 2])
    with pytest.raises(ValueError, match=r"Unknown neuron index \[-1\]"):
        tuning_curves(two_gabor_model, [-1])
    with pytest.raises(ValueError, match="neurons"):
        tuning_curves(two_gabor_model, [])
    with pytest.raises(ValueError, match="centers"):
        tuning_curves(two_gabor_model, [0, 1], centers=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="contrast"):
        tuning_curves(two_gabor_model, [0], contrast=np.nan)
    with pytest.raises(ValueError, match="background"):
        tuning_curves(two_gabor_model, [0], background=np.inf)
    with pytest.raises(ValueError, match="spatial_frequencies"):
        tuning_curves(two_gabor_model, [0], spatial_frequencies=(0.0, 0.1))
    with pytest.raises(ValueError, match="spatial_frequencies"):
        gratings((8, 8), [0.0], [0.0], [0.0])
    with pytest.raises(ValueError, match="orientations"):
        gratings((8, 8), [], [0.1], [0.0])
    with pytest.raises(ValueError, match="radius"):
        gratings((8, 8), [0.0], [0.1], [0.0], radius=0)
    with pytest.raises(ValueError, match="single-channel"):
        fit_gabor(np.zeros((1, 8, 8, 3)))
