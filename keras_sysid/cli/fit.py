r"""Fit a model to a recording, or to the built-in synthetic ground truth, and score it.

With ``--data`` (a ``static*-preproc0`` zip or folder, or an NWB file), the
model (``--core`` and ``--readout``, with the mouse V1 comparisons' settings)
is fitted on the recording's train tier, stopped early on its validation
tier's correlation and scored on its repeated test images. The run folder
gets ``model.keras``, ``saved_model/`` (for TensorFlow Serving; TensorFlow
backend only), ``scores.npz`` (per-neuron scores and RF positions),
``results.json`` (test scores, epochs, seconds, settings) and, with
matplotlib, ``test_scores.png`` (per-neuron scores, against the oracle),
``rf_positions.png`` (the learned RF centres) and, with the neurons'
cortical coordinates, ``retinotopy.png``. The
last line printed is ``results.json`` as one JSON object.

Without ``--data``, a population is simulated from the synthetic ground truth
and the model scored against it; the last line printed is one JSON object with
``fev``, ``rf_error_px``, ``frac_rf_within_1px``, ``epochs``, ``seconds`` and
more.

Every run keeps its files in a folder, printed at the start: ``--out``, or
runs/fit/<recording>_<readout>_<hash> (without ``--data``:
runs/train/<truth>_<readout>_<hash>), the hash of every setting, the data and
the keras_sysid version. The run is resumable: after a crash or kill -9, rerun
the same command and it goes on from the last completed epoch (backups in
OUT/backup); a finished run is read back, not refitted.

Examples:

  # A recording: the Gaussian readout on the paper's core, with TensorBoard logs.
  keras-sysid fit --data ../shared/data/mouse_v1_lurz2021/static20457-5-9-preproc0.zip \
      --readout gaussian --out runs/fit/gaussian --logdir runs/fit/gaussian/logs

  # Lurz et al.'s core, readout positions predicted from cortical coordinates.
  keras-sysid fit --data static20457-5-9-preproc0.zip --core lurz --readout cortex_gaussian

  # The best mouse V1 recipe (the ablation's 'modulator' variant): behaviour and eye position as inputs.
  keras-sysid fit --data static20457-5-9-preproc0.zip --core lurz --readout cortex_gaussian \
      --state behavior_channels --state shifter --state modulator

  # An NWB recording (its responses averaged per presentation: keras_sysid.data.load_nwb).
  keras-sysid fit --data session.nwb --readout gaussian --max_epochs 20

  # The paper's Fig. 4: 1000 DoG cells of 2 types, one-layer core.
  keras-sysid fit

  # Nonlinear ground truth, factorized model with the paper's 3-layer core.
  keras-sysid fit --ground_truth cnn --n_types 4

  # A linear-nonlinear (LN) model of the same data, for comparison.
  keras-sysid fit --ground_truth cnn --n_types 4 --core identity \
      --readout fully_connected

  # The same fit under JAX (any installed Keras backend; README, Benchmark).
  keras-sysid fit --backend jax

  # Synthetic truth only: data-parallel over all local GPUs (or, without GPUs, 2 logical CPUs).
  keras-sysid fit --strategy mirrored --logical_cpus 2

  # Two workers (run one command per machine, index 0 and 1); worker 0 writes --out.
  TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
              "task": {"type": "worker", "index": 0}}' \
      keras-sysid fit --strategy multiworker --out runs/dog_2workers
"""

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time

import keras
import numpy as np
from absl import app, flags

import keras_sysid
from keras_sysid import devices, distribute, evaluation, export, readouts
from keras_sysid.cli import _backend
from keras_sysid.cli._recordings import load_recording, nwb_options
from keras_sysid.data import RecordingError
from keras_sysid.experiments import mouse_v1_sota
from keras_sysid.experiments import multisession as multisession_experiments
from keras_sysid.experiments.comparison import check_scorable, retinotopy
from keras_sysid.experiments.presets import (
    RECORDING_CORES,
    SYNTHETIC_CORES,
    FitSettings,
    SyntheticRunConfig,
    recording_spec,
)
from keras_sysid.experiments.synthetic import run_synthetic
from keras_sysid.multisession import session_name_for
from keras_sysid.atomic_files import write_json
from keras_sysid.resume import BackupError, TrainingBackup

