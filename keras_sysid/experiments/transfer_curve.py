"""The transfer learning curve: a pretrained core vs. a fresh model on new neurons.

``tools/transfer.py``'s library side, on the synthetic ground truth whose
cell types the pretrained model has learned (:mod:`keras_sysid.transfer`
holds the transfer itself).
"""

from __future__ import annotations

import keras
import numpy as np

from keras_sysid import zoo
from keras_sysid.data.synthetic import new_neurons
from keras_sysid.evaluation import scores_against_truth
from keras_sysid.experiments.presets import SyntheticRunConfig
from keras_sysid.models import SystemIdentificationModel
from keras_sysid.positions import envelope_positions
from keras_sysid.training import fit_with_schedule
from keras_sysid.transfer import fresh_copy, locate_new_neurons, with_new_readout


def transfer_learning_curve(
    pretrained: SystemIdentificationModel,
    source_population,
    n_neurons: int = 100,
    train_sizes=(128, 256, 512, 1024, 2048),
    freeze_core: bool = True,
    max_epochs: int = 100,
    learning_rate: float = 0.003,
    seed: int = 1,
    log=print,
    min_images_per_epoch: int = 512,
    readout=None,
    locations: str = "core",
) -> list[dict]:
    """FEV on new neurons against training images, transferred core vs. fresh model.

    For each size, :func:`~keras_sysid.data.synthetic.new_neurons` draws a new
    population of the same cell types as ``source_population`` (which
    ``pretrained`` was fitted to). Two models are fitted with the paper's
    schedule: ``pretrained``'s core with a new readout (:func:`with_new_readout`)
    and a fresh model of the same architecture; both are scored by FEV on
    noise-free test rates.

    Args:
        pretrained: The fitted model whose core is transferred.
        source_population: The synthetic population ``pretrained`` was fitted to.
        n_neurons: Neurons of each new population.
        train_sizes: Training images per point of the curve.
        freeze_core: Train only the transferred model's readout.
        max_epochs: Upper bound on epochs per fit.
        learning_rate: Initial Adam learning rate of both fits.
        seed: Seed of the new neurons and of training.
        log: Called with one line per point.
        min_images_per_epoch: Each epoch passes over the training images
            often enough to see at least this many.
        readout: The new readout of both models, e.g. ``{"type": "fixed_mask"}``
            (default: a copy of ``pretrained``'s kind and settings).
        locations: How each new neuron's mask is placed (``fixed_mask``) or
            started (``factorized``): ``"core"``: the transferred model finds
            it with its pretrained core (:func:`locate_new_neurons`), the fresh
            model, which has no trained core, from its spike-triggered
            envelope; ``"envelope"``: both from the envelope; ``"known"``: both
            at the true location, which isolates what the core transfers.

    Returns:
        One row per size: ``n_train``, ``fev_transferred``, ``fev_fresh``,
        ``epochs_transferred``, ``epochs_fresh``.
    """
    if locations not in ("core", "envelope", "known"):
        raise ValueError(f"locations must be 'core', 'envelope' or 'known'; got {locations!r}.")
    rows = []
    for n_train in train_sizes:
        population = new_neurons(source_population, n_neurons, n_train=n_train, seed=seed)
        mean_responses = population.train.responses.mean(axis=0)
        row = {"n_train": int(n_train)}
        # Each point starts from a clean Keras state (layer names, seed draws), not
        # from what the points before it left behind.
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        # Same architecture, new weights; with_new_readout below gives it the new neurons.
        fresh = fresh_copy(pretrained)
        candidates = {
            "transferred": with_new_readout(
                pretrained, n_neurons, readout=readout, freeze_core=freeze_core, mean_responses=mean_responses
            ),
            "fresh": with_new_readout(
                fresh, n_neurons, readout=readout, freeze_core=False, mean_responses=mean_responses, name="fresh"
            ),
        }
        for label, model in candidates.items():
            # Readouts with positions start at a location, not at random (as
            # the mouse V1 rivals do): from random masks, a few hundred images
            # fit noise before they find one.
            if locations == "known":
                on_grid = model.pixels_to_grid(population.locations.astype("float64"))
            elif locations == "core" and label == "transferred":
                on_grid = locate_new_neurons(model, population.train.images, population.train.responses)
            else:
                on_grid = model.pixels_to_grid(envelope_positions(population.train.images, population.train.responses))
            try:
                model.readout.place_at(on_grid)
            except NotImplementedError:
                pass  # a readout without positions (fully connected) learns its own
            history = fit_with_schedule(
                model,
                # Every point's epochs hold about min_images_per_epoch images, so
                # early stopping allows small training sets as many updates.
                population.epoch_stream(
                    "train", 64, seed=seed, passes_per_epoch=max(1, -(-min_images_per_epoch // int(n_train)))
                ),
                population.dataset("validation", 256),
                max_epochs=max_epochs,
                learning_rate=learning_rate,
                verbose=0,
            )
            row[f"fev_{label}"] = float(np.mean(scores_against_truth(model, population.test)["fev"]))
            row[f"epochs_{label}"] = len(history.epoch)
        log(f"{n_train} images: FEV transferred {row['fev_transferred']:.3f}, fresh {row['fev_fresh']:.3f}")
        rows.append(row)
    return rows


def learning_curve_for_entry(name_or_path: str, **kwargs) -> list[dict]:
    """:func:`transfer_learning_curve` for a zoo entry fitted to a synthetic population.

    The entry's ``metadata.json`` must hold the ``config`` of the run that
    fitted it (a :class:`~keras_sysid.experiments.presets.SyntheticRunConfig`, as
    ``tools/build_zoo.py --entry synthetic_cnn_factorized`` writes); the source
    population is simulated again from it.

    Args:
        name_or_path: Zoo name or folder.
        **kwargs: Passed to :func:`transfer_learning_curve`.
    """
    facts = zoo.metadata(name_or_path)
    if "config" not in facts:
        raise ValueError(f"{name_or_path}: metadata.json has no 'config' of a synthetic run to transfer from.")
    source = SyntheticRunConfig(**facts["config"]).population()
    return transfer_learning_curve(zoo.load(name_or_path), source, **kwargs)
