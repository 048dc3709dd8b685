"""The mouse V1 ablation towards the best model: ``tools/reproduce.py --experiment mouse_v1_sota``.

Variants (:data:`~keras_sysid.experiments.presets.SOTA_VARIANTS`), each
adding one part to the one before: today's Gaussian model; Lurz et al.'s core;
cortex-predicted positions; behaviour as core channels; a shifter; a
modulator. Then, chosen on the validation tier only: an ensemble of
``ensemble_size`` fits of the best variant (seeds ``0..ensemble_size-1``), and
the factorized readout with the best variant's settings and a shifter.

The protocol is enforced by the order of work: every fit is stopped early
and compared on the validation tier, and test scores are computed only
when every fit is done, once, for the final table. Each fit is stored in
``out/<name>/`` under its run key (data fingerprint, spec, settings, seed,
backend) and resumes from ``out/<name>/backup`` when interrupted, as in
:mod:`keras_sysid.experiments.comparison`.
"""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np

from keras_sysid import evaluation, metrics, runs, trial_variability, zoo
from keras_sysid.data import load as load_recording
from keras_sysid.ensemble import Ensemble
from keras_sysid.experiments import rivals
from keras_sysid.experiments.comparison import (
    PlannedFit,
    check_stored_fits,
    keras_sysid_version,
    write_table,
)
from keras_sysid.experiments.presets import RIVALS, SOTA_VARIANTS, FitSettings
from keras_sysid.recipes.build import build_for_recording as build_variant, needs  # noqa: F401  (tests build variants)
from keras_sysid.recipes.fit import fit_model
from keras_sysid.atomic_files import write_json
from keras_sysid.resume import TrainingBackup

TABLE_COLUMNS = ("model", "corr_single", "corr_avg", "feve", "frac_oracle", "trial_corr", "parameters", "minutes",
                 "val_correlation")
CORTEX_KEY = "cell_motor_coordinates"  # meta/neurons/ key of cortical coordinates


def factorized_variant(spec: dict) -> dict:
    """``spec`` (a variant) with the factorized readout of the rivals and a shifter."""
    factorized = RIVALS["factorized"]
    changed = {key: value for key, value in spec.items() if key != "readout"}
    changed.update(readout=factorized["readout"], learning_rate=factorized["learning_rate"], shifter=spec.get("shifter", {}))
    return changed


def variant_key(name: str, spec: dict, data, settings: FitSettings) -> dict:
    """Everything that determines a variant's fit (the rivals' key for ``{"rival": ...}``)."""
    if "rival" in spec:
        return rivals.fit_key(spec["rival"], data, settings)
    return {"experiment": "mouse_v1_sota", "variant": name, "spec": spec, "settings": dataclasses.asdict(settings),
            "data": data.fingerprint(), "backend": keras.backend.backend()}


def fit_variant(spec: dict, data, settings: FitSettings, name: str, verbose: int = 2, backup_dir=None, key=None,
                callbacks=(), jit_compile=None):
    """Fits a variant: a rival by the rivals' code, any other by :func:`keras_sysid.recipes.fit_model`.

    Returns:
        ``(model, info)``: ``info`` has ``epochs``, ``seconds`` (this call)
        and ``best_val_correlation`` (the best epoch's).
    """
    if "rival" in spec:
        return rivals.fit_rival(spec["rival"], data, settings, verbose=verbose, callbacks=callbacks,
                                backup_dir=backup_dir, jit_compile=jit_compile)
    return fit_model(spec, data, settings, name, verbose=verbose, backup_dir=backup_dir, key=key,
                     callbacks=callbacks, jit_compile=jit_compile)


def _plan(name, spec, data, settings, out) -> PlannedFit:
    folder = os.path.join(out, name)
    return PlannedFit(name, folder, os.path.join(folder, "results.json"), variant_key(name, spec, data, settings),
                    backup_dir=os.path.join(folder, "backup"))


