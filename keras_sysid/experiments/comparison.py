"""The paper's comparisons, end to end: ``tools/reproduce.py``'s library side.

- :func:`run_mouse_v1`: every rival of :mod:`keras_sysid.experiments.rivals` fitted to a
  ``static*-preproc0`` data set and scored on its test tier (Table 1), with
  the retinotopy of the learned RF positions.
- :func:`run_synthetic_types`: factorized, fixed-mask and fully connected
  readouts on the nonlinear ground truth with 4, 8 and 16 cell types (Fig. 5e).

Each run writes into ``out/<model>/`` and a finished model is not fitted
again, so an interrupted comparison resumes where it stopped.

Stored fits are keyed by everything that determines them (:func:`rivals.fit_key
<keras_sysid.experiments.rivals.fit_key>`: the data's content fingerprint,
the model's preset, the fit settings and the seed; :func:`synthetic_types_key`).
A finished fit (``results.json``) or a resumable one (``backup/``) is reused
only when its key is this run's. Any other stored fit stops the run before
anything is fitted, with a :class:`StoredRunMismatch` naming the folders and
what differs; ``overwrite=True`` (``--overwrite``) deletes such fits and
refits them instead. The keras_sysid version is recorded but not compared.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import time

import keras
import numpy as np

from keras_sysid import evaluation, runs
from keras_sysid.data import load as load_recording
from keras_sysid.data.synthetic import make_population
from keras_sysid.experiments import rivals
from keras_sysid.experiments.presets import (
    RIVALS,
    SYNTHETIC_READOUTS,
    FitSettings,
    SyntheticTypesSettings,
    paper_core,
)
from keras_sysid.data.readers.synthetic import from_population
from keras_sysid.recipes.synthetic import model_for_recording
from keras_sysid.atomic_files import write_json
from keras_sysid.resume import fingerprint_differences
from keras_sysid.training import fit_with_schedule

TABLE_COLUMNS = ("model", "corr_single", "corr_avg", "feve", "frac_oracle", "epochs", "seconds")
# What each fit writes into its folder; overwrite=True deletes exactly these.
_FIT_FILES = ("results.json", "model.keras", "scores.npz", "backup")


class StoredRunMismatch(RuntimeError):
    """An output folder holds a fit (finished or resumable) of another run key."""


@dataclasses.dataclass
class PlannedFit:
    """One fit of a comparison: where it is stored and the key it must carry."""

    label: str
    folder: str  # what to delete to start afresh (the results file itself when there is no backup)
    results_path: str
    key: dict
    backup_dir: str | None = None


def _normalised(value):
    return json.loads(json.dumps(value))


def _stored_key(planned: PlannedFit):
    """``(where, stored key, stored data)`` of what ``planned``'s folder holds, or ``None``.

    The key is a string saying why when the results file cannot be read.
    """
    if os.path.exists(planned.results_path):
        try:
            with open(planned.results_path) as file:
                row = json.load(file)
        except (OSError, ValueError) as error:
            return planned.results_path, f"unreadable ({error})", None
        if not isinstance(row, dict):
            return planned.results_path, "unreadable (not a JSON object)", None
        data = row.get("data_name")
        if data and row.get("data_path"):
            data = f"{row['data_path']} ({data})"
        return planned.results_path, row.get("key"), data
    pointer = os.path.join(planned.backup_dir, "progress.json") if planned.backup_dir else None
    if pointer and os.path.exists(pointer):
        try:
            with open(pointer) as file:
                return planned.backup_dir, json.load(file).get("fingerprint"), None
        except (OSError, ValueError):
            return None  # TrainingBackup names an unreadable pointer itself
    return None


def _differences(stored: dict | None, key: dict, stored_data_name, this_data_name) -> list[str]:
    if isinstance(stored, str):
        return [f"it is {stored}"]
    if not isinstance(stored, dict):
        return ["it carries no run key (written by an older keras_sysid), so what it was fitted to is unknown"]
    stored, key = _normalised(stored), _normalised(key)
    lines = []
    if "data" in key and stored.get("data") != key["data"]:
        was = stored.get("data")
        if not (isinstance(was, str) and len(was) == 64 and all(c in "0123456789abcdef" for c in was)):
            lines.append(f"data fingerprint differs: the stored fit names its data only as {json.dumps(was)} "
                         f"(written before content fingerprints), so it cannot be checked against this run's "
                         f"{this_data_name} (sha256 {key['data']})")
        else:
            of = f"{stored_data_name} (sha256 {was})" if stored_data_name else f"other data (sha256 {was})"
            lines.append(f"data fingerprint differs: this run's data is {this_data_name} (sha256 {key['data']}), "
                         f"the stored fit is of {of}")
    lines += fingerprint_differences({k: v for k, v in stored.items() if k != "data"},
                                     {k: v for k, v in key.items() if k != "data"}, labels=("stored", "this run"))
    return lines


def check_stored_fits(planned: list[PlannedFit], overwrite: bool, this_data_name: str, log) -> None:
    """Stops (or, with ``overwrite``, clears) every planned folder holding a fit of another key.

    Runs before any fit, so a mismatch costs seconds, not the fits before it.
    """
    problems = []
    for plan in planned:
        stored = _stored_key(plan)
        if stored is None:
            continue
        where, stored_key, stored_name = stored
        lines = _differences(stored_key, plan.key, stored_name, this_data_name)
        if lines:
            problems.append((plan, where, lines))
    if not problems:
        return
    if not overwrite:
        report = "\n".join(f"{where} is not this run's {plan.label}:\n  - " + "\n  - ".join(lines)
                           for plan, where, lines in problems)
        raise StoredRunMismatch(
            f"{report}\nNothing was fitted or reported. Write to another output folder (--out), delete "
            + ", ".join(sorted({plan.folder for plan, _, _ in problems}))
            + ", or pass --overwrite (overwrite=True) to delete and refit these."
        )
    for plan, where, lines in problems:
        log(f"overwriting {where} ({'; '.join(lines)})")
        if plan.backup_dir is None:  # a results file alone
            os.remove(plan.results_path)
            continue
        for name in _FIT_FILES:
            path = os.path.join(plan.folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)


def keras_sysid_version() -> str:
    """The installed keras_sysid's version (recorded with every stored fit, not part of its key)."""
    import keras_sysid

    return keras_sysid.__version__


