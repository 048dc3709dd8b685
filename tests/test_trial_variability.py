"""Trial-to-trial variability of repeats: deviations, the model's share, a linear check of the state."""

import numpy as np
import pytest

from keras_sysid import trial_variability

N_IMAGES, N_REPEATS, N_NEURONS = 60, 8, 5


def _recording(seed=0, state_weight=1.0):
    """Responses of repeats: each image's drive times a known gain of a state variable, plus noise."""
    rng = np.random.default_rng(seed)
    image = np.repeat(np.arange(N_IMAGES), N_REPEATS)
    rng.shuffle(image)  # repeats interleaved, as in a recording
    drive = rng.gamma(2.0, 1.0, (N_IMAGES, N_NEURONS))
    state = rng.normal(size=(len(image), 2))
    gain = np.exp(state_weight * 0.4 * state[:, :1])  # the first variable drives every neuron; the second nothing
    rate = drive[image] * gain
    responses = rate + rng.normal(0.0, 0.5, rate.shape)
    groups = [np.flatnonzero(image == i) for i in range(N_IMAGES)]
    return responses, rate, drive[image], state, groups


def test_deviations_leave_out_single_images_and_sum_to_zero_per_image():
    values = np.arange(10.0)[:, None]
    groups = [np.array([0, 3, 5]), np.array([1]), np.array([2, 4])]
    deviations = trial_variability.repeat_deviations(values, groups)
    assert deviations.shape == (5, 1)
    np.testing.assert_allclose(deviations[:3].sum(), 0.0, atol=1e-12)
    np.testing.assert_allclose(deviations[:, 0], [-8 / 3, 1 / 3, 7 / 3, -1.0, 1.0])


def test_variance_fraction_is_zero_without_and_one_with_only_trial_noise():
    _, rate, image_drive, _, groups = _recording()
    np.testing.assert_allclose(trial_variability.trial_variance_fraction(image_drive, groups), 0.0, atol=1e-12)
    noise = np.random.default_rng(1).normal(size=image_drive.shape)
    constant_images = np.ones_like(image_drive) + noise
    fraction = trial_variability.trial_variance_fraction(constant_images, groups)
    assert np.all(fraction > 0.8)  # all variance is between repeats; 1 - 1/repeats of it is estimable
    between = trial_variability.trial_variance_fraction(rate, groups)
    assert np.all((between > 0.05) & (between < 0.95))


def test_model_trial_correlation_credits_the_state_and_not_an_image_only_model():
    responses, rate, image_drive, _, groups = _recording()
    state_aware = trial_variability.model_trial_correlation(responses, rate, groups)
    assert np.all(state_aware > 0.3)
    # An image-only model predicts each image alike, up to float rounding of separate batches.
    rounding = image_drive * (1 + 1e-7 * np.random.default_rng(2).normal(size=image_drive.shape))
    np.testing.assert_array_equal(trial_variability.model_trial_correlation(responses, rounding, groups), 0.0)
    with pytest.raises(ValueError, match="same"):
        trial_variability.model_trial_correlation(responses, rate[:, :2], groups)


def test_linear_check_finds_the_driving_variable_and_nothing_without_it():
    responses, _, _, state, groups = _recording()
    driving = trial_variability.linear_state_variance(responses, state[:, :1], groups)
    idle = trial_variability.linear_state_variance(responses, state[:, 1:], groups)
    assert np.all(driving > 0.1)
    assert np.all(np.abs(idle) < 0.05)  # cross-validated: chance fits do not count
    unmodulated, *_ = _recording(state_weight=0.0)
    assert np.all(trial_variability.linear_state_variance(unmodulated, state, groups) < 0.03)


def test_bad_input_is_named():
    responses, _, _, state, groups = _recording()
    with pytest.raises(ValueError, match="more than once"):
        trial_variability.repeat_deviations(responses, [np.array([i]) for i in range(10)])
    with pytest.raises(ValueError, match="state must be"):
        trial_variability.linear_state_variance(responses, state[:10], groups)
    with pytest.raises(ValueError, match="folds"):
        trial_variability.linear_state_variance(responses, state, groups, folds=1)
