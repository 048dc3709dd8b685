"""Normalized information gain on data simulated from the zero-inflated gamma, where the answer is known."""

import numpy as np
import pytest

from keras_sysid import information_gain as ig

Q, SHAPE, LOC = 0.4, 1.5, 0.01


def _simulate(rng, n_images, n_repeats, n_neurons=12):
    """Responses with an image-dependent gamma mean, fixed event probability; and the true mean responses."""
    excess = rng.lognormal(0.0, 0.8, size=(n_images, n_neurons))[np.repeat(np.arange(n_images), n_repeats)]
    above = rng.random(excess.shape) < Q
    responses = np.where(above, LOC + rng.gamma(SHAPE, excess / SHAPE), rng.uniform(0, LOC, excess.shape))
    means = (1 - Q) * LOC / 2 + Q * (LOC + excess)
    groups = [np.arange(i * n_repeats, (i + 1) * n_repeats) for i in range(n_images)]
    return responses, means, groups


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    train, _, _ = _simulate(rng, 3000, 1)
    validation, validation_means, _ = _simulate(rng, 400, 1)
    # Many repeats, so that the oracle's posterior is close to the truth.
    test, test_means, groups = _simulate(rng, 40, 80)
    return train, (validation, validation_means), (test, test_means, groups)


def _score(data, blend: float):
    """Information gain of the true means blended towards a constant by ``blend`` (0: the truth, 1: a constant)."""
    train, (validation, validation_means), (test, test_means, groups) = data
    constant = train.mean(axis=0)
    return ig.information_gain(test, (1 - blend) * test_means + blend * constant, groups, train,
                               (validation, (1 - blend) * validation_means + blend * constant))


def test_truth_scores_one_constant_zero_and_a_worse_model_between(data):
    truth, constant, worse = (_score(data, blend).population() for blend in (0.0, 1.0, 0.5))
    assert truth == pytest.approx(1.0, abs=0.1)
    assert constant == pytest.approx(0.0, abs=0.05)
    assert 0.2 < worse < truth - 0.2
    per_neuron = _score(data, 0.0).per_neuron()
    assert per_neuron.shape == (12,) and np.all(np.abs(per_neuron - 1) < 0.3)


def test_marginal_fit_recovers_the_simulated_parameters(data):
    marginal = ig.fit_marginal(data[0])
    assert np.allclose(marginal.q, Q, atol=0.04)
    assert np.allclose(marginal.loc, 0.01 * data[0].std(axis=0))
    # The marginal's gamma is wider than the within-image one (the images' means vary).
    assert np.all(marginal.shape < SHAPE)
    assert np.allclose(marginal.mean(), data[0].mean(axis=0), rtol=0.02)


def test_calibrated_link_is_the_simulated_one(data):
    _, (validation, validation_means), _ = data
    link = ig.calibrate_link(validation, validation_means, ig.fit_marginal(data[0]))
    # Events are equally likely for every image here (b = 0), and their spread is the within-image shape.
    assert np.allclose(link.b, 0.0, atol=0.35) and np.mean(np.abs(link.event_probability(validation_means) - Q)) < 0.05
    assert np.allclose(link.shape, SHAPE, rtol=0.25)


def test_a_log_density_integrates_to_one():
    loc, q, shape, excess = np.array([0.1]), np.array([0.3]), np.array([2.0]), np.array([1.5])
    grid = np.linspace(0, 40, 400001)[:, None]
    density = np.exp(ig.zig_log_density(grid, loc, q, excess, shape))
    assert np.trapezoid(density[:, 0], grid[:, 0]) == pytest.approx(1.0, abs=1e-3)
    mean = (1 - q) * loc / 2 + q * (loc + excess)
    assert ig.excess_for_mean(loc, q, mean[None]) == pytest.approx(1.5)


@pytest.mark.parametrize("change, message", [
    (lambda a: {**a, "predictions": a["predictions"][:, :3]}, "predictions have 3 neurons"),
    (lambda a: {**a, "responses": np.where(np.eye(*a["responses"].shape) > 0, np.nan, a["responses"])}, "NaN or inf"),
    (lambda a: {**a, "groups": [np.array([0, 99])]}, "positions into the 8 scored trials"),
    (lambda a: {**a, "calibration": a["responses"]}, "calibration must be"),
    (lambda a: {**a, "train_responses": np.zeros((0, 4))}, "non-empty"),
])
def test_bad_input_is_named(change, message):
    rng = np.random.default_rng(1)
    arrays = {"responses": rng.random((8, 4)), "predictions": rng.random((8, 4)),
              "groups": [np.arange(4), np.arange(4, 8)], "train_responses": rng.random((20, 4)),
              "calibration": (rng.random((6, 4)), rng.random((6, 4)))}
    with pytest.raises(ValueError, match=message):
        ig.information_gain(**change(arrays))


def test_zero_threshold_must_be_positive():
    with pytest.raises(ValueError, match="zero_threshold must be positive"):
        ig.fit_marginal(np.ones((3, 2)), zero_threshold=0.0)


class _MeanOfImage:
    """A model that predicts each image's true mean response (images carry their index in pixel 0)."""

    def __init__(self, means):
        self.means, self.n_neurons = means, means.shape[1]

    def predict(self, images, batch_size=None, verbose=0):
        return self.means[np.asarray(images)[:, 0, 0, 0].astype(int)]


def test_evaluate_model_adds_info_gain_to_the_summary_and_needs_train_and_validation():
    from keras_sysid import evaluation
    from keras_sysid.data import Recording

    rng = np.random.default_rng(3)
    n_images, n_neurons = 560, 6
    means_of_image = rng.lognormal(0.0, 0.8, size=(n_images, n_neurons))
    image_ids = np.concatenate([np.arange(300), np.arange(300, 500), np.repeat(np.arange(500, 560), 10)])
    tiers = np.array(["train"] * 300 + ["validation"] * 200 + ["test"] * 600)
    excess = means_of_image[image_ids]
    above = rng.random(excess.shape) < Q
    responses = np.where(above, LOC + rng.gamma(SHAPE, excess / SHAPE), rng.uniform(0, LOC, excess.shape))
    images = np.broadcast_to(image_ids[:, None, None, None], (len(image_ids), 2, 2, 1)).astype("float32")
    data = Recording.from_arrays(images, responses, image_ids=image_ids, tiers=tiers, name="sim")
    model = _MeanOfImage((1 - Q) * LOC / 2 + Q * (LOC + means_of_image))
    summary = evaluation.evaluate_model(model, data, info_gain=True).summary()
    assert summary["info_gain"] > 0.8
    assert "info_gain" not in evaluation.evaluate_model(model, data).summary()
    test_only = Recording.from_arrays(images[500:], responses[500:], image_ids=image_ids[500:], tiers=tiers[500:],
                                      name="test_only")
    with pytest.raises(ValueError, match="needs the train and validation tiers of 'test_only'"):
        evaluation.evaluate_model(model, test_only, info_gain=True)
