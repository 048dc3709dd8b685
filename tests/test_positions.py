import numpy as np
import pytest

from keras_sysid import positions


def test_sta_envelope_finds_a_linear_neurons_location():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((3000, 20, 30)).astype("float32")
    rows, cols = np.mgrid[:20, :30]
    centres = np.array([[5.0, 7.0], [14.0, 22.0], [10.0, 3.5]])
    filters = []
    for r, c in centres:
        radius2 = (rows - r) ** 2 + (cols - c) ** 2
        filters.append(np.exp(-radius2 / 4.0) - 0.5 * np.exp(-radius2 / 16.0))  # centre-surround
    filters = np.stack(filters)
    drive = np.einsum("thw,nhw->tn", images, filters)
    responses = rng.poisson(np.log1p(np.exp(drive))).astype("float32")
    found = positions.envelope_positions(images, responses)
    np.testing.assert_allclose(found, centres, atol=1.0)
    sta = positions.spike_triggered_averages(images[..., None], responses)
    assert sta.shape == (3, 20, 30)


def test_envelope_finds_an_energy_neuron_whose_sta_is_flat():
    rng = np.random.default_rng(1)
    images = rng.standard_normal((4000, 16, 16)).astype("float32")
    rows, cols = np.mgrid[:16, :16]
    gabor = np.exp(-((rows - 11.0) ** 2 + (cols - 4.0) ** 2) / 6.0) * np.cos(cols - 4.0)
    drive = np.abs(np.einsum("thw,hw->t", images, gabor))[:, None]  # full-wave: no STA
    responses = rng.poisson(drive).astype("float32")
    assert np.abs(positions.spike_triggered_averages(images, responses)).max() < 0.1
    np.testing.assert_allclose(positions.envelope_positions(images, responses)[0], [11.0, 4.0], atol=1.0)


def _neurons_reading_features(seed, n_images=128, noise=3.0):
    rng = np.random.default_rng(seed)
    feature_maps = rng.standard_normal((n_images, 12, 16, 6))
    true = np.array([[2, 3], [9, 14], [6, 8], [0, 15]])
    weights = rng.standard_normal((6, len(true)))
    drive = np.stack([feature_maps[:, r, c, :] @ weights[:, n] for n, (r, c) in enumerate(true)], axis=1)
    return feature_maps, drive + noise * rng.standard_normal(drive.shape), true


def test_feature_regression_finds_where_known_features_predict_each_neuron():
    feature_maps, responses, true = _neurons_reading_features(0)
    found, scores = positions.feature_regression_positions(feature_maps, responses)
    assert scores.shape == (4, 12, 16)
    np.testing.assert_allclose(found, true, atol=0.5)
    # Chunking the grid (tiny memory bound) changes nothing.
    _, chunked = positions.feature_regression_positions(feature_maps, responses, max_elements=1)
    np.testing.assert_allclose(chunked, scores, atol=1e-6)


def test_feature_regression_scores_are_exact_leave_one_out_r2():
    feature_maps, responses, _ = _neurons_reading_features(1, n_images=40)
    ridge = 0.5
    _, scores = positions.feature_regression_positions(feature_maps, responses, ridge=ridge)
    design = feature_maps[:, 9, 14, :]
    design = (design - design.mean(0)) / design.std(0)
    centred = responses - responses.mean(0)
    residuals = []
    for left_out in range(len(design)):
        keep = np.arange(len(design)) != left_out
        coefficients = np.linalg.solve(
            design[keep].T @ design[keep] + ridge * len(design) * np.eye(6), design[keep].T @ centred[keep]
        )
        residuals.append(centred[left_out] - design[left_out] @ coefficients)
    expected = 1 - np.square(residuals).sum(0) / np.square(centred).sum(0)
    np.testing.assert_allclose(scores[:, 9, 14], expected, atol=1e-5)  # float32 products


def test_feature_regression_rejects_mismatched_or_nan_input():
    feature_maps, responses, _ = _neurons_reading_features(2)
    with pytest.raises(ValueError, match="same T"):
        positions.feature_regression_positions(feature_maps, responses[:-1])
    responses[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        positions.feature_regression_positions(feature_maps, responses)
