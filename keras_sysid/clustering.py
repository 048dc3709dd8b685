"""Partitions of points and how well two partitions agree: seeded k-means and the adjusted Rand index.

Both are small NumPy implementations (the package does not depend on
scikit-learn), used to ask whether models fitted with different seeds group
the same neurons together (:mod:`keras_sysid.consistency`).

Example:
    >>> labels_a = kmeans(features_a, n_clusters=10, seed=0)
    >>> labels_b = kmeans(features_b, n_clusters=10, seed=0)
    >>> adjusted_rand_index(labels_a, labels_b)  # 1: the same partition; about 0: chance
    0.41
"""

from __future__ import annotations

import numpy as np


def kmeans(points, n_clusters: int, seed: int = 0, n_init: int = 4, max_iter: int = 100) -> np.ndarray:
    """Partitions points into ``n_clusters`` groups by k-means (Lloyd's algorithm, k-means++ starts).

    Each of the ``n_init`` runs starts from k-means++ centres drawn with a
    generator seeded by ``seed``, so the result is reproducible; the run with
    the smallest within-cluster sum of squares is kept. A cluster left empty
    during the iterations is restarted at the point farthest from its centre.

    Args:
        points: ``(n_points, n_dims)`` finite values.
        n_clusters: Number of clusters ``k``, ``1 <= k <= n_points``.
        seed: Seed of the starting centres.
        n_init: Number of runs from different starts (``>= 1``).
        max_iter: Most assignment/update steps per run (``>= 1``).

    Returns:
        ``(n_points,)`` int64 cluster labels in ``[0, k)``.

    Raises:
        ValueError: ``points`` not 2-D, empty or not finite; ``n_clusters``,
            ``n_init`` or ``max_iter`` out of range.
    """
    points = np.asarray(points, dtype="float64")
    if points.ndim != 2 or points.shape[0] == 0:
        raise ValueError(f"kmeans: points must have shape (n_points, n_dims) with n_points >= 1; got {points.shape}.")
    if not np.all(np.isfinite(points)):
        raise ValueError("kmeans: points contain NaN or inf.")
    if not 1 <= int(n_clusters) <= points.shape[0]:
        raise ValueError(f"kmeans: n_clusters must be in [1, {points.shape[0]}] (the number of points); "
                         f"got {n_clusters}.")
    if int(n_init) < 1 or int(max_iter) < 1:
        raise ValueError(f"kmeans: n_init and max_iter must be >= 1; got {n_init} and {max_iter}.")
    rng = np.random.default_rng(seed)
    best_labels, best_inertia = None, np.inf
    for _ in range(int(n_init)):
        labels, inertia = _lloyd(points, _kmeans_plus_plus(points, int(n_clusters), rng), int(max_iter))
        if inertia < best_inertia:
            best_labels, best_inertia = labels, inertia
    return best_labels


def _squared_distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    # |x|^2 - 2 x.c + |c|^2 is one matrix product instead of an (n, k, d) array; clipped for rounding.
    squared = (points**2).sum(axis=1)[:, None] - 2.0 * points @ centres.T + (centres**2).sum(axis=1)[None, :]
    return np.maximum(squared, 0.0)


def _kmeans_plus_plus(points: np.ndarray, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    # Arthur & Vassilvitskii (2007): each next centre drawn with probability proportional to the squared
    # distance to the nearest centre so far, which spreads the starts and avoids most poor local minima.
    centres = [points[rng.integers(len(points))]]
    nearest = _squared_distances(points, np.asarray(centres))[:, 0]
    for _ in range(1, n_clusters):
        total = nearest.sum()
        # All points on the centres already chosen (duplicates): any point is as good a start.
        index = rng.choice(len(points), p=nearest / total) if total > 0 else rng.integers(len(points))
        centres.append(points[index])
        nearest = np.minimum(nearest, _squared_distances(points, points[index][None, :])[:, 0])
    return np.asarray(centres)


def _lloyd(points: np.ndarray, centres: np.ndarray, max_iter: int) -> tuple[np.ndarray, float]:
    labels = None
    for _ in range(max_iter):
        distances = _squared_distances(points, centres)
        new_labels = distances.argmin(axis=1)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        for cluster in np.flatnonzero(np.bincount(labels, minlength=len(centres)) == 0):
            # An empty cluster takes the worst-fitted point, so it restarts there instead of staying empty.
            farthest = distances[np.arange(len(points)), labels].argmax()
            labels[farthest] = cluster
            distances[farthest] = 0.0
        # Sums per cluster as one (k, n) x (n, d) product: far faster than np.add.at.
        members = np.zeros((len(centres), len(points)))
        members[labels, np.arange(len(points))] = 1.0
        counts = members.sum(axis=1)[:, None]
        # A cluster emptied by taking another's only point (duplicates) keeps its centre.
        centres = np.where(counts > 0, (members @ points) / np.maximum(counts, 1.0), centres)
    distances = _squared_distances(points, centres)
    labels = distances.argmin(axis=1)
    return labels.astype("int64"), float(distances[np.arange(len(points)), labels].sum())


def adjusted_rand_index(labels_a, labels_b) -> float:
    """How well two partitions of the same items agree, corrected for chance (Hubert & Arabie, 1985).

    With ``n_ij`` the number of items in cluster ``i`` of ``labels_a`` and
    ``j`` of ``labels_b``, ``a_i`` and ``b_j`` the cluster sizes, and
    ``C(m) = m (m - 1) / 2`` the number of pairs:
    ``ARI = (sum C(n_ij) - E) / ((sum C(a_i) + sum C(b_j)) / 2 - E)`` with
    ``E = sum C(a_i) * sum C(b_j) / C(n)``, the expected pair count of two
    random partitions of those sizes. It is 1 for the same partition (up to
    renaming the labels), about 0 for unrelated ones, and can be negative.
    Two partitions that both put every item alone, or both put all items in
    one cluster, agree: 1.

    Args:
        labels_a: ``(n_items,)`` cluster labels (any hashable values).
        labels_b: ``(n_items,)`` cluster labels of the same items.

    Returns:
        The adjusted Rand index, a float ``<= 1``.

    Raises:
        ValueError: the label arrays are not 1-D, have different lengths or
            hold fewer than 2 items.
    """
    labels_a, labels_b = np.asarray(labels_a), np.asarray(labels_b)
    if labels_a.ndim != 1 or labels_a.shape != labels_b.shape or len(labels_a) < 2:
        raise ValueError("adjusted_rand_index: labels must be two 1-D arrays of the same length >= 2; "
                         f"got shapes {labels_a.shape} and {labels_b.shape}.")
    _, rows = np.unique(labels_a, return_inverse=True)
    _, columns = np.unique(labels_b, return_inverse=True)
    table = np.zeros((rows.max() + 1, columns.max() + 1), dtype="float64")
    np.add.at(table, (rows, columns), 1.0)

    def pairs(counts):
        return float((counts * (counts - 1) / 2).sum())

    together = pairs(table)
    pairs_a, pairs_b = pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    expected = pairs_a * pairs_b / pairs(np.asarray([len(labels_a)], dtype="float64"))
    maximum = (pairs_a + pairs_b) / 2
    if maximum == expected:  # Both all-singletons or both one cluster: the same (trivial) partition.
        return 1.0
    return (together - expected) / (maximum - expected)
