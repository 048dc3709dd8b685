"""The paper's comparisons, end to end: ``tools/reproduce.py``'s library side.

- :func:`run_mouse_v1`: every rival of :mod:`keras_sysid.experiments.rivals` fitted to a
  ``static*-preproc0`` data set and scored on its test tier (Table 1), with
  the retinotopy of the learned RF positions.
- :func:`run_synthetic_types`: factorized, fixed-mask and fully connected
  readouts on the nonlinear ground truth with 4, 8 and 16 cell types (Fig. 5e).

Each run writes into ``out/<model>/`` and a finished model is not fitted
again, so an interrupted comparison resumes where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time

import keras
import numpy as np

from keras_sysid import evaluation, metrics, positions
from keras_sysid.data.static import load_static
from keras_sysid.data.synthetic import make_population
from keras_sysid.experiments import rivals
from keras_sysid.experiments.presets import (
    RIVALS,
    SYNTHETIC_READOUTS,
    FitSettings,
    SyntheticTypesSettings,
    paper_core,
)
from keras_sysid.models import build_model
from keras_sysid.training import fit_with_schedule

TABLE_COLUMNS = ("model", "corr_single", "corr_avg", "feve", "frac_oracle", "epochs", "seconds")


def retinotopy(rf_positions: np.ndarray, cortical_positions: np.ndarray) -> dict:
    """How well cortical position predicts learned RF position.

    Args:
        rf_positions: ``(N, 2)`` (row, column) in pixels.
        cortical_positions: ``(N, >=2)``; the first two columns (x, y on
            cortex) are used.

    Returns:
        ``r_row`` / ``r_column``: multiple correlation of each RF coordinate
        with the cortical (x, y) position (linear fit), and ``pearson``:
        ``{image axis: {cortical axis: r}}``.
    """
    rf = np.asarray(rf_positions, dtype="float64")
    cortex = np.asarray(cortical_positions, dtype="float64")[:, :2]
    design = np.column_stack([cortex, np.ones(len(cortex))])
    result = {"pearson": {}}
    for axis, label in enumerate(("row", "column")):
        fitted = design @ np.linalg.lstsq(design, rf[:, axis], rcond=None)[0]
        result[f"r_{label}"] = float(metrics.correlation(rf[:, axis:axis + 1], fitted[:, None])[0])
        result["pearson"][label] = {
            f"cortex_{name}": float(metrics.correlation(rf[:, axis:axis + 1], cortex[:, c:c + 1])[0])
            for c, name in enumerate("xy")
        }
    return result


def _write_table(rows: list[dict], columns, out: str, stem: str) -> None:
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
) -> list[dict]:
    """Fits and scores each rival on a ``static*-preproc0`` data set.

    Writes ``out/<model>/model.keras``, ``out/<model>/scores.npz`` (per-neuron
    scores and RF positions) and ``out/<model>/results.json``; then
    ``out/mouse_v1.{json,csv}`` and figures ``out/corr_factorized_vs_rivals.png``,
    ``out/retinotopy_<model>.png`` (with matplotlib). A model whose
    ``results.json`` exists is read back, not refitted.

    Returns:
        One row per model: the :meth:`~keras_sysid.evaluation.RepeatScores.summary`
        plus ``model``, ``epochs``, ``seconds`` and ``retinotopy``.
    """
    unknown = sorted(set(models) - set(RIVALS))
    if unknown:
        raise ValueError(f"Unknown models {unknown}; choose from {sorted(RIVALS)}.")
    settings = settings or FitSettings()
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    data = load_static(data_path)
    log(f"read {data.name}: {data.n_trials} trials, {data.n_neurons} neurons, images {data.image_shape} "
        f"in {time.perf_counter() - start:.1f} s")
    cortical = data.neurons.get("cell_motor_coordinates")
    rows, per_neuron = [], {}
    for index, name in enumerate(models):
        folder = os.path.join(out, name)
        results_path = os.path.join(folder, "results.json")
        if os.path.exists(results_path):
            with open(results_path) as file:
                row = json.load(file)
            log(f"[{index + 1}/{len(models)}] {name}: already fitted, read {results_path}")
        else:
            log(f"[{index + 1}/{len(models)}] fitting {name} (max {settings.max_epochs} epochs)")
            model, info = rivals.fit_rival(name, data, settings, verbose=verbose, backup_dir=os.path.join(folder, "backup"))
            scores = evaluation.evaluate_model(model, data, "test")
            rf = model.rf_positions()
            row = {"model": name, **scores.summary(), **info, "settings": dataclasses.asdict(settings)}
            if cortical is not None:
                row["retinotopy"] = retinotopy(rf, cortical)
            os.makedirs(folder, exist_ok=True)
            model.save(os.path.join(folder, "model.keras"))
            np.savez(
                os.path.join(folder, "scores.npz"),
                corr_single=scores.corr_single, corr_avg=scores.corr_avg, feve=scores.feve,
                oracle=scores.oracle, rf_positions=rf,
            )
            with open(results_path, "w") as file:
                json.dump(row, file, indent=2)
        with np.load(os.path.join(folder, "scores.npz")) as saved:
            per_neuron[name] = {key: saved[key] for key in saved.files}
        log(f"  {name}: " + ", ".join(f"{k} {row[k]:.3f}" for k in ("corr_single", "corr_avg", "feve", "frac_oracle"))
            + (f", retinotopy r_row {row['retinotopy']['r_row']:.2f} r_column {row['retinotopy']['r_column']:.2f}" if "retinotopy" in row else ""))
        rows.append(row)
    _write_table(rows, TABLE_COLUMNS + ("oracle", "n_neurons", "n_trials"), out, "mouse_v1")
    _mouse_figures(per_neuron, cortical, out, log)
    return rows


def _mouse_figures(per_neuron: dict, cortical, out: str, log) -> None:
    try:
        from keras_sysid.experiments import plots

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


def fit_synthetic_readout(readout: str, population, settings: SyntheticTypesSettings, verbose: int = 2):
    """Fits the paper's 3-layer core with one readout to a synthetic population.

    For ``fixed_mask`` (its preset's ``"placement": "envelope"``), each
    neuron's location is the peak of its spike-triggered envelope on the
    training images (:func:`~keras_sysid.positions.envelope_positions`).

    Returns:
        ``(model, info)`` with ``fev`` (mean over neurons, noise-free test
        rates), ``epochs`` and ``seconds``.
    """
    if readout not in SYNTHETIC_READOUTS:
        raise ValueError(f"Unknown readout {readout!r}; choose one of {sorted(SYNTHETIC_READOUTS)}.")
    start = time.perf_counter()
    keras.utils.set_random_seed(settings.seed)
    n_types = int(population.types.max()) + 1
    preset = SYNTHETIC_READOUTS[readout]
    model = build_model(
        n_neurons=population.n_neurons,
        image_shape=population.image_shape,
        core=paper_core(max(32, 2 * n_types)),
        readout=preset["readout"],
        mean_responses=population.train.responses.mean(axis=0),
        name=readout,
    )
    if preset.get("placement") == "envelope":
        model.place_neurons(positions.envelope_positions(population.train.images, population.train.responses))
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
) -> list[dict]:
    """Fig. 5e: FEV of each readout on the nonlinear ground truth with 4 / 8 / 16 types.

    Writes ``out/synthetic_types/<types>_<readout>.json`` per fit (finished
    fits are read back), ``out/synthetic_types.{json,csv}`` and
    ``out/synthetic_types.png``.

    Returns:
        One row per (types, readout): ``n_types``, ``n_neurons``, ``readout``,
        ``fev``, ``epochs``, ``seconds``.
    """
    settings = settings or SyntheticTypesSettings()
    folder = os.path.join(out, "synthetic_types")
    os.makedirs(folder, exist_ok=True)
    rows = []
    for n_types in settings.n_types:
        population = None
        for readout in readouts:
            path = os.path.join(folder, f"{n_types}_{readout}.json")
            if os.path.exists(path):
                with open(path) as file:
                    row = json.load(file)
                log(f"{n_types} types, {readout}: already fitted, read {path}")
            else:
                if population is None:
                    population = make_population(
                        "cnn", n_neurons=n_types * settings.neurons_per_type, n_types=n_types,
                        image_size=settings.image_size, n_train=settings.n_train, seed=settings.seed,
                    )
                log(f"{n_types} types x {settings.neurons_per_type} neurons: fitting {readout}")
                _, info = fit_synthetic_readout(readout, population, settings, verbose)
                row = {"n_types": n_types, "n_neurons": n_types * settings.neurons_per_type,
                       "readout": readout, **info}
                with open(path, "w") as file:
                    json.dump(row, file, indent=2)
            log(f"  {n_types} types, {readout}: FEV {row['fev']:.3f} ({row['epochs']} epochs, {row['seconds']:.0f} s)")
            rows.append(row)
    _write_table(rows, ("n_types", "n_neurons", "readout", "fev", "epochs", "seconds"), out, "synthetic_types")
    try:
        from keras_sysid.experiments import plots

        plots.plot_fev_by_types(rows, os.path.join(out, "synthetic_types.png"))
    except ImportError as error:
        log(f"figure skipped: {error}")
    return rows