def _note_version(row: dict, where: str, log) -> None:
    if row.get("keras_sysid") != keras_sysid_version():
        written_by = row.get("keras_sysid", "an unknown version")
        log(f"  note: {where} was written by keras_sysid {written_by}; this is {keras_sysid_version()} (not part of the key)")


def write_table(rows: list[dict], columns, out: str, stem: str) -> None:
    """Writes ``rows`` to ``out/<stem>.json`` and, with ``columns``, ``out/<stem>.csv``."""
    with open(os.path.join(out, f"{stem}.json"), "w") as file:
        json.dump(rows, file, indent=2)
    with open(os.path.join(out, f"{stem}.csv"), "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def format_table(rows: list[dict], columns) -> str:
    """A fixed-width text table of ``rows`` (floats with 3 decimals)."""

    def cell(value):
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    cells = [[cell(row.get(column, "")) for column in columns] for row in rows]
    widths = [max(len(column), *(len(r[i]) for r in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths))]
    lines.append("  ".join("-" * width for width in widths))
    lines.extend("  ".join(value.ljust(width) for value, width in zip(r, widths)) for r in cells)
    return "\n".join(lines)


def run_mouse_v1(
    data_path: str,
    out: str,
    models=tuple(RIVALS),
    settings: FitSettings | None = None,
    verbose: int = 2,
    log=print,
    overwrite: bool = False,
) -> list[dict]:
    """Fits and scores each rival on a ``static*-preproc0`` data set.

    Writes ``out/<model>/model.keras``, ``out/<model>/scores.npz`` (per-neuron
    scores and RF positions) and ``out/<model>/results.json``; then
    ``out/mouse_v1.{json,csv}`` and figures ``out/corr_factorized_vs_rivals.png``,
    ``out/retinotopy_<model>.png`` (with matplotlib).

    A model whose ``results.json`` holds this run's key
    (:func:`~keras_sysid.experiments.rivals.fit_key`: data fingerprint, spec,
    settings, seed) is read back, not refitted; an interrupted fit resumes from
    ``out/<model>/backup``. Before anything is fitted, the data set is checked
    for train, validation and repeated test trials, and every requested
    model's folder for a fit of another key.

    Args:
        data_path: The data set's zip file or folder.
        out: Output folder.
        models: Keys of :data:`~keras_sysid.experiments.presets.RIVALS`.
        settings: Fit settings (default :class:`FitSettings`).
        verbose: Keras verbosity.
        log: Where progress lines go.
        overwrite: Delete and refit a stored fit of another key instead of
            raising :class:`StoredRunMismatch`.

    Returns:
        One row per model: the :meth:`~keras_sysid.evaluation.RepeatScores.summary`
        plus ``model``, ``epochs``, ``seconds``, ``retinotopy``, ``key``,
        ``data_name``, ``data_path`` (where the data was read when it was
        fitted) and ``keras_sysid`` (the version that fitted it).

    Raises:
        RecordingError: the data set is unreadable or has no train, validation
            or repeated test trials.
        StoredRunMismatch: a requested model's folder holds a fit of another
            key (and ``overwrite`` is false); nothing is fitted.
    """
    unknown = sorted(set(models) - set(RIVALS))
    if unknown:
        raise ValueError(f"Unknown models {unknown}; choose from {sorted(RIVALS)}.")
    settings = settings or FitSettings()
    start = time.perf_counter()
    data = load_recording(data_path)
    data.check_fittable(where=data_path)
    log(f"read {data.name}: {data.n_trials} trials, {data.n_neurons} neurons, images {data.image_shape} "
        f"in {time.perf_counter() - start:.1f} s (sha256 {data.fingerprint()})")
    planned = [
        PlannedFit(name, os.path.join(out, name), os.path.join(out, name, "results.json"),
                 rivals.fit_key(name, data, settings), backup_dir=os.path.join(out, name, "backup"))
        for name in models
    ]
    check_stored_fits(planned, overwrite, f"{os.path.abspath(data_path)} ({data.name})", log)
    os.makedirs(out, exist_ok=True)
    cortical = data.neurons.get("cell_motor_coordinates")
    rows, per_neuron = [], {}
    for index, plan in enumerate(planned):
        name, folder, results_path = plan.label, plan.folder, plan.results_path
        run = runs.Run(folder, plan.key)
        with run:
            row = run.finished(files=("model.keras", "scores.npz"))
            if row is not None:
                log(f"[{index + 1}/{len(models)}] {name}: already fitted, read {results_path}")
                _note_version(row, results_path, log)
            else:
                log(f"[{index + 1}/{len(models)}] fitting {name} (max {settings.max_epochs} epochs)")
                with run.resumable():
                    model, info = rivals.fit_rival(name, data, settings, verbose=verbose, backup_dir=run.backup_dir)
                scores = evaluation.evaluate_model(model, data, "test")
                rf = model.rf_positions()
                row = {"model": name, **scores.summary(), **info, "settings": dataclasses.asdict(settings)}
                if cortical is not None:
                    row["retinotopy"] = evaluation.retinotopy(rf, cortical)
                row.update(data_name=data.name, data_path=os.path.abspath(data_path),
                           keras_sysid=keras_sysid_version())
                run.save_model(model)
                run.write_npz("scores.npz", corr_single=scores.corr_single, corr_avg=scores.corr_avg,
                              feve=scores.feve, oracle=scores.oracle, rf_positions=rf)
                row = run.write_results(row)  # last: it marks the fit as finished
        with np.load(os.path.join(folder, "scores.npz")) as saved:
            per_neuron[name] = {key: saved[key] for key in saved.files}
        log(f"  {name}: " + ", ".join(f"{k} {row[k]:.3f}" for k in ("corr_single", "corr_avg", "feve", "frac_oracle"))
            + (f", retinotopy r_row {row['retinotopy']['r_row']:.2f} r_column {row['retinotopy']['r_column']:.2f}" if "retinotopy" in row else ""))
        rows.append(row)
    write_table(rows, TABLE_COLUMNS + ("oracle", "n_neurons", "n_trials"), out, "mouse_v1")
    _mouse_figures(per_neuron, cortical, out, log)
    return rows


def _mouse_figures(per_neuron: dict, cortical, out: str, log) -> None:
    try:
        from keras_sysid import plots

        if "factorized" in per_neuron and len(per_neuron) > 1:
            plots.plot_correlation_pairs(
                {name: scores["corr_single"] for name, scores in per_neuron.items()},
                "factorized", os.path.join(out, "corr_factorized_vs_rivals.png"),
            )
        if cortical is not None:
            for name, scores in per_neuron.items():
                plots.plot_retinotopy(
                    scores["rf_positions"], cortical, os.path.join(out, f"retinotopy_{name}.png"),
                    title=f"{name}: learned RF positions, coloured by cortical position",
                )
    except ImportError as error:
        log(f"figures skipped: {error}")


def _synthetic_types_core(n_types: int) -> dict:
    return paper_core(max(32, 2 * n_types))


def synthetic_types_key(n_types: int, readout: str, settings: SyntheticTypesSettings) -> dict:
    """Everything that determines one Fig. 5e fit: the population (ground truth,
    types, neurons, image size, training images, seed), the core and readout
    presets, the fit settings and the Keras backend. ``settings.n_types``
    (which type counts a run covers) is left out: it does not change any one fit.
    """
    fit_settings = {k: v for k, v in dataclasses.asdict(settings).items() if k != "n_types"}
    return {
        "experiment": "synthetic_types", "ground_truth": "cnn", "n_types": int(n_types), "readout": readout,
        "readout_preset": SYNTHETIC_READOUTS[readout], "core": _synthetic_types_core(n_types), "settings": fit_settings,
        "backend": keras.backend.backend(),
    }


def fit_synthetic_readout(readout: str, population, settings: SyntheticTypesSettings, verbose: int = 2):
    """Fits the paper's 3-layer core with one readout to a synthetic population.

    A readout with positions starts each neuron where the training data
    place it (:func:`~keras_sysid.positions.locate_neurons`).

    Returns:
        ``(model, info)`` with ``fev`` (mean over neurons, noise-free test
        rates), ``epochs`` and ``seconds``.
    """
    if readout not in SYNTHETIC_READOUTS:
        raise ValueError(f"Unknown readout {readout!r}; choose one of {sorted(SYNTHETIC_READOUTS)}.")
    start = time.perf_counter()
    keras.utils.set_random_seed(settings.seed)
    n_types = int(population.types.max()) + 1
    model = model_for_recording(from_population(population, "synthetic_cnn"), _synthetic_types_core(n_types), readout,
                                name=readout)
    history = fit_with_schedule(
        model,
        population.epoch_stream("train", settings.batch_size, seed=settings.seed),
        population.dataset("validation", 256),
        max_epochs=settings.max_epochs,
        learning_rate=settings.learning_rate,
        patience=settings.patience,
        verbose=verbose,
    )
    fev = evaluation.scores_against_truth(model, population.test)["fev"]
    return model, {"fev": float(np.mean(fev)), "epochs": len(history.epoch),
                   "seconds": round(time.perf_counter() - start, 1)}


def run_synthetic_types(
    out: str,
    readouts=tuple(SYNTHETIC_READOUTS),
    settings: SyntheticTypesSettings | None = None,
    verbose: int = 2,
    log=print,
    overwrite: bool = False,
) -> list[dict]:
    """Fig. 5e: FEV of each readout on the nonlinear ground truth with 4 / 8 / 16 types.

    Writes ``out/synthetic_types/<types>_<readout>.json`` per fit,
    ``out/synthetic_types.{json,csv}`` and ``out/synthetic_types.png``. A fit
    whose file holds this run's :func:`synthetic_types_key` is read back; a file
    of another key stops the run before any fit (:class:`StoredRunMismatch`),
    or with ``overwrite=True`` is deleted and refitted.

    Returns:
        One row per (types, readout): ``n_types``, ``n_neurons``, ``readout``,
        ``fev``, ``epochs``, ``seconds``, ``key`` and ``keras_sysid``.
    """
    unknown = sorted(set(readouts) - set(SYNTHETIC_READOUTS))
    if unknown:
        raise ValueError(f"Unknown readouts {unknown}; choose from {sorted(SYNTHETIC_READOUTS)}.")
    settings = settings or SyntheticTypesSettings()
    folder = os.path.join(out, "synthetic_types")
    planned = []
    for n_types in settings.n_types:
        for readout in readouts:
            path = os.path.join(folder, f"{n_types}_{readout}.json")
            # No backup here: the results file is all there is to delete.
            planned.append(PlannedFit(f"{n_types} types, {readout}", path, path,
                                    synthetic_types_key(n_types, readout, settings)))
    check_stored_fits(planned, overwrite, "", log)
    os.makedirs(folder, exist_ok=True)
    rows, populations = [], {}
    for plan in planned:
        n_types, readout = plan.key["n_types"], plan.key["readout"]
        path = plan.results_path
        if os.path.exists(path):
            with open(path) as file:
                row = json.load(file)
            log(f"{n_types} types, {readout}: already fitted, read {path}")
            _note_version(row, path, log)
        else:
            if n_types not in populations:
                populations.clear()  # one population in memory at a time
                populations[n_types] = make_population(
                    "cnn", n_neurons=n_types * settings.neurons_per_type, n_types=n_types,
                    image_size=settings.image_size, n_train=settings.n_train, seed=settings.seed,
                )
            log(f"{n_types} types x {settings.neurons_per_type} neurons: fitting {readout}")
            _, info = fit_synthetic_readout(readout, populations[n_types], settings, verbose)
            row = {"n_types": n_types, "n_neurons": n_types * settings.neurons_per_type,
                   "readout": readout, **info, "key": plan.key, "keras_sysid": keras_sysid_version()}
            write_json(row, path, indent=2)
        log(f"  {n_types} types, {readout}: FEV {row['fev']:.3f} ({row['epochs']} epochs, {row['seconds']:.0f} s)")
        rows.append(row)
    write_table(rows, ("n_types", "n_neurons", "readout", "fev", "epochs", "seconds"), out, "synthetic_types")
    try:
        from keras_sysid import plots

        plots.plot_fev_by_types(rows, os.path.join(out, "synthetic_types.png"))
    except ImportError as error:
        log(f"figure skipped: {error}")
    return rows
