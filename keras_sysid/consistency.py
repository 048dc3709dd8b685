"""How consistently models fitted with different seeds say where each neuron looks and what it reads.

A fitted model's readout gives each neuron a position (where its receptive
field is) and a feature vector (which of the core's channels it reads). Such
per-neuron "embeddings" are used to map receptive fields and to group neurons
into functional types; Turishcheva et al. (NeurIPS 2024, "Reproducibility of
predictive networks for mouse visual cortex") asked how much of that survives
refitting with another seed. Here, for every pair of models of the same
neurons:

- **positions**: the Pearson correlation, across neurons, of the row and of
  the column coordinates of :meth:`~keras_sysid.models.SystemIdentificationModel.rf_positions`
  (image pixels), and the median distance in pixels between a neuron's two
  positions; its chance level pairs each neuron with a shuffled one.
- **features**: each model's feature vectors, scaled to unit length, are
  clustered by k-means (:func:`keras_sysid.clustering.kmeans`) into ``k``
  groups for a few ``k``, and the two partitions of the neurons are compared
  by the adjusted Rand index (:func:`keras_sysid.clustering.adjusted_rand_index`).
  Each model has its own core, so its feature space is its own: partitions of
  the same neurons can be compared across models, feature vectors cannot.
  Chance (a partition against a shuffled one) is about 0; the same model
  clustered from two k-means seeds gives the clustering's own reproducibility,
  the ceiling for two models.

Each measure is summarised over the pairs as mean and (sample) standard deviation.

Example:
    >>> ensemble = ks.load("mouse_v1_ensemble")
    >>> report = seed_consistency(ensemble.members)
    >>> report["position_corr"]["row"]["mean"], report["feature_cluster_ari"]["10"]["mean"]
"""

from __future__ import annotations

import itertools

import keras
import numpy as np

from keras_sysid import clustering, metrics

DEFAULT_N_CLUSTERS = (5, 10, 20, 50)


def feature_vectors(model) -> np.ndarray:
    """Each neuron's readout feature vector, scaled to unit length: ``(n_neurons, channels)``.

    The readout's signed ``features`` as its forward pass uses them
    (``effective_features()`` where the readout has one, e.g. the factorized
    readout's ``|features|`` with ``positive_features``): the sign says whether
    a channel excites or inhibits the neuron. Scaling to unit length compares
    what a neuron reads, not how strongly: the overall scale trades off
    against the core's output scale and each neuron's gain. A neuron whose
    features are all 0 keeps its zero vector.

    Args:
        model: A fitted single-session model with a ``readout``.

    Returns:
        ``(n_neurons, channels)`` float64.

    Raises:
        ValueError: the model has no readout, or its readout has no ``features``
            weight (e.g. the fully connected readout); named.
    """
    readout = _readout_of(model)
    if hasattr(readout, "effective_features"):
        weights = readout.effective_features()
    elif isinstance(getattr(readout, "features", None), keras.Variable):
        weights = readout.features
    else:
        raise ValueError(f"{_name(model)}: its {type(readout).__name__} has no per-neuron feature vector "
                         "(a 'features' weight of shape (channels, n_neurons)) to compare across seeds.")
    vectors = np.asarray(keras.ops.convert_to_numpy(weights), dtype="float64").T
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def positions(model) -> np.ndarray:
    """Each neuron's receptive-field centre in image pixels, ``(n_neurons, 2)`` (row, column).

    Raises:
        ValueError: the model has no readout, or its readout has no positions (named).
    """
    _readout_of(model)
    try:
        return np.asarray(model.rf_positions(), dtype="float64")
    except (AttributeError, NotImplementedError, ValueError) as error:
        raise ValueError(f"{_name(model)}: no receptive-field positions to compare across seeds ({error}).") from None


def position_agreement(positions_a, positions_b) -> dict:
    """How well two models' positions of the same neurons agree.

    Args:
        positions_a: ``(n_neurons, 2)`` (row, column) positions in pixels.
        positions_b: ``(n_neurons, 2)``, the same neurons in another model.

    Returns:
        ``{"row_corr", "column_corr", "distance_px"}``: the Pearson correlation
        across neurons of each coordinate (0 when one is constant) and the
        median distance between a neuron's two positions.

    Raises:
        ValueError: the shapes differ or are not ``(n_neurons >= 2, 2)``.
    """
    positions_a = np.asarray(positions_a, dtype="float64")
    positions_b = np.asarray(positions_b, dtype="float64")
    if positions_a.shape != positions_b.shape or positions_a.ndim != 2 or positions_a.shape[1:] != (2,) \
            or positions_a.shape[0] < 2:
        raise ValueError("position_agreement: positions must be two (n_neurons >= 2, 2) arrays of one shape; "
                         f"got {positions_a.shape} and {positions_b.shape}.")
    row_corr, column_corr = metrics.correlation(positions_a, positions_b)
    distance = np.median(metrics.rf_distance(positions_a, positions_b))
    return {"row_corr": float(row_corr), "column_corr": float(column_corr), "distance_px": float(distance)}


