"""k-means, the adjusted Rand index, and the consistency of readout positions and features across fits."""

import keras
import numpy as np
import pytest

import keras_sysid as ks
from keras_sysid import clustering, consistency

# -- k-means and the adjusted Rand index ---------------------------------------------------------


def test_adjusted_rand_index_matches_a_worked_example_and_ignores_label_names():
    # Pairs together: 2 of 3 expected 1.2, maximum 4.5: (2 - 1.2) / (4.5 - 1.2).
    assert clustering.adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]) == pytest.approx(0.8 / 3.3)
    assert clustering.adjusted_rand_index([0, 0, 1, 1, 2], ["b", "b", "a", "a", "c"]) == 1.0
    assert clustering.adjusted_rand_index([0, 1, 2, 3], [3, 2, 1, 0]) == 1.0  # both all singletons
    assert clustering.adjusted_rand_index([0, 0, 0], [1, 1, 1]) == 1.0  # both one cluster
    assert clustering.adjusted_rand_index([0, 0, 0, 0], [0, 1, 2, 3]) == 0.0  # one cluster vs singletons


def test_adjusted_rand_index_of_unrelated_partitions_is_near_zero():
    rng = np.random.default_rng(0)
    values = [clustering.adjusted_rand_index(rng.integers(0, 10, 2000), rng.integers(0, 10, 2000)) for _ in range(5)]
    assert np.all(np.abs(values) < 0.01), values


def test_adjusted_rand_index_refuses_labels_of_other_lengths():
    with pytest.raises(ValueError, match="same length"):
        clustering.adjusted_rand_index([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="1-D"):
        clustering.adjusted_rand_index([[0, 1]], [[0, 1]])


def test_kmeans_finds_separated_clusters_reproducibly():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((4, 6)) * 10
    truth = np.repeat(np.arange(4), [50, 30, 20, 5])
    points = centres[truth] + 0.1 * rng.standard_normal((len(truth), 6))
    labels = clustering.kmeans(points, 4, seed=3)
    assert labels.shape == truth.shape and labels.dtype == np.int64 and set(labels) == {0, 1, 2, 3}
    assert clustering.adjusted_rand_index(labels, truth) == 1.0
    np.testing.assert_array_equal(clustering.kmeans(points, 4, seed=3), labels)
    # Fewer distinct points than clusters asked for: k labels still, no NaN centres.
    duplicates = np.repeat(np.eye(3), 4, axis=0)
    assert clustering.adjusted_rand_index(clustering.kmeans(duplicates, 3), np.repeat(np.arange(3), 4)) == 1.0
    assert clustering.kmeans(duplicates, 5).max() < 5


@pytest.mark.parametrize("points, k, message", [
    (np.zeros(5), 2, "shape"),
    (np.full((4, 2), np.nan), 2, "NaN"),
    (np.zeros((4, 2)), 5, "n_clusters"),
    (np.zeros((4, 2)), 0, "n_clusters"),
])
def test_kmeans_refuses_bad_input(points, k, message):
    with pytest.raises(ValueError, match=message):
        clustering.kmeans(points, k)


# -- consistency across fits ------------------------------------------------------------------------


def _model(seed, n_neurons=300, readout="gaussian", channels=6):
    keras.utils.set_random_seed(seed)
    return ks.build_model(n_neurons=n_neurons, image_shape=(16, 16),
                          core={"type": "stacked_conv2d", "channels": channels, "kernel_sizes": [5, 3]},
                          readout={"type": readout})


def test_a_model_against_itself_agrees_perfectly():
    model = _model(0)
    report = consistency.seed_consistency([model, model], names=["a", "b"], n_clusters=(3, 8))
    assert report["models"] == ["a", "b"] and report["n_neurons"] == 300 and report["n_pairs"] == 1
    assert report["position_corr"]["row"]["mean"] == pytest.approx(1.0)
    assert report["position_corr"]["column"]["mean"] == pytest.approx(1.0)
    assert report["position_distance_px"] == {"mean": 0.0, "sd": 0.0}
    assert report["position_distance_px_chance"]["mean"] > 1.0
    assert report["feature_cluster_ari"] == {"3": {"mean": 1.0, "sd": 0.0}, "8": {"mean": 1.0, "sd": 0.0}}
    for k in ("3", "8"):
        assert abs(report["feature_cluster_ari_chance"][k]["mean"]) < 0.05


def test_independent_random_models_agree_at_chance():
    report = consistency.seed_consistency([_model(1), _model(2), _model(3)], n_clusters=(4, 10))
    assert report["n_pairs"] == 3
    for axis in ("row", "column"):
        assert abs(report["position_corr"][axis]["mean"]) < 0.15, report["position_corr"]
    assert report["position_distance_px"]["mean"] == pytest.approx(report["position_distance_px_chance"]["mean"],
                                                                   rel=0.25)
    for k in ("4", "10"):
        assert abs(report["feature_cluster_ari"][k]["mean"]) < 0.05, report["feature_cluster_ari"]
        assert report["feature_cluster_ari"][k]["sd"] > 0


def test_the_same_groups_in_unaligned_feature_spaces_agree_and_shifted_positions_correlate():
    # Two fits whose cores order and mix their channels differently: the feature vectors differ,
    # the partition of the neurons they imply does not.
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(3), 40)
    vectors = (5 * rng.standard_normal((3, 6)))[groups] + 0.1 * rng.standard_normal((120, 6))  # (N, C)
    rotation, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    first, second = _model(5, n_neurons=120), _model(6, n_neurons=120)
    first.readout.features.assign(vectors.T.astype("float32"))
    second.readout.features.assign((vectors @ rotation).T.astype("float32"))
    grid = first.readout.grid_shape
    places = rng.uniform(1, np.asarray(grid) - 3, (120, 2))
    first.readout.place_at(places)
    second.readout.place_at(places + 1.0)
    assert np.abs(consistency.feature_vectors(first) - consistency.feature_vectors(second)).max() > 0.1
    report = consistency.seed_consistency([first, second], n_clusters=(3,))
    assert report["feature_cluster_ari"]["3"]["mean"] == pytest.approx(1.0)
    assert report["feature_cluster_ari_same_model"]["3"]["mean"] == pytest.approx(1.0)
    assert report["position_corr"]["row"]["mean"] > 0.95 and report["position_corr"]["column"]["mean"] > 0.95
    assert report["position_distance_px"]["mean"] > 0.5


