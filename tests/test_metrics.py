import keras
import numpy as np
import pytest

from keras_sysid import metrics
from keras_sysid.losses import PoissonLoss


def test_correlation_matches_numpy_corrcoef():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((50, 4))
    b = a + rng.standard_normal((50, 4))
    expected = [np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(4)]
    np.testing.assert_allclose(metrics.correlation(a, b), expected, rtol=1e-12)


def test_correlation_of_constant_is_zero():
    a = np.ones((10, 2))
    b = np.random.default_rng(1).standard_normal((10, 2))
    np.testing.assert_array_equal(metrics.correlation(a, b), [0.0, 0.0])


def test_streaming_pearson_equals_numpy_over_uneven_batches():
    rng = np.random.default_rng(2)
    # Large offsets: a naive sum-of-squares formula would lose digits in float32.
    y_true = (rng.standard_normal((103, 6)) + 1000).astype("float32")
    y_pred = (y_true + rng.standard_normal((103, 6)) * 0.5).astype("float32")
    metric = metrics.PearsonCorrelation(6)
    for start in range(0, 103, 17):
        metric.update_state(y_true[start : start + 17], y_pred[start : start + 17])
    expected = metrics.correlation(y_true.astype("float64"), y_pred.astype("float64"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(metric.per_neuron()), expected, atol=1e-4)
    np.testing.assert_allclose(float(metric.result()), expected.mean(), atol=1e-4)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_fev_matches_definition():
    rng = np.random.default_rng(3)
    truth = rng.standard_normal((30, 3))
    pred = truth + 0.5 * rng.standard_normal((30, 3))
    expected = 1 - ((truth - pred) ** 2).mean(0) / truth.var(0)
    np.testing.assert_allclose(metrics.fev(truth, pred), expected)
    np.testing.assert_allclose(metrics.fev(truth, truth), 1.0)


def test_feve_and_oracle_match_explicit_loops():
    rng = np.random.default_rng(4)
    signal = rng.standard_normal((6, 3))
    blocks = [signal[i] + 0.7 * rng.standard_normal((r, 3)) for i, r in enumerate([2, 5, 3, 4, 10, 2])]
    prediction = signal + 0.2 * rng.standard_normal(signal.shape)
    trials = np.vstack(blocks)
    per_trial_pred = np.vstack([np.tile(p, (len(b), 1)) for b, p in zip(blocks, prediction)])
    noise = np.mean([b.var(0, ddof=1) for b in blocks], axis=0)
    total = trials.var(0, ddof=1)
    mse = ((trials - per_trial_pred) ** 2).mean(0)
    np.testing.assert_allclose(metrics.feve(blocks, prediction), 1 - (mse - noise) / (total - noise))

    loo = []
    for block in blocks:
        for j in range(len(block)):
            loo.append(np.delete(block, j, axis=0).mean(0))
    expected = [np.corrcoef(trials[:, i], np.array(loo)[:, i])[0, 1] for i in range(3)]
    np.testing.assert_allclose(metrics.oracle_correlation(blocks), expected, rtol=1e-10)


def test_metric_input_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.correlation(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN or inf"):
        metrics.fev(np.array([[1.0], [np.nan]]), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="constant ground truth"):
        metrics.fev(np.ones((3, 1)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="one row per image"):
        metrics.feve([np.zeros((2, 3))], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="more than once"):
        metrics.oracle_correlation([np.zeros((1, 3))])


def test_rf_distance():
    np.testing.assert_allclose(metrics.rf_distance([[0, 0], [1, 1]], [[3, 4], [1, 1]]), [5.0, 0.0])


def test_poisson_loss_matches_numpy():
    rng = np.random.default_rng(5)
    y_true = rng.poisson(2.0, (4, 3)).astype("float32")
    y_true[0, 0] = -0.01  # deconvolved data may dip below zero
    y_pred = rng.uniform(0.1, 3.0, (4, 3)).astype("float32")
    expected = np.mean(np.sum(y_pred - y_true * np.log(y_pred + 1e-8), axis=1))
    np.testing.assert_allclose(float(PoissonLoss()(y_true, y_pred)), expected, rtol=1e-5)
