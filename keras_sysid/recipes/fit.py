"""Recording(s) + recipe -> a fitted, scored, saved run: what ``keras-sysid fit --data`` does.

:func:`fit_recording` is the one path from recordings to a trusted twin: it
builds the recipe's model (:mod:`keras_sysid.recipes.build`), fits it on the
train tier with early stopping on the validation tier, scores it once on the
repeated test images, and keeps everything in a locked run folder
(:class:`~keras_sysid.runs.Run`): ``model.keras``, ``saved_model/``
(TensorFlow backend), ``scores.npz``, figures and ``results.json``. The same
call resumes a killed run and reads a finished one back.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np

from keras_sysid import devices, evaluation, export, runs
from keras_sysid.data.recording import Recording, RecordingError
from keras_sysid.recipes.build import build_for_recording, build_for_recordings, load_pretrained, session_names
from keras_sysid.recipes.presets import FitSettings, Recipe
from keras_sysid.resume import TrainingBackup
from keras_sysid.training import fit_sessions, fit_with_schedule, model_digest, stop_reason, stopping_line

CORTEX_KEY = "cell_motor_coordinates"  # neuron metadata drawn against the learned positions (retinotopy)


def fit_model(spec: dict, recording: Recording, settings: FitSettings, name: str = "sysid_model", verbose: int = 2,
              backup_dir=None, key=None, callbacks=(), jit_compile=None):
    """Builds the model of ``spec`` and fits it on the train tier, stopping early on the validation tier.

    Args:
        spec: A model spec (:attr:`~keras_sysid.recipes.Recipe.model`).
        recording: A :class:`~keras_sysid.data.Recording` with train and validation tiers.
        settings: Fit settings (the spec's ``learning_rate`` over theirs).
        backup_dir: Folder of resumable backups (:func:`~keras_sysid.training.fit_with_schedule`).
        key: The backups' key (``fingerprint`` of :func:`~keras_sysid.training.fit_with_schedule`).
        callbacks: As :func:`~keras_sysid.training.fit_with_schedule`.
        jit_compile: As :func:`~keras_sysid.training.fit_with_schedule`.

    Returns:
        ``(model, info)``: ``info`` has ``epochs``, ``seconds`` (this call),
        ``best_val_correlation``, ``best_epoch``, ``stopped_early`` and
        ``stop_reason`` (:func:`~keras_sysid.training.stop_reason`).
    """
    start = time.perf_counter()
    model = build_for_recording(spec, recording, seed=settings.seed, name=name)
    history = fit_with_schedule(
        model,
        recording.epoch_stream("train", settings.batch_size, seed=settings.seed, inputs=model.input_names,
                               passes_per_epoch=settings.passes_per_epoch(len(recording.indices("train")))),
        recording.dataset("validation", 256, inputs=model.input_names),
        max_epochs=settings.max_epochs, learning_rate=spec.get("learning_rate", settings.learning_rate),
        patience=settings.patience, n_decays=settings.n_decays, verbose=verbose, callbacks=callbacks,
        monitor="val_correlation", backup_dir=backup_dir, fingerprint=key, jit_compile=jit_compile,
    )
    return model, _info(history, settings, start)


def fit_jointly(spec: dict, recordings: dict, settings: FitSettings, backup_dir=None, key=None, verbose: int = 2,
                callbacks=(), jit_compile=None, interleave: str = "proportional", name: str = "multisession_model"):
    """Builds (:func:`~keras_sysid.recipes.build.build_for_recordings`) and fits one shared-core model.

    Each session trains on its recording's train tier; early stopping watches
    the mean over sessions of the validation correlation
    (:func:`~keras_sysid.training.fit_sessions`).

    Args:
        recordings: ``{session name: Recording}``.

    Returns:
        ``(model, info)`` as :func:`fit_model`'s (``best_val_correlation``: the mean over sessions).
    """
    start = time.perf_counter()
    model = build_for_recordings(spec, recordings, seed=settings.seed, name=name)

    def tier(session, recording, name):
        return (recording.model_inputs(name, model.sessions[session].input_names),
                recording.responses[recording.indices(name)])

    history = fit_sessions(
        model, {session: tier(session, recording, "train") for session, recording in recordings.items()},
        {session: tier(session, recording, "validation") for session, recording in recordings.items()},
        max_epochs=settings.max_epochs, learning_rate=spec.get("learning_rate", settings.learning_rate),
        patience=settings.patience, n_decays=settings.n_decays, interleave=interleave,
        batch_size=settings.batch_size, seed=settings.seed, verbose=verbose, callbacks=callbacks,
        backup_dir=backup_dir, fingerprint=key, jit_compile=jit_compile)
    return model, _info(history, settings, start)


def _info(history, settings: FitSettings, start: float) -> dict:
    epochs = len(history.epoch)
    val_correlation = np.asarray(history.history["val_correlation"], dtype="float64")
    return {"epochs": epochs, "seconds": round(time.perf_counter() - start, 1),
            "best_val_correlation": float(np.nanmax(val_correlation)),
            "best_epoch": int(np.nanargmax(val_correlation)) + 1,
            "stopped_early": epochs < settings.max_epochs, "stop_reason": stop_reason(history, settings.max_epochs)}


def run_key(recordings: list, recipe: Recipe) -> dict:
    """Everything a recording run's result depends on, but ``max_epochs`` (more epochs continue a run)."""
    import keras_sysid

    settings = {k: v for k, v in dataclasses.asdict(recipe.settings).items() if k != "max_epochs"}
    fingerprints = {recording.name: recording.fingerprint() for recording in recordings}
    precision = devices.current_precision()
    key = {"command": "fit", "spec": recipe.model, "settings": settings,
            "data": fingerprints if len(recordings) > 1 else next(iter(fingerprints.values())),
            "backend": keras.backend.backend(), "precision": precision, "keras_sysid": keras_sysid.__version__}
    if recipe.model.get("pretrained") is not None:
        # The pretrained model by content: a zoo entry or file of the same name may change.
        key["pretrained_model"] = model_digest(load_pretrained(recipe.model))
    return key


def fit_recording(recordings, recipe: Recipe, out=None, verbose: int = 2, callbacks=(), jit_compile=None,
                  log=print) -> dict:
    """Fits a recipe to recordings, scores it on their test tiers and keeps the run in ``out``.

    One recording gets one :class:`~keras_sysid.models.SystemIdentificationModel`;
    several get one :class:`~keras_sysid.multisession.MultiSessionModel` (a
    shared core, a readout per recording, each session named after its
    recording), scored per session.

    Args:
        recordings: A :class:`~keras_sysid.data.Recording`, or a list of them.
        recipe: A :class:`~keras_sysid.recipes.Recipe` (e.g. ``RECIPES["mouse_v1_best"]``).
        out: The run folder (default ``runs/fit/<recordings>_<readout>_<key digest>``).
            It gets ``model.keras``, ``saved_model/`` (TensorFlow backend; one
            signature per session for several recordings), ``scores.npz``,
            ``results.json`` (last: it marks the run finished) and, with
            matplotlib, figures (``test_scores``, ``rf_positions``,
            ``retinotopy``; per session for several recordings).
        verbose: Keras verbosity.
        callbacks: Extra Keras callbacks.
        jit_compile: As :func:`~keras_sysid.training.fit_with_schedule`.
        log: Where progress lines go.

    Returns:
        What ``results.json`` holds: the test tier's scores
        (:meth:`~keras_sysid.evaluation.RepeatScores.summary`, one recording;
        ``{"sessions": {session: ...}}`` for several), epochs, seconds, the
        spec, settings, backend, precision, data fingerprints and the run key.

    Raises:
        RecordingError: a recording cannot be fitted or scored (named).
        RunLockedError: another process is fitting into ``out``.
        RunKeyError: ``out`` holds a run of another key.
        RunInterrupted: Ctrl-C; the same call resumes.
    """
    recordings = [recordings] if isinstance(recordings, Recording) else list(recordings)
    for recording in recordings:
        recording.check_fittable(where=recording.provenance.get("path"))
    names = session_names(recordings) if len(recordings) > 1 else None
    if names is not None and recipe.model.get("pretrained") is not None:
        raise RecordingError(f"{recipe.model['pretrained']}: a pretrained core takes new neurons one recording at a "
                             "time; give one recording.")
    key = run_key(recordings, recipe)
    run = runs.Run(out or runs.default_folder("fit", f"{'+'.join(r.name for r in recordings)}_"
                                              f"{recipe.model['readout']['type']}", key), key)
    with run:
        log(f"run folder: {run.folder} (model.keras, results.json; rerun the same command to resume)")
        finished = run.finished(recipe.settings.max_epochs)
        if finished is not None:
            log(f"finished already: read {run.path(runs.RESULTS)} (a finished run is read back, not refitted)")
            return finished
        if TrainingBackup(run.backup_dir, fingerprint=key).completed_epochs():
            log(f"going on from the backup in {run.backup_dir} (a finished run is read back, not refitted)")
        settings = recipe.settings
        with run.resumable():
            if names is None:
                model, info = fit_model(recipe.model, recordings[0], settings, recipe.model["readout"]["type"],
                                        verbose=verbose, backup_dir=run.backup_dir, key=key, callbacks=callbacks,
                                        jit_compile=jit_compile)
            else:
                model, info = fit_jointly(recipe.model, {names[r.name]: r for r in recordings}, settings,
                                          backup_dir=run.backup_dir, key=key, verbose=verbose, callbacks=callbacks,
                                          jit_compile=jit_compile)
        # The backup sums the training time of every run of this fit (resumed ones too).
        info["seconds"] = TrainingBackup(run.backup_dir).training_seconds() or info["seconds"]
        log(stopping_line(info))
        model = devices.float32_copy(model)  # trained in mixed precision: scored and saved in float32
        results = _score_and_write(run, model, recordings, names, recipe, info, log)
    return results


# The run's per-neuron scores and, under "neuron_ids", each output column's unit id; with several sessions
# every key is prefixed "<session>/".
SCORES = "scores.npz"


def stored_neuron_ids(arrays):
    """Each output column's unit id from a run's :data:`SCORES` arrays (a mapping of name to array).

    Returns:
        ``(N,)`` ids for a one-recording run, ``{session: (N_s,) ids}`` for
        several sessions, or ``None`` where the run stored none.
    """
    if "neuron_ids" in arrays:
        return arrays["neuron_ids"]
    sessions = {key.split("/")[0]: arrays[key] for key in arrays if key.endswith("/neuron_ids")}
    return sessions or None


def _score_and_write(run: runs.Run, model, recordings: list, names, recipe: Recipe, info: dict, log) -> dict:
    """Scores every session on its test tier and writes the run's files, ``results.json`` last."""
    import keras_sysid

    if names is None:
        sessions = {recordings[0].name: (model, recordings[0])}
    else:
        sessions = {names[r.name]: (model.sessions[names[r.name]], r) for r in recordings}
    precision = devices.current_precision()
    results = {"tier": "test", **info, "max_epochs": recipe.settings.max_epochs,
               "backend": keras.backend.backend(), "precision": precision, "spec": recipe.model,
               "settings": dataclasses.asdict(recipe.settings), "keras_sysid": keras_sysid.__version__}
    arrays, figures = {}, []
    for session, (session_model, recording) in sessions.items():
        scores = evaluation.evaluate_model(session_model, recording, "test", info_gain=True)
        try:
            rf_positions = session_model.rf_positions()
        except ValueError:  # a readout without positions (fully connected)
            rf_positions = None
        cortical = recording.neurons.get(CORTEX_KEY)
        summary = scores.summary()
        if rf_positions is not None and cortical is not None:
            summary["retinotopy"] = evaluation.retinotopy(rf_positions, cortical)
        figures.append((session, scores, rf_positions, cortical, recording.image_shape))
        # One recording: its keys at the top level; several: one entry per session.
        prefix = "" if len(sessions) == 1 else f"{session}/"
        arrays.update({f"{prefix}{field}": getattr(scores, field)
                       for field in ("corr_single", "corr_avg", "feve", "oracle")})
        if rf_positions is not None:
            arrays[f"{prefix}rf_positions"] = rf_positions
        # Output column -> unit id, which keras-sysid export puts into the artefact.
        unit_ids = np.asarray(recording.neurons.get("unit_ids", np.arange(recording.n_neurons)))
        if unit_ids.dtype != object:
            arrays[f"{prefix}neuron_ids"] = unit_ids
        entry = {"data": recording.name, **summary, "data_fingerprint": recording.fingerprint()}
        if len(sessions) == 1:
            results = {**entry, **results}
        else:
            results.setdefault("sessions", {})[session] = entry
    run.save_model(model)
    run.write_npz(SCORES, **arrays)
    written = ["model.keras", SCORES]
    if keras.backend.backend() == "tensorflow":
        described = {"neuron_ids": stored_neuron_ids(arrays),
                     "data_fingerprint": recordings[0].fingerprint() if names is None else None}
        run.write_folder("saved_model", lambda folder: export.export_saved_model(model, folder, **described))
        written.append("saved_model/")
    else:
        log(f"no SavedModel under {keras.backend.backend()}: keras-sysid export --backend tensorflow "
            f"--model {run.path('model.keras')} writes one")
    written += _figures(run, figures, log)
    results = run.write_results(results)
    log(f"wrote {run.folder}: {', '.join(written + [runs.RESULTS])}")
    return results


def _figures(run: runs.Run, figures: list, log) -> list[str]:
    """Each session's figures (matplotlib; skipped with a line where it is missing)."""
    try:
        from keras_sysid import plots

        written = []
        for session, scores, rf_positions, cortical, image_shape in figures:
            suffix = "" if len(figures) == 1 else f"_{session}"
            plots.plot_test_scores(scores.corr_single, scores.corr_avg, scores.oracle,
                                   run.path(f"test_scores{suffix}.png"), title=f"{session}: test tier")
            written.append(f"test_scores{suffix}.png")
            if rf_positions is not None:
                plots.plot_rf_centres(rf_positions, image_shape, run.path(f"rf_positions{suffix}.png"),
                                      title=f"{session}: each neuron's learned RF centre",
                                      label="RF centre (readout and core)")
                written.append(f"rf_positions{suffix}.png")
            if rf_positions is not None and cortical is not None:
                plots.plot_retinotopy(rf_positions, cortical, run.path(f"retinotopy{suffix}.png"),
                                      title=f"{session}: learned RF positions, coloured by cortical position")
                written.append(f"retinotopy{suffix}.png")
        return written
    except ImportError as error:
        log(f"figures skipped: {error}")
        return []