@pytest.mark.parametrize("readout, sign", [("gaussian", -1.0), ("factorized", 1.0)])
def test_feature_vectors_are_unit_length_and_read_as_the_forward_pass_does(readout, sign):
    model = _model(7, n_neurons=5, readout=readout)
    model.readout.features.assign(np.array([[3.0, 0, 0, -1, 0], [4.0, 0, 2, 0, 0]] + [[0.0] * 5] * 4, "float32"))
    vectors = consistency.feature_vectors(model)
    assert vectors.shape == (5, 6)
    np.testing.assert_allclose(vectors[0, :2], [0.6, 0.8])
    # Signed for a Gaussian readout; |features| for the factorized one's default positive_features.
    np.testing.assert_allclose(vectors[3, :2], [sign, 0.0])
    np.testing.assert_array_equal(vectors[1], 0.0)  # all-zero features stay zero, not NaN


def test_seed_consistency_refuses_what_it_cannot_compare():
    model = _model(8, n_neurons=20)
    with pytest.raises(ValueError, match="at least 2 models"):
        consistency.seed_consistency([model])
    with pytest.raises(ValueError, match="same neurons"):
        consistency.seed_consistency([model, _model(9, n_neurons=21)])
    with pytest.raises(ValueError, match="n_clusters"):
        consistency.seed_consistency([model, model], n_clusters=(21,))
    with pytest.raises(ValueError, match="FullyConnectedReadout"):
        consistency.seed_consistency([model, _model(10, n_neurons=20, readout="fully_connected")], n_clusters=(3,))
    with pytest.raises(ValueError, match="Ensemble has no single readout.*members"):
        consistency.seed_consistency([model, ks.Ensemble([model, model])], n_clusters=(3,))
