"""Does one core shared by many sessions beat one model per session? Synthetic and mouse V1 proofs.

Synthetic (:func:`run_multisession_synthetic`): ``K`` sessions record different
neurons of the same cell types, each on its own few images. Three ways to fit
them, scored by FEV on the noise-free test rates of every neuron: ``K``
separate models; one :class:`~keras_sysid.multisession.MultiSessionModel`
(shared core, a readout per session); and, as the ceiling, one model fitted
to every neuron's responses to every image (data no real lab has).

Mouse V1 (:func:`run_multisession_mouse_v1`): scan 20457-5-9 cut in two
"sessions" with disjoint neurons and disjoint training trials (each half of
the neurons keeps one half of the train tier, and the whole validation and
test tiers); the two separate models against the joint one, each scored on its
half's test trials.

Every fit is stopped early on its validation data and stored in ``out``
keyed by everything that determines it, so a finished fit is read back, not
refitted. The mouse V1 fits also resume from ``out/<name>/backup`` when
interrupted; the synthetic ones (minutes each) start again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import keras
import numpy as np

from keras_sysid import evaluation, multisession, runs
from keras_sysid.data.pipeline import INTERLEAVE_MODES
from keras_sysid.data import Recording, load as load_recording, select_neurons, select_trials
from keras_sysid.data.synthetic import make_population
from keras_sysid.experiments.comparison import keras_sysid_version, write_table
from keras_sysid.recipes.build import build_for_recording, needs
from keras_sysid.recipes.fit import fit_jointly
from keras_sysid.experiments.presets import RIVALS, SOTA_VARIANTS, SYNTHETIC_CORES, FitSettings, synthetic_readout
from keras_sysid.models import build_model
from keras_sysid.atomic_files import write_json
from keras_sysid.training import fit_sessions, fit_with_schedule


@dataclasses.dataclass
class MultiSessionSyntheticConfig:
    """Settings of the synthetic proof (defaults: 4 sessions of 100 neurons, 128 to 768 training images each).

    Sessions differ in size, as real ones do, so that ``"proportional"`` and
    ``"even"`` interleaving (:class:`~keras_sysid.data.pipeline.SessionStream`)
    differ; both are fitted and compared on the validation data.
    """

    n_train: tuple = (128, 256, 384, 768)  # training images of each session
    n_neurons: int = 100  # per session
    n_validation: int = 128  # validation images per session
    n_test: int = 1024  # shared test images, scored on noise-free rates
    ground_truth: str = "cnn"
    n_types: int = 4
    core: str = "paper"
    readout: str = "factorized"
    max_epochs: int = 100
    patience: int = 5
    learning_rate: float = 1e-3
    batch_size: int = 64
    seed: int = 0


def synthetic_sessions(config: MultiSessionSyntheticConfig):
    """Simulates the population and cuts it into sessions.

    Returns:
        ``(population, sessions)``: a
        :class:`~keras_sysid.data.SyntheticPopulation` of ``K * n_neurons``
        neurons (``sum(n_train)`` training images); ``sessions`` is
        ``{name: (neuron indices, train rows, validation rows)}``, disjoint
        in neurons and images, each session's neurons a seeded draw across
        the cell types.
    """
    k = len(config.n_train)
    population = make_population(
        config.ground_truth, n_neurons=k * config.n_neurons, n_types=config.n_types, n_train=sum(config.n_train),
        n_validation=k * config.n_validation, n_test=config.n_test, seed=config.seed,
    )
    rng = np.random.default_rng([config.seed, 1])
    neurons = np.split(rng.permutation(population.n_neurons), k)
    train_rows = np.split(rng.permutation(sum(config.n_train)), np.cumsum(config.n_train)[:-1])
    validation_rows = np.split(rng.permutation(k * config.n_validation), k)
    sessions = {f"session{i}": (np.sort(neurons[i]), np.sort(train_rows[i]), np.sort(validation_rows[i])) for i in range(k)}
    return population, sessions


def _single_model(config, n_neurons, image_shape, name):
    core = SYNTHETIC_CORES[config.core](config.n_types)
    return build_model(n_neurons, image_shape, core=core, readout=synthetic_readout(config.readout)["readout"], name=name)


def _fev_against_truth(model, population, neurons) -> np.ndarray:
    test = dataclasses.replace(population.test, responses=population.test.responses[:, neurons],
                               clean_responses=population.test.clean_responses[:, neurons])
    return evaluation.scores_against_truth(model, test)["fev"]


def run_multisession_synthetic(config: MultiSessionSyntheticConfig, out: str | None = None, verbose: int = 0,
                               log=print) -> list[dict]:
    """Fits the separate, shared-core and pooled models and scores them against the truth.

    Args:
        config: The settings.
        out: Folder for each fit's results (``out/<row>.json``); a finished
            row with the same key is read back, not refitted. ``None``: keep nothing.
        verbose: Keras verbosity of the fits.
        log: Where progress lines go.

    Returns:
        Rows ``{"model", "val_correlation" (best epoch's; the mean over
        sessions for separate and shared-core models), "fev" (mean over all
        K * n_neurons neurons, noise-free test rates), "fev_per_session",
        "epochs", "seconds"}`` for ``separate``, ``shared_core_proportional``,
        ``shared_core_even`` and ``pooled``.
    """
    population, sessions = synthetic_sessions(config)
    # As stored (JSON: tuples become lists), so a stored row's key compares equal.
    key = json.loads(json.dumps({"experiment": "multisession_synthetic", "config": dataclasses.asdict(config),
                                 "backend": keras.backend.backend(), "keras_sysid": keras_sysid_version()}))
    train, validation = population.train, population.validation
    image_shape = population.image_shape

    def stored(name):
        path = os.path.join(out, f"{name}.json") if out else None
        if path and os.path.exists(path):
            with open(path) as file:
                row = json.load(file)
            if row.get("key") == key:
                log(f"  {name}: read {path}")
                return row, path
        return None, path

    def fit_single(name, neurons, train_rows, validation_rows):
        """``(model, epochs, best validation correlation)``."""
        keras.utils.set_random_seed(config.seed)
        model = _single_model(config, len(neurons), image_shape, name)
        x, y = train.images[train_rows], train.responses[train_rows][:, neurons]
        model.adapt(x, y)
        history = fit_with_schedule(
            model, (x, y), (validation.images[validation_rows], validation.responses[validation_rows][:, neurons]),
            max_epochs=config.max_epochs, learning_rate=config.learning_rate, patience=config.patience,
            monitor="val_correlation", verbose=verbose, batch_size=config.batch_size, seed=config.seed)
        return model, len(history.epoch), float(np.max(history.history["val_correlation"]))

    rows = []
    row, path = stored("separate")
    if row is None:
        log(f"  fitting {len(sessions)} separate models")
        start, fev, epochs, val = time.perf_counter(), {}, {}, {}
        for name, (neurons, train_rows, validation_rows) in sessions.items():
            model, epochs[name], val[name] = fit_single(name, neurons, train_rows, validation_rows)
            fev[name] = _fev_against_truth(model, population, neurons)
        row = _row("separate", fev, epochs, start, key, val_correlation=float(np.mean(list(val.values()))))
        _keep(row, path)
    rows.append(row)

    for interleave in INTERLEAVE_MODES:
        name = f"shared_core_{interleave}"
        row, path = stored(name)
        if row is None:
            log(f"  fitting the shared-core model, {interleave} interleaving")
            start = time.perf_counter()
            keras.utils.set_random_seed(config.seed)
            model = multisession.build_multisession_model(
                {session: {"n_neurons": len(neurons), "image_shape": image_shape}
                 for session, (neurons, _, _) in sessions.items()},
                core=SYNTHETIC_CORES[config.core](config.n_types), readout=synthetic_readout(config.readout)["readout"])
            data = {session: (train.images[rows_], train.responses[rows_][:, neurons])
                    for session, (neurons, rows_, _) in sessions.items()}
            model.adapt(data)
            history = fit_sessions(
                model, data,
                {session: (validation.images[rows_], validation.responses[rows_][:, neurons])
                 for session, (neurons, _, rows_) in sessions.items()},
                max_epochs=config.max_epochs, learning_rate=config.learning_rate, patience=config.patience,
                interleave=interleave, batch_size=config.batch_size, seed=config.seed, verbose=verbose)
            fev = {session: _fev_against_truth(model.sessions[session], population, neurons)
                   for session, (neurons, _, _) in sessions.items()}
            row = _row(name, fev, {"all": len(history.epoch)}, start, key,
                       val_correlation=float(np.max(history.history["val_correlation"])))
            _keep(row, path)
        rows.append(row)

    row, path = stored("pooled")
    if row is None:
        log("  fitting the pooled model (every neuron on every image: the ceiling)")
        start = time.perf_counter()
        model, n_epochs, val = fit_single("pooled", np.arange(population.n_neurons), np.arange(len(train.responses)),
                                          np.arange(len(validation.responses)))
        fev_all = _fev_against_truth(model, population, np.arange(population.n_neurons))
        fev = {name: fev_all[neurons] for name, (neurons, _, _) in sessions.items()}
        row = _row("pooled", fev, {"all": n_epochs}, start, key, val_correlation=val)
        _keep(row, path)
    rows.append(row)
    for row in rows:
        log(f"  {row['model']:>25}: validation correlation {row['val_correlation']:.3f}, FEV {row['fev']:.3f} (per session " +
            ", ".join(f"{value:.3f}" for value in row["fev_per_session"].values()) + ")")
    if out:
        write_table(rows, SYNTHETIC_COLUMNS, out, "multisession_synthetic")
    return rows


def _row(name, fev: dict, epochs: dict, start: float, key: dict, val_correlation: float) -> dict:
    return {"model": name, "val_correlation": val_correlation,
            "fev": float(np.mean(np.concatenate(list(fev.values())))),
            "fev_per_session": {session: float(np.mean(values)) for session, values in fev.items()},
            "epochs": epochs, "seconds": round(time.perf_counter() - start, 1), "key": key}


def _keep(row: dict, path: str | None) -> None:
    if path:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(row, path, indent=2)


# -- mouse V1: one scan cut into two sessions --------------------------------------------------


def split_recording(data: Recording, seed: int = 0) -> dict[str, Recording]:
    """Two "sessions" of one recording: disjoint neurons, disjoint training trials.

    The neurons are split in two seeded halves, and so are the train tier's
    trials; half ``a`` keeps neurons ``a`` and train trials ``a``, half ``b``
    the others. Both keep the whole validation and test tiers (for their own
    neurons), so each is scored on its own neurons' test trials.

    Returns:
        ``{"half_a": Recording, "half_b": Recording}``.
    """
    rng = np.random.default_rng([seed, 2])
    neurons = np.split(rng.permutation(data.n_neurons), [data.n_neurons // 2])
    train = data.indices("train")
    train_halves = np.split(rng.permutation(train), [len(train) // 2])
    halves = {}
    for name, own_neurons, own_train in zip(("half_a", "half_b"), neurons, train_halves):
        keep = data.tiers != "train"
        keep[own_train] = True
        halves[name] = dataclasses.replace(select_neurons(select_trials(data, keep), np.sort(own_neurons)),
                                           name=f"{data.name}_{name}")
    return halves


MOUSE_V1_COLUMNS = ("model", "session", "corr_single", "corr_avg", "feve", "frac_oracle", "parameters", "epochs",
                    "seconds")
SYNTHETIC_COLUMNS = ("model", "val_correlation", "fev", "epochs", "seconds")


def run_multisession_mouse_v1(data, out: str, variant: str = "gaussian",
                              settings: FitSettings | None = None, verbose: int = 2, log=print) -> list[dict]:
    """Fits the two halves of :func:`split_recording` separately and jointly, and scores each half's test trials.

    Args:
        data: The recording (mouse V1 scan 20457-5-9): a
            :class:`~keras_sysid.data.Recording` or its path.
        out: Folder; each fit in ``out/<name>/`` (``results.json``,
            ``model.keras``, a resumable ``backup``), the table in
            ``out/multisession_mouse_v1.{json,csv}``.
        variant: An image-only :data:`~keras_sysid.experiments.presets.SOTA_VARIANTS`
            model (its core, readout, learning rate).
        settings: Fit settings (epochs, patience, batch size, seed).
        verbose: Keras verbosity.
        log: Where progress lines go.

    Returns:
        Rows ``{"model", "session", "corr_single", "corr_avg", "feve", "frac_oracle", ...}``:
        ``separate`` and ``joint`` for each half.
    """
    settings = settings or FitSettings()
    if not isinstance(data, Recording):
        data = load_recording(data)
    if variant not in SOTA_VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; choose one of {sorted(SOTA_VARIANTS)}.")
    spec = SOTA_VARIANTS[variant]
    spec = RIVALS[spec["rival"]] if "rival" in spec else spec
    if needs(spec) != ("images",) or spec["readout"]["type"] == "cortex_gaussian":
        raise ValueError(f"Variant {variant!r} is not a plain image-only model; the split proof takes one such as "
                         "'gaussian' or 'lurz_core'.")
    halves = split_recording(data, seed=settings.seed)
    key = json.loads(json.dumps({"experiment": "multisession_mouse_v1", "variant": variant, "spec": spec,
                                 "settings": dataclasses.asdict(settings), "data": data.fingerprint(),
                                 "backend": keras.backend.backend()}))
    rows = []
    for name, half in halves.items():
        model, info = _fit_stored(os.path.join(out, f"separate_{name}"), {**key, "fit": f"separate_{name}"}, log,
                                  lambda backup, fit_key, half=half, name=name:
                                  _fit_single_half(spec, half, settings, name, backup, fit_key, verbose))
        scores = evaluation.evaluate_model(model, half, "test").summary()
        rows.append({"model": "separate", "session": name, **scores, **info})
    model, info = _fit_stored(os.path.join(out, "joint"), {**key, "fit": "joint"}, log,
                              lambda backup, fit_key: _fit_joint(spec, halves, settings, backup, fit_key, verbose))
    for name, scores in multisession.evaluate_sessions(model, halves, "test").items():
        rows.append({"model": "joint", "session": name, **scores.summary(), **info})
    for row in rows:
        log(f"  {row['model']:>8} {row['session']}: corr_single {row['corr_single']:.3f}, corr_avg {row['corr_avg']:.3f}, "
            f"feve {row['feve']:.3f}")
    write_table(rows, MOUSE_V1_COLUMNS, out, "multisession_mouse_v1")
    return rows


def _fit_stored(folder: str, key: dict, log, fit) -> tuple[keras.Model, dict]:
    """The fit stored in ``folder`` under ``key``, or ``fit(backup_dir, key)`` run and stored there (locked)."""
    run = runs.Run(folder, key)
    with run:
        stored = run.finished()
        if stored is not None:
            log(f"  {os.path.basename(folder)}: already fitted, read {run.path(runs.RESULTS)}")
            return keras.saving.load_model(run.path("model.keras")), stored["info"]
        log(f"  fitting {os.path.basename(folder)}")
        start = time.perf_counter()
        with run.resumable():
            model, epochs = fit(run.backup_dir, key)
        info = {"epochs": epochs, "seconds": round(time.perf_counter() - start, 1),
                "parameters": int(model.count_params())}
        run.save_model(model)
        run.write_results({"info": info})
    return model, info


def _fit_single_half(spec, half, settings, name, backup_dir, key, verbose):
    model = build_for_recording(spec, half, seed=settings.seed, name=name)
    history = fit_with_schedule(
        model, half.tier("train"), half.tier("validation"), max_epochs=settings.max_epochs,
        learning_rate=spec.get("learning_rate", settings.learning_rate), patience=settings.patience,
        n_decays=settings.n_decays, monitor="val_correlation", verbose=verbose, backup_dir=backup_dir,
        fingerprint=key, batch_size=settings.batch_size, seed=settings.seed)
    return model, len(history.epoch)


def _fit_joint(spec, halves, settings, backup_dir, key, verbose):
    model, info = fit_jointly(spec, halves, settings, backup_dir=backup_dir, key=key, verbose=verbose, name="joint")
    return model, info["epochs"]