_DATA = flags.DEFINE_multi_string(
    "data", None,
    "A recording to fit: a static*-preproc0 zip or folder, or an .nwb file. Left out: the synthetic ground truth.",
)
_GROUND_TRUTH = flags.DEFINE_enum("ground_truth", "dog", ["dog", "cnn"], "Synthetic ground truth.")
_N_NEURONS = flags.DEFINE_integer("n_neurons", 1000, "Number of simulated neurons.")
_N_TYPES = flags.DEFINE_integer("n_types", 2, "Number of cell types.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 48, "Images are image_size x image_size pixels.")
_N_TRAIN = flags.DEFINE_integer("n_train", 8192, "Training images.")
_JITTER = flags.DEFINE_float("jitter", 0.05, "DoG: relative within-type size jitter.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the simulation and of training.")
_CORE = flags.DEFINE_enum(
    "core", "auto", ["auto", *dict.fromkeys([*SYNTHETIC_CORES, *RECORDING_CORES])],
    f"Core preset. Synthetic truth: {', '.join(SYNTHETIC_CORES)}; auto: linear for dog, paper for cnn. "
    f"--data: {', '.join(RECORDING_CORES)} (keras_sysid.experiments.presets.RECORDING_CORES); auto: paper.",
)
_READOUT = flags.DEFINE_enum(
    "readout", "factorized", list(readouts.registry()),
    "Any registered readout (settings from keras_sysid.experiments.presets: SYNTHETIC_READOUTS, with --data "
    "recording_spec; else its defaults).",
)
_EPOCHS = flags.DEFINE_integer(
    "epochs", None,
    f"Maximum epochs (early stopping usually ends sooner; default {SyntheticRunConfig.epochs}, "
    f"with --data {FitSettings.max_epochs}).",
)
flags.DEFINE_alias("max_epochs", "epochs")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Training batch size.")
_LEARNING_RATE = flags.DEFINE_float(
    "learning_rate", None,
    f"Initial learning rate (default {SyntheticRunConfig.learning_rate}; with --data, the readout preset's, "
    f"else {FitSettings.learning_rate}).",
)
_PATIENCE = flags.DEFINE_integer(
    "patience", None,
    f"Epochs without improvement before each LR step (default {SyntheticRunConfig.patience}, "
    f"with --data {FitSettings.patience}).",
)
_OUT = flags.DEFINE_string(
    "out", None,
    "Folder to write the model, results.json and resumable backups into (default: runs/fit/<recording>_<readout>_"
    "<hash>, or without --data runs/train/<ground_truth>_<readout>_<hash>, the hash of every setting, the data and "
    "the keras_sysid version; printed at the start).",
)
_BACKUP_DIR = flags.DEFINE_string(
    "backup_dir", None, "Folder of per-epoch backups for resuming (default: OUT/backup)."
)
_LOGDIR = flags.DEFINE_string("logdir", None, "Also write TensorBoard logs into this folder.")
_STATE = flags.DEFINE_multi_enum(
    "state", [], ["behavior_channels", "shifter", "modulator"],
    "--data: the animal's state as inputs (repeat the flag): behaviour as core channels, a shifter from the eye "
    "position, a gain modulator from behaviour (the mouse V1 ablation's parts; the recording must have them).",
)
_STRATEGY = flags.DEFINE_enum(
    "strategy", "default", list(distribute.STRATEGIES), "tf.distribute strategy (synthetic truth only)."
)
_JIT_COMPILE = flags.DEFINE_enum(
    "jit_compile", "preferred", ["preferred", "true", "false"],
    "XLA compilation of the training step (preferred: the fastest measured for this device kind).",
)
_MIXED_PRECISION = flags.DEFINE_enum(
    "mixed_precision", "preferred", ["preferred", "true", "false"],
    "Train in bfloat16 (float16 on GPUs) with float32 weights (preferred: on where measured faster, i.e. CPUs with "
    "native bfloat16). The fitted model is scored and saved in float32.",
)
_LOGICAL_CPUS = flags.DEFINE_integer(
    "logical_cpus", None,
    "Split the CPU into this many logical devices (to use --strategy mirrored without GPUs; synthetic truth only).",
)

# Flags that describe the simulation or its distribution, which a recording's fit does not take.
_SYNTHETIC_ONLY = ("ground_truth", "n_neurons", "n_types", "image_size", "n_train", "jitter", "strategy",
                   "logical_cpus")


def main(argv):
    del argv
    backend = _backend.check()
    try:
        if _DATA.value:
            _fit_data(backend)
        else:
            _fit_synthetic(backend)
    except (RecordingError, BackupError) as error:
        sys.exit(f"error: {error}")


def _fit_synthetic(backend: str) -> None:
    """The built-in synthetic ground truth (the paper's Fig. 4 by default)."""
    if _STATE.value:
        raise app.UsageError("--state: for a recording (--data); the synthetic truth has no behaviour.")
    if _CORE.value not in ("auto", *SYNTHETIC_CORES):
        raise app.UsageError(f"--core {_CORE.value} is for --data; the synthetic truth takes auto, "
                             f"{', '.join(SYNTHETIC_CORES)}.")
    config = SyntheticRunConfig(
        ground_truth=_GROUND_TRUTH.value,
        n_neurons=_N_NEURONS.value,
        n_types=_N_TYPES.value,
        image_size=_IMAGE_SIZE.value,
        n_train=_N_TRAIN.value,
        jitter=_JITTER.value,
        seed=_SEED.value,
        core=_CORE.value,
        readout=_READOUT.value,
        epochs=_given(_EPOCHS, SyntheticRunConfig.epochs),
        batch_size=_BATCH_SIZE.value,
        learning_rate=_given(_LEARNING_RATE, SyntheticRunConfig.learning_rate),
        patience=_given(_PATIENCE, SyntheticRunConfig.patience),
    )
    if backend != "tensorflow" and (_STRATEGY.value != "default" or _LOGICAL_CPUS.value):
        raise app.UsageError(
            f"--strategy and --logical_cpus are tf.distribute's: use --backend tensorflow, not {backend}."
        )
    if _LOGICAL_CPUS.value:
        distribute.use_logical_cpus(_LOGICAL_CPUS.value)
    # The strategy comes first: a multi-worker one must be made before
    # anything (such as asking for the device kind) starts TensorFlow's runtime.
    strategy = distribute.make_strategy(_STRATEGY.value) if backend == "tensorflow" else None
    mixed_precision = _set_precision()
    settings = {**dataclasses.asdict(config), "backend": backend, "mixed_precision": mixed_precision,
                "strategy": _STRATEGY.value}
    out = _OUT.value or _run_folder("train", f"{config.ground_truth}_{config.readout}", settings)
    backup_dir = _BACKUP_DIR.value or os.path.join(out, "backup")
    if distribute.is_chief():
        _announce(out, backup_dir)
    if backup_dir and not distribute.is_chief():
        # Every worker must train (and back up) in step, but into its own folder.
        backup_dir = os.path.join(backup_dir, f"worker{distribute.task_index()}")
    model, results = run_synthetic(
        config, verbose=_verbosity(), callbacks=_callbacks(), backup_dir=backup_dir, strategy=strategy,
        jit_compile=_jit_compile(),
    )
    results["backend"] = backend
    results["strategy"] = _STRATEGY.value
    results["replicas"] = int(strategy.num_replicas_in_sync) if strategy is not None else 1
    results["precision"] = "mixed" if mixed_precision else "float32"
    if distribute.is_chief():
        os.makedirs(out, exist_ok=True)
        model.save(os.path.join(out, "model.keras"))
        with open(os.path.join(out, "results.json"), "w") as file:
            json.dump(results, file, indent=2)
    print(json.dumps(results))


def _fit_data(backend: str) -> None:
    """The recordings of ``--data``, through :func:`fit_recordings`."""
    given = [f"--{name}" for name in _SYNTHETIC_ONLY if flags.FLAGS[name].present]
    if given:
        raise app.UsageError(f"{', '.join(given)}: for the synthetic truth, not with --data.")
    core = "paper" if _CORE.value == "auto" else _CORE.value
    if core not in RECORDING_CORES:
        raise app.UsageError(
            f"--core {core} is for the synthetic truth; with --data: auto, {', '.join(RECORDING_CORES)}."
        )
    spec = recording_spec(core, _READOUT.value, state=_STATE.value)
    if _LEARNING_RATE.value is not None:
        spec["learning_rate"] = _LEARNING_RATE.value  # the preset's rate otherwise
    settings = FitSettings(
        max_epochs=_given(_EPOCHS, FitSettings.max_epochs), patience=_given(_PATIENCE, FitSettings.patience),
        batch_size=_BATCH_SIZE.value, seed=_SEED.value,
    )
    datasets = {}
    for path in _DATA.value:
        started = time.perf_counter()
        print(f"reading {path} ...", flush=True)
        data = load_recording(path, nwb_options=nwb_options())
        print(f"  {data.name}: {data.n_trials} trials, {data.n_neurons} neurons, images {data.image_shape} "
              f"({time.perf_counter() - started:.1f} s)", flush=True)
        if data.name in datasets:
            raise app.UsageError(f"--data: two recordings are named {data.name}.")
        datasets[data.name] = data
    mixed_precision = _set_precision()
    run = {"spec": spec, "settings": dataclasses.asdict(settings), "backend": backend,
           "mixed_precision": mixed_precision, "data": {name: data.fingerprint() for name, data in datasets.items()}}
    out = _OUT.value or _run_folder("fit", f"{'+'.join(datasets)}_{_READOUT.value}", run)
    backup_dir = _BACKUP_DIR.value or os.path.join(out, "backup")
    _announce(out, backup_dir)
    results = fit_recordings(datasets, settings, out, spec, backup_dir=backup_dir, verbose=_verbosity(),
                             callbacks=_callbacks(), jit_compile=_jit_compile())
    print(json.dumps(results))


def fit_recordings(datasets: dict, settings: FitSettings, out: str, spec: dict, backup_dir: str | None = None,
                   verbose: int = 2, callbacks=(), jit_compile=None) -> dict:
    """Fits a model to recordings, scores it on their test tiers and writes the run into ``out``.

    Every fit of recordings goes through here: with ``--data``, ``keras-sysid
    fit`` only reads the flags and the data. One recording gets one
    :class:`~keras_sysid.models.SystemIdentificationModel`; several get one
    :class:`~keras_sysid.multisession.MultiSessionModel` (a shared core, a
    readout per recording, each session named after its recording), fitted
    with :func:`~keras_sysid.training.fit_sessions` and scored per session.

    Args:
        datasets: ``{name: Recording}``, each with train, validation and
            repeated test trials.
        settings: Optimisation settings.
        out: Run folder: gets ``model.keras``, ``saved_model/`` (TensorFlow
            backend; one signature per session for several recordings),
            ``scores.npz``, ``results.json`` (last: it marks the run
            finished) and figures (``test_scores``, ``rf_positions``,
            ``retinotopy``; per session for several recordings).
        spec: The model, :func:`~keras_sysid.experiments.presets.recording_spec`
            (its ``learning_rate``, if any, over ``settings``').
        backup_dir: Per-epoch backups that make the fit resumable (default ``out/backup``).
        verbose: Keras verbosity.
        callbacks: Extra Keras callbacks.
        jit_compile: As :func:`~keras_sysid.training.fit_with_schedule`.

    Returns:
        What ``results.json`` holds: the test tier's
        :meth:`~keras_sysid.evaluation.RepeatScores.summary` (one recording)
        or ``{"sessions": {session: summary and its data's name}}`` (several),
        epochs, seconds, the spec, settings, backend, precision and the data's
        fingerprints.

    Raises:
        RecordingError: a recording lacks trials the fit or its scores need.
        BackupError: ``backup_dir`` holds the backup of another run.
    """
    for name, data in datasets.items():
        check_scorable(data, name)
    backup_dir = backup_dir or os.path.join(out, "backup")
    precision = "mixed" if keras.mixed_precision.global_policy().name.startswith("mixed") else "float32"
    # Everything the fit depends on: a backup of another key is refused, not resumed.
    fingerprints = {name: data.fingerprint() for name, data in datasets.items()}
    key = {"command": "fit", "spec": spec, "settings": dataclasses.asdict(settings),
           "data": fingerprints if len(datasets) > 1 else next(iter(fingerprints.values())),
           "backend": keras.backend.backend(), "precision": precision}
    if len(datasets) == 1:
        (name, data), = datasets.items()
        model, info = mouse_v1_sota.fit_variant(
            spec, data, settings, spec["readout"]["type"], verbose=verbose, backup_dir=backup_dir, key=key,
            callbacks=callbacks, jit_compile=jit_compile,
        )
    else:
        names = _session_names(datasets)
        model, info = multisession_experiments.fit_jointly(
            spec, {names[name]: data for name, data in datasets.items()}, settings, backup_dir=backup_dir, key=key,
            verbose=verbose, callbacks=callbacks, jit_compile=jit_compile,
        )
    # The backup sums the training time of every run of this fit (resumed ones too).
    info["seconds"] = TrainingBackup(backup_dir).training_seconds() or info["seconds"]
    model = devices.float32_copy(model)  # trained in mixed precision: scored and saved in float32
    if len(datasets) == 1:
        sessions = {name: (model, data)}
    else:
        sessions = {session: (model.sessions[session], datasets[name]) for name, session in names.items()}
    scored = {}
    for session, (session_model, data) in sessions.items():
        scores = evaluation.evaluate_model(session_model, data, "test")
        try:
            rf_positions = session_model.rf_positions()
        except ValueError:  # a readout without positions (fully connected)
            rf_positions = None
        scored[session] = (scores, rf_positions, data.neurons.get("cell_motor_coordinates"), data)
    results = {"tier": "test", **info, "backend": keras.backend.backend(), "precision": precision, "spec": spec,
               "settings": dataclasses.asdict(settings), "keras_sysid": keras_sysid.__version__}
    arrays, figures = {}, []
    for session, (scores, rf_positions, cortical, data) in scored.items():
        summary = scores.summary()
        if rf_positions is not None and cortical is not None:
            summary["retinotopy"] = retinotopy(rf_positions, cortical)
        figures.append((session, scores, rf_positions, cortical, data.image_shape))
        # One recording: its keys at the top level, as before; several: one entry per session.
        prefix = "" if len(scored) == 1 else f"{session}/"
        arrays.update({f"{prefix}{field}": getattr(scores, field) for field in ("corr_single", "corr_avg", "feve", "oracle")})
        if rf_positions is not None:
            arrays[f"{prefix}rf_positions"] = rf_positions
        if len(scored) == 1:
            results = {"data": data.name, **summary, **results, "data_fingerprint": data.fingerprint()}
        else:
            results.setdefault("sessions", {})[session] = {"data": data.name, **summary,
                                                           "data_fingerprint": data.fingerprint()}
    os.makedirs(out, exist_ok=True)
    model.save(os.path.join(out, "model.keras"))
    np.savez(os.path.join(out, "scores.npz"), **arrays)
    written = ["model.keras", "scores.npz"]
    if keras.backend.backend() == "tensorflow":
        serving = os.path.join(out, "saved_model")
        if os.path.exists(serving):  # a rerun's: written again from the same model
            shutil.rmtree(serving)
        export.export_saved_model(model, serving)
        written.append("saved_model/")
    else:
        print(f"no SavedModel under {keras.backend.backend()}: keras-sysid export --backend tensorflow "
              f"--model {os.path.join(out, 'model.keras')} writes one", flush=True)
    try:
        from keras_sysid.experiments import plots

        for session, scores, rf_positions, cortical, image_shape in figures:
            suffix = "" if len(figures) == 1 else f"_{session}"
            plots.plot_test_scores(scores.corr_single, scores.corr_avg, scores.oracle,
                                   os.path.join(out, f"test_scores{suffix}.png"), title=f"{session}: test tier")
            written.append(f"test_scores{suffix}.png")
            if rf_positions is not None:
                plots.plot_rf_centres(rf_positions, image_shape, os.path.join(out, f"rf_positions{suffix}.png"),
                                      title=f"{session}: each neuron's learned RF centre",
                                      label="RF centre (readout and core)")
                written.append(f"rf_positions{suffix}.png")
            if rf_positions is not None and cortical is not None:
                plots.plot_retinotopy(rf_positions, cortical, os.path.join(out, f"retinotopy{suffix}.png"),
                                      title=f"{session}: learned RF positions, coloured by cortical position")
                written.append(f"retinotopy{suffix}.png")
    except ImportError as error:
        print(f"figures skipped: {error}", flush=True)
    write_json(results, os.path.join(out, "results.json"), indent=2)
    print(f"wrote {out}: {', '.join(written + ['results.json'])}", flush=True)
    return results


def _session_names(datasets: dict) -> dict:
    """``{recording name: session name}``: valid names (multisession.session_name_for), distinct."""
    names = {}
    for name in datasets:
        session = session_name_for(name)
        if session in names.values():
            raise app.UsageError(f"--data: recordings {sorted(datasets)} give the same session name {session!r}.")
        names[name] = session
    return names


def _given(flag, default):
    """The flag's value, or ``default`` where it was left out (its default depends on the kind of fit)."""
    return default if flag.value is None else flag.value


def _set_precision() -> bool:
    """Sets Keras' global policy from ``--mixed_precision``; whether it is mixed."""
    if _MIXED_PRECISION.value == "preferred":
        mixed_precision = devices.preferred_mixed_precision()
    else:
        mixed_precision = _MIXED_PRECISION.value == "true"
    if mixed_precision:
        keras.mixed_precision.set_global_policy(devices.mixed_policy_name())
    return bool(mixed_precision)


def _jit_compile():
    return {"preferred": None, "true": True, "false": False}[_JIT_COMPILE.value]


def _verbosity() -> int:
    """Keras' progress bar on a terminal; one line per epoch into a log file or pipe."""
    return 1 if sys.stdout.isatty() else 2


def _callbacks() -> list:
    return [keras.callbacks.TensorBoard(_LOGDIR.value)] if _LOGDIR.value else []


def _announce(out: str, backup_dir: str) -> None:
    print(f"run folder: {out} (model.keras, results.json; rerun the same command to resume)", flush=True)
    if os.path.isdir(backup_dir) and os.listdir(backup_dir):
        print(f"going on from the backup in {backup_dir} (a finished run is read back, not refitted)", flush=True)


def _run_folder(kind: str, label: str, settings: dict) -> str:
    """``runs/<kind>/<label>_<hash>``: one folder per distinct run, so the same command resumes it."""
    settings = {**settings, "keras_sysid": keras_sysid.__version__}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return os.path.join("runs", kind, f"{label}_{digest}")