def _fit_or_read(plan: PlannedFit, spec, data, settings, log, verbose) -> dict:
    """The variant's stored fit record (fitting it first if needed, in its locked run folder): key, info, parameters."""
    run = runs.Run(plan.folder, plan.key)
    with run:
        row = run.finished()
        if row is not None:
            log(f"  {plan.label}: already fitted, read {plan.results_path}")
            return row
        log(f"  fitting {plan.label} (max {settings.max_epochs} epochs, inputs "
            f"{list(needs(spec)) if 'rival' not in spec else ['images']})")
        with run.resumable():
            model, info = fit_variant(spec, data, settings, plan.label, verbose=verbose, backup_dir=run.backup_dir,
                                      key=plan.key)
        # The backup sums the training time of every run of this fit (resumed ones too).
        total = TrainingBackup(run.backup_dir).training_seconds()
        if total > 0:
            info["seconds"] = total
        run.save_model(model)
        return run.write_results({"model": plan.label, **info, "data_name": data.name,
                                  "keras_sysid": keras_sysid_version()})


def _val_correlation(row: dict) -> float:
    return float(row["best_val_correlation"])


def run_mouse_v1_sota(
    data_path: str,
    out: str,
    variants=tuple(SOTA_VARIANTS),
    settings: FitSettings | None = None,
    ensemble_size: int = 5,
    verbose: int = 2,
    log=print,
    overwrite: bool = False,
) -> list[dict]:
    """Fits the ablation, chooses on the validation tier, then scores every row on test once.

    Writes ``out/<name>/{model.keras,results.json}`` per fit, then
    ``out/mouse_v1_sota.{json,csv}`` with test scores, parameters, minutes
    and the best validation correlation per row, and
    ``out/choices.json`` (what was chosen on validation, and why).

    Args:
        data_path: The ``static*-preproc0`` zip or folder.
        out: Output folder.
        variants: Keys of :data:`SOTA_VARIANTS`, in ablation order.
        settings: Fit settings (:class:`FitSettings`; the seed is the first
            ensemble member's, members ``k`` use ``seed + k``).
        ensemble_size: Members of the ensemble of the best variant (0: none).
        verbose: Keras verbosity.
        log: Where progress lines go.
        overwrite: Delete and refit stored fits of another key.

    Returns:
        The table's rows.
    """
    unknown = sorted(set(variants) - set(SOTA_VARIANTS))
    if unknown:
        raise ValueError(f"Unknown variants {unknown}; choose from {list(SOTA_VARIANTS)}.")
    settings = settings or FitSettings()
    data = load_recording(data_path)
    data.check_fittable(where=data_path)
    for spec in (SOTA_VARIANTS[name] for name in variants):
        if "rival" not in spec:
            data.model_inputs("train", needs(spec))  # a missing variable fails now, not after hours of fits
    log(f"read {data.name}: {data.n_trials} trials, {data.n_neurons} neurons (sha256 {data.fingerprint()})")
    planned = {name: _plan(name, SOTA_VARIANTS[name], data, settings, out) for name in variants}
    check_stored_fits(list(planned.values()), overwrite, f"{os.path.abspath(data_path)} ({data.name})", log)
    os.makedirs(out, exist_ok=True)

    # 1. The ablation, on the validation tier.
    records = {}
    for index, name in enumerate(variants):
        log(f"[{index + 1}/{len(variants)}] {name}")
        records[name] = _fit_or_read(planned[name], SOTA_VARIANTS[name], data, settings, log, verbose)
        log(f"  {name}: best validation correlation {_val_correlation(records[name]):.4f}")

    # 2. Choices, on validation only.
    best = max(variants, key=lambda name: _val_correlation(records[name]))
    best_spec = SOTA_VARIANTS[best]
    choices = {"best_variant": best, "by": "best validation single-trial correlation",
               "validation": {name: _val_correlation(records[name]) for name in variants}}
    write_json(choices, os.path.join(out, "choices.json"), indent=2)
    log(f"best variant on validation: {best}")
    extra = {}
    if "rival" not in best_spec:
        extra["factorized_shifter"] = factorized_variant(best_spec)
    members = [best] + [f"{best}_seed{settings.seed + k}" for k in range(1, ensemble_size)] if ensemble_size > 1 else []
    member_settings = {
        member: dataclasses.replace(settings, seed=settings.seed + k) for k, member in enumerate(members)
    }
    later = {**{m: _plan(m, best_spec, data, member_settings[m], out) for m in members[1:]},
             **{name: _plan(name, spec, data, settings, out) for name, spec in extra.items()}}
    check_stored_fits(list(later.values()), overwrite, f"{os.path.abspath(data_path)} ({data.name})", log)
    for name, plan in later.items():
        spec = extra.get(name, best_spec)
        log(f"[extra] {name}")
        records[name] = _fit_or_read(plan, spec, data, member_settings.get(name, settings), log, verbose)
        log(f"  {name}: best validation correlation {_val_correlation(records[name]):.4f}")

    # 3. Test scores, once, now that every choice is made.
    rows = []
    table = list(variants) + (["ensemble"] if members else []) + list(extra)
    for name in table:
        if name == "ensemble":
            model = Ensemble([_load(out, member) for member in members], name=f"{best}_ensemble")
            parameters = model.count_params()
            seconds = sum(records[m]["seconds"] for m in members)
            val = _validation_correlation(model, data)
        else:
            model = _load(out, name)
            parameters, seconds, val = model.count_params(), records[name]["seconds"], _val_correlation(records[name])
        responses, predictions, groups = evaluation.predict_tier(model, data, "test")
        scores = evaluation.score_repeats(responses, predictions, groups).summary()
        trial_corr = float(np.mean(trial_variability.model_trial_correlation(responses, predictions, groups)))
        row = {"model": name if name != "ensemble" else f"ensemble of {len(members)} x {best}", **scores,
               "trial_corr": trial_corr, "parameters": int(parameters), "minutes": round(seconds / 60.0, 1),
               "val_correlation": val}
        log(f"  test {row['model']}: " + ", ".join(f"{k} {row[k]:.3f}" for k in ("corr_single", "corr_avg", "feve", "frac_oracle", "trial_corr")))
        rows.append(row)
    write_table(rows, TABLE_COLUMNS + ("oracle", "n_neurons", "n_trials"), out, "mouse_v1_sota")
    state = state_variability(data, "test")
    log("  test trial-to-trial variability: " + ", ".join(f"{k} {v:.3f}" for k, v in state.items()))
    write_json(state, os.path.join(out, "trial_variability.json"), indent=2)
    return rows


