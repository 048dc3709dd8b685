"""The built-in synthetic ground truth as a recording: ``load("synthetic")`` or ``load("synthetic:cnn")``."""

from __future__ import annotations

import numpy as np

from keras_sysid.data.formats import register_format
from keras_sysid.data.recording import Recording, RecordingError
from keras_sysid.data.synthetic import GROUND_TRUTHS, SyntheticPopulation, make_population

PREFIX = "synthetic"


def _is_synthetic(source) -> bool:
    return isinstance(source, str) and (source == PREFIX or source.startswith(PREFIX + ":"))


@register_format(PREFIX, _is_synthetic, '"synthetic" or "synthetic:cnn", the built-in ground truth (dog or cnn cells)')
def load_synthetic(source: str = PREFIX, *, n_neurons: int = 1000, n_types: int = 2, image_size: int = 48,
                   n_train: int = 8192, n_validation: int = 1024, n_test: int = 2048, jitter: float = 0.05,
                   seed: int = 0, behavior_gain: bool = False, eye_shift: bool = False) -> Recording:
    """Simulates a population (:func:`~keras_sysid.data.make_population`) as a :class:`Recording`.

    Args:
        source: ``"synthetic"`` (difference-of-Gaussians cells, the paper's
            Fig. 4) or ``"synthetic:<ground truth>"`` of
            :data:`~keras_sysid.data.GROUND_TRUTHS`.
        **options: :func:`~keras_sysid.data.make_population`'s.

    Returns:
        Tiers ``train``, ``validation``, ``test`` (each image shown once);
        ``trials["clean_responses"]`` ``(trials, N)`` the noise-free rates;
        ``neurons["rf_location"]`` ``(N, 2)`` the true RF centres (row, column
        pixels) and ``neurons["cell_type"]`` ``(N,)``.
    """
    ground_truth = source.split(":", 1)[1] if ":" in source else "dog"
    if ground_truth not in GROUND_TRUTHS:
        raise RecordingError(f"{source!r}: unknown ground truth {ground_truth!r}; choose one of {GROUND_TRUTHS}.")
    population = make_population(ground_truth, n_neurons=n_neurons, n_types=n_types, image_size=image_size,
                                 n_train=n_train, n_validation=n_validation, n_test=n_test, jitter=jitter, seed=seed,
                                 behavior_gain=behavior_gain, eye_shift=eye_shift)
    return from_population(population, name=f"synthetic_{ground_truth}")


def from_population(population: SyntheticPopulation, name: str) -> Recording:
    """A simulated population's three splits as one :class:`Recording` (in tier order)."""
    parts = {tier: getattr(population, tier) for tier in ("train", "validation", "test")}

    def stacked(field):
        values = [getattr(part, field) for part in parts.values()]
        return None if values[0] is None else np.concatenate(values)

    tiers = np.concatenate([np.full(len(part.images), tier) for tier, part in parts.items()])
    return Recording(images=stacked("images"), responses=stacked("responses"), tiers=tiers,
                     image_ids=np.arange(len(tiers)), behavior=stacked("behavior"),
                     pupil_center=stacked("pupil_center"),
                     neurons={"rf_location": population.locations, "cell_type": population.types},
                     trials={"clean_responses": stacked("clean_responses")}, name=name)
