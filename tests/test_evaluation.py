import numpy as np
import pytest

from keras_sysid import evaluation


def _reference(responses, predictions, groups):
    def corr(a, b):
        return np.array([np.corrcoef(a[:, n], b[:, n])[0, 1] for n in range(a.shape[1])])

    trials = np.concatenate(groups)
    single = corr(responses[trials], predictions[trials])
    means = np.stack([responses[g].mean(0) for g in groups])
    avg = corr(means, np.stack([predictions[g].mean(0) for g in groups]))
    oracle = []
    for n in range(responses.shape[1]):
        loo = np.concatenate([[(responses[g, n].sum() - responses[t, n]) / (len(g) - 1) for t in g] for g in groups])
        oracle.append(np.corrcoef(responses[trials, n], loo)[0, 1])
    oracle = np.array(oracle)
    noise = np.mean([responses[g].var(0, ddof=1) for g in groups], axis=0)
    total = responses[trials].var(0, ddof=1)
    mse = np.mean((responses[trials] - np.concatenate([np.repeat(predictions[g].mean(0)[None], len(g), 0) for g in groups])) ** 2, 0)
    feve = 1 - (mse - noise) / (total - noise)
    return single, avg, oracle, feve


def test_scores_match_numpy_references():
    rng = np.random.default_rng(0)
    n_images, repeats, n_neurons = 12, 4, 6
    signal = rng.gamma(2.0, 1.0, (n_images, n_neurons))
    groups = [np.arange(i * repeats, (i + 1) * repeats) for i in range(n_images)]
    order = rng.permutation(n_images * repeats)  # trials of an image need not be adjacent
    groups = [order[g] for g in groups]
    responses = np.zeros((n_images * repeats, n_neurons))
    for i, g in enumerate(groups):
        responses[g] = rng.poisson(signal[i], (repeats, n_neurons))
    predictions = np.zeros_like(responses)
    for i, g in enumerate(groups):
        predictions[g] = signal[i] + 0.3 * rng.standard_normal(n_neurons)
    scores = evaluation.score_repeats(responses, predictions, groups)
    single, avg, oracle, feve = _reference(responses, predictions, groups)
    np.testing.assert_allclose(scores.corr_single, single, rtol=1e-10)
    np.testing.assert_allclose(scores.corr_avg, avg, rtol=1e-10)
    np.testing.assert_allclose(scores.oracle, oracle, rtol=1e-10)
    np.testing.assert_allclose(scores.feve, feve, rtol=1e-10)
    summary = scores.summary()
    assert summary["frac_oracle"] == pytest.approx(np.sum(single * oracle) / np.sum(oracle**2))
    assert summary["n_trials"] == 48 and summary["n_images"] == 12 and summary["n_neurons"] == 6
    assert summary["corr_avg"] > summary["corr_single"]


def test_score_repeats_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same"):
        evaluation.score_repeats(np.zeros((4, 2)), np.zeros((4, 3)), [np.arange(4)])
