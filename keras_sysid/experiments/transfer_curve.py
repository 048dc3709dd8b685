"""The transfer learning curve: a pretrained core vs. a fresh model on new neurons.

``tools/transfer.py``'s library side, on the synthetic ground truth whose
cell types the pretrained model has learned (:mod:`keras_sysid.transfer`
holds the transfer itself).
"""

from __future__ import annotations

import hashlib
import json
import os

import keras
import numpy as np

from keras_sysid import zoo
from keras_sysid.data.synthetic import new_neurons
from keras_sysid.evaluation import scores_against_truth
from keras_sysid.experiments.presets import FitSettings, SyntheticRunConfig
from keras_sysid.models import SystemIdentificationModel
from keras_sysid.positions import envelope_positions
from keras_sysid.atomic_files import write_json
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
    seeds=(1, 2, 3),
    log=print,
    min_images_per_epoch: int = 512,
    readout=None,
    locations: str = "core",
    monitor: str = "val_loss",
    results_path=None,
) -> list[dict]:
    """FEV on new neurons against training images, transferred core vs. fresh model.

    For each size and seed, :func:`~keras_sysid.data.synthetic.new_neurons`
    draws a new population of the same cell types as ``source_population``
    (which ``pretrained`` was fitted to). Two models are fitted with the
    paper's schedule: ``pretrained``'s core with a new readout
    (:func:`with_new_readout`) and a fresh model of the same architecture; both
    are scored by FEV on noise-free test rates. Each (size, seed) fit starts
    from a clean Keras state, so its result does not depend on the fits before
    it; each point reports the mean and spread over the seeds.

    Args:
        pretrained: The fitted model whose core is transferred.
        source_population: The synthetic population ``pretrained`` was fitted to.
        n_neurons: Neurons of each new population.
        train_sizes: Training images per point of the curve.
        freeze_core: Train only the transferred model's readout.
        max_epochs: Upper bound on epochs per fit.
        learning_rate: Initial Adam learning rate of both fits.
        seeds: Seeds (an int or a sequence); each seeds the new neurons, their
            images and noise, the new weights and the batch order of one fit
            per size.
        log: Called with one line per fit and one per point.
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
        monitor: What early stopping watches (see
            :func:`~keras_sysid.training.fit_with_schedule`). Keep the default,
            ``"val_loss"``, for FEV: a readout fitted to a few hundred images
            overfits its response scale while validation correlation, which
            ignores scale, still creeps up (docs/results.md, transfer learning curve).
        results_path: A JSON file that every finished fit is written to. If it
            exists (from an interrupted run with the same settings), its fits
            are reused instead of refitted; with other settings it raises
            ``ValueError``.

    Returns:
        One row per size: ``n_train``, ``seeds``, and for ``transferred`` and
        ``fresh``: ``fev_<model>`` (mean over seeds), ``fev_<model>_std``
        (sample standard deviation, 0 for one seed), ``fev_<model>_min``,
        ``fev_<model>_max``, ``fev_<model>_per_seed`` and
        ``epochs_<model>_per_seed`` (in the order of ``seeds``).
        :func:`format_curve` prints them as a table.
    """
    if locations not in ("core", "envelope", "known"):
        raise ValueError(f"locations must be 'core', 'envelope' or 'known'; got {locations!r}.")
    seeds = [int(seeds)] if np.ndim(seeds) == 0 else [int(seed) for seed in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be one or more distinct integers; got {seeds}.")
    settings = {
        "pretrained_core_sha256": _weights_digest(pretrained.core),
        "source_population": _population_digest(source_population),
        "n_neurons": int(n_neurons), "freeze_core": bool(freeze_core), "max_epochs": int(max_epochs),
        "learning_rate": float(learning_rate), "min_images_per_epoch": int(min_images_per_epoch),
        "readout": readout, "locations": locations, "monitor": monitor,
        # The same seed draws other weights and batches under another Keras backend.
        "backend": keras.backend.backend(),
    }
    fits = _load_fits(results_path, settings)
    rows = []
    for n_train in train_sizes:
        n_train = int(n_train)
        for seed in seeds:
            if (n_train, seed) in fits:
                fit = fits[(n_train, seed)]
                source = "from " + str(results_path)
            else:
                fit = _fit_point(
                    pretrained, source_population, n_neurons, n_train, seed, freeze_core=freeze_core,
                    max_epochs=max_epochs, learning_rate=learning_rate, min_images_per_epoch=min_images_per_epoch,
                    readout=readout, locations=locations, monitor=monitor,
                )
                fits[(n_train, seed)] = fit
                _save_fits(results_path, settings, fits)
                source = "fitted"
            log(
                f"{n_train} images, seed {seed}: FEV transferred {fit['fev_transferred']:.3f} "
                f"({fit['epochs_transferred']} epochs), fresh {fit['fev_fresh']:.3f} ({fit['epochs_fresh']} epochs); {source}"
            )
        row = _summarise(n_train, seeds, [fits[(n_train, seed)] for seed in seeds])
        log(
            f"{n_train} images, {len(seeds)} seeds: FEV transferred {row['fev_transferred']:.3f} "
            f"± {row['fev_transferred_std']:.3f}, fresh {row['fev_fresh']:.3f} ± {row['fev_fresh_std']:.3f}"
        )
        rows.append(row)
    return rows


def _fit_point(
    pretrained, source_population, n_neurons, n_train, seed, freeze_core, max_epochs, learning_rate,
    min_images_per_epoch, readout, locations, monitor,
) -> dict:
    """One (size, seed) fit of both models: ``fev_``, ``epochs_`` and ``history_`` of ``transferred`` and ``fresh``."""
    population = new_neurons(source_population, n_neurons, n_train=n_train, seed=seed)
    mean_responses = population.train.responses.mean(axis=0)
    fit = {"n_train": int(n_train), "seed": int(seed)}
    # Each fit starts from a clean Keras state (layer names, seed draws), not
    # from what the fits before it left behind.
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
        # Readouts with positions start at a location, not at random (as the
        # mouse V1 rivals do): from random masks, a few hundred images fit
        # noise before they find one.
        if locations == "known":
            on_grid = model.pixels_to_grid(population.locations.astype("float64"))
        elif locations == "core" and label == "transferred":
            on_grid = locate_new_neurons(model, population.train.images, population.train.responses, verbose=0)
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
                "train", 64, seed=seed,
                passes_per_epoch=FitSettings(min_images_per_epoch=min_images_per_epoch).passes_per_epoch(n_train)
            ),
            population.dataset("validation", 256),
            max_epochs=max_epochs,
            learning_rate=learning_rate,
            monitor=monitor,
            verbose=0,
        )
        fit[f"fev_{label}"] = float(np.mean(scores_against_truth(model, population.test)["fev"]))
        fit[f"epochs_{label}"] = len(history.epoch)
        # Per-epoch validation history, to see where and why each fit stopped.
        fit[f"history_{label}"] = {
            key: [round(float(value), 5) for value in history.history[key]]
            for key in ("val_loss", "val_correlation") if key in history.history
        }
    return fit