def state_variability(data, tier: str = "test") -> dict:
    """What the animal's state could explain of a tier's trial-to-trial variability, without a model.

    Returns:
        Means over neurons: ``trial_variance_fraction`` (share of single-trial
        variance between repeats of one image) and, where the data has them,
        ``linear_behavior`` / ``linear_pupil`` / ``linear_state`` (the
        cross-validated share of that variance a linear function of the
        behaviour, the pupil centre, or both explains;
        :func:`keras_sysid.trial_variability.linear_state_variance`).
    """
    selected = data.indices(tier)
    groups = data.repeat_positions(tier)
    responses = data.responses[selected]
    result = {"trial_variance_fraction": float(np.mean(trial_variability.trial_variance_fraction(responses, groups)))}
    variables = {name: getattr(data, name)[selected] for name in ("behavior", "pupil_center")
                 if getattr(data, name) is not None}
    candidates = {"linear_behavior": ["behavior"], "linear_pupil": ["pupil_center"],
                  "linear_state": ["behavior", "pupil_center"]}
    folds = min(5, sum(len(group) > 1 for group in groups))
    for label, names in candidates.items():
        if folds >= 2 and all(name in variables for name in names):
            state = np.concatenate([variables[name] for name in names], axis=1)
            result[label] = float(np.mean(trial_variability.linear_state_variance(responses, state, groups, folds)))
    return result


def _validation_correlation(model, data) -> float:
    """Mean over neurons of the single-trial correlation on the validation tier (as fits report it)."""
    inputs = data.model_inputs("validation", model.input_names)
    prediction = model.predict(inputs, batch_size=256, verbose=0)
    return float(np.mean(metrics.correlation(data.responses[data.indices("validation")], prediction)))


def _load(out: str, name: str) -> keras.Model:
    return zoo.load_any(os.path.join(out, name, "model.keras"))