def seed_consistency(models, names=None, n_clusters=DEFAULT_N_CLUSTERS, seed: int = 0, n_init: int = 4) -> dict:
    """Consistency across models (e.g. seeds) of the neurons' positions and feature clusters.

    See the module docstring for the definitions. Every pair of models is
    compared; each measure is reported as ``{"mean", "sd"}`` over the pairs
    (``sd`` 0 for one pair).

    Args:
        models: Two or more fitted single-session models of the same neurons
            (e.g. an :class:`~keras_sysid.ensemble.Ensemble`'s ``members``).
        names: One name per model for the report; default ``model_0``, ...
        n_clusters: The numbers of k-means clusters ``k`` to compare at.
        seed: Seed of k-means (the same for every model) and of the shuffles.
        n_init: k-means starts per clustering.

    Returns:
        A JSON-able dict: ``models``, ``n_neurons``, ``n_pairs``,
        ``position_corr`` (``{"row", "column"}``), ``position_distance_px``,
        ``position_distance_px_chance``, and, keyed by ``str(k)``,
        ``feature_cluster_ari``, ``feature_cluster_ari_chance`` and
        ``feature_cluster_ari_same_model`` (two k-means seeds on one model,
        summarised over the models).

    Raises:
        ValueError: fewer than 2 models, names of another count, models of
            different neuron counts, a readout without positions or features,
            or ``n_clusters`` empty or not in ``[2, n_neurons]``; named.
    """
    models = list(models)
    if len(models) < 2:
        raise ValueError(f"seed_consistency needs at least 2 models to compare; got {len(models)}.")
    names = [_name(model) for model in models] if names is None else [str(name) for name in names]
    if len(names) != len(models):
        raise ValueError(f"seed_consistency: {len(names)} names for {len(models)} models.")
    # A list, not a dict by name: two models may share a name.
    counts = [getattr(model, "n_neurons", None) for model in models]
    if None in counts or len(set(counts)) != 1:
        listed = ", ".join(f"{name}: {count}" for name, count in zip(names, counts))
        raise ValueError(f"seed_consistency: the models must be of the same neurons; their n_neurons are {listed}.")
    n_neurons = int(counts[0])
    ks = [int(k) for k in n_clusters]
    if not ks or any(not 2 <= k <= n_neurons for k in ks):
        raise ValueError(f"seed_consistency: n_clusters must be one or more values in [2, {n_neurons}] "
                         f"(the neuron count); got {list(n_clusters)}.")
    # Read everything before the first clustering, so a model without positions or features fails at once.
    located = [positions(model) for model in models]
    features = [feature_vectors(model) for model in models]

    rng = np.random.default_rng(seed)
    pairs = list(itertools.combinations(range(len(models)), 2))
    agreement = [position_agreement(located[a], located[b]) for a, b in pairs]
    chance_distance = [float(np.median(metrics.rf_distance(located[a], located[b][rng.permutation(n_neurons)])))
                       for a, b in pairs]
    ari, chance, same_model = {}, {}, {}
    for k in ks:
        labels = [clustering.kmeans(vectors, k, seed=seed, n_init=n_init) for vectors in features]
        ari[str(k)] = _summary([clustering.adjusted_rand_index(labels[a], labels[b]) for a, b in pairs])
        chance[str(k)] = _summary([clustering.adjusted_rand_index(labels[a], rng.permutation(labels[b]))
                                   for a, b in pairs])
        again = [clustering.kmeans(vectors, k, seed=seed + 1, n_init=n_init) for vectors in features]
        same_model[str(k)] = _summary([clustering.adjusted_rand_index(first, second)
                                       for first, second in zip(labels, again)])
    return {
        "models": names,
        "n_neurons": n_neurons,
        "n_pairs": len(pairs),
        "position_corr": {"row": _summary([pair["row_corr"] for pair in agreement]),
                          "column": _summary([pair["column_corr"] for pair in agreement])},
        "position_distance_px": _summary([pair["distance_px"] for pair in agreement]),
        "position_distance_px_chance": _summary(chance_distance),
        "feature_cluster_ari": ari,
        "feature_cluster_ari_chance": chance,
        "feature_cluster_ari_same_model": same_model,
    }


def _summary(values) -> dict:
    values = np.asarray(values, dtype="float64")
    # The sample standard deviation over pairs (n - 1), 0 for a single pair.
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


def _name(model) -> str:
    return str(getattr(model, "name", type(model).__name__))


def _readout_of(model):
    readout = getattr(model, "readout", None)
    if readout is None:
        kind = type(model).__name__
        hint = {"Ensemble": " (compare its members)", "MultiSessionModel": " (compare one session's models)"}
        raise ValueError(f"{_name(model)}: a {kind} has no single readout{hint.get(kind, '')}; "
                         "give single-session models with a readout.")
    return readout