def _summarise(n_train: int, seeds: list[int], fits: list[dict]) -> dict:
    row = {"n_train": int(n_train), "seeds": list(seeds)}
    for label in ("transferred", "fresh"):
        values = np.array([fit[f"fev_{label}"] for fit in fits])
        row[f"fev_{label}"] = float(values.mean())
        row[f"fev_{label}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        row[f"fev_{label}_min"] = float(values.min())
        row[f"fev_{label}_max"] = float(values.max())
        row[f"fev_{label}_per_seed"] = [float(v) for v in values]
        row[f"epochs_{label}_per_seed"] = [int(fit[f"epochs_{label}"]) for fit in fits]
    return row


def format_curve(rows: list[dict]) -> str:
    """A plain-text table of :func:`transfer_learning_curve` rows: mean ± std (min..max) over seeds."""
    def cell(row, label):
        return (
            f"{row[f'fev_{label}']:.3f} ± {row[f'fev_{label}_std']:.3f} "
            f"({row[f'fev_{label}_min']:.3f}..{row[f'fev_{label}_max']:.3f})"
        )

    header = ("training images", "seeds", "transferred FEV mean ± std (min..max)", "fresh FEV mean ± std (min..max)")
    body = [(str(row["n_train"]), ",".join(map(str, row["seeds"])), cell(row, "transferred"), cell(row, "fresh")) for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "\n".join(" | ".join(text.rjust(width) for text, width in zip(line, widths)) for line in [header, *body])


def _weights_digest(layer) -> str:
    digest = hashlib.sha256()
    for weight in layer.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


def _population_digest(population) -> str:
    return hashlib.sha256(np.ascontiguousarray(population.train.responses[:64]).tobytes()).hexdigest()


def _load_fits(path, settings: dict) -> dict:
    """The fits an earlier run with the same settings wrote to ``path``, by ``(n_train, seed)``."""
    if path is None or not os.path.exists(path):
        return {}
    with open(path) as file:
        saved = json.load(file)
    if saved.get("settings") != json.loads(json.dumps(settings)):
        raise ValueError(
            f"{path} holds fits of other settings ({saved.get('settings')}); these are {settings}. "
            "Pass another results path or remove it."
        )
    return {(int(fit["n_train"]), int(fit["seed"])): fit for fit in saved["fits"]}


def _save_fits(path, settings: dict, fits: dict) -> None:
    if path is None:
        return
    # A killed run leaves the last complete file.
    write_json({"settings": settings, "fits": [fits[key] for key in sorted(fits)]}, path, indent=1)


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
