"""The built-in synthetic ground truth: simulate, fit, score against the truth (``keras-sysid fit`` without ``--data``).

:func:`run_synthetic` simulates a population, builds a model, fits it with
the paper's schedule and scores it against the truth (FEV on noise-free test
rates, RF localisation error); :func:`fit_synthetic` does so in a locked,
resumable run folder (:class:`~keras_sysid.runs.Run`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time

import keras
import numpy as np

from keras_sysid import devices, distribute, evaluation, metrics, runs
from keras_sysid.data.synthetic import Split
from keras_sysid.models import build_model
from keras_sysid.readouts import NeuronEvidence
from keras_sysid.readouts import registry as readout_registry
from keras_sysid.recipes.presets import (
    DEFAULT_SYNTHETIC_CORE,
    SYNTHETIC_CORES,
    SyntheticRunConfig,
    synthetic_readout,
)
from keras_sysid.training import fit_with_schedule, stop_reason, stopping_line


def synthetic_key(config: SyntheticRunConfig, **more) -> dict:
    """A synthetic run's key: its config but ``epochs`` (more epochs continue a run), the backend, and ``more``."""
    import keras_sysid

    # The same seed draws other weights and batches under another Keras backend.
    return {**{k: v for k, v in dataclasses.asdict(config).items() if k != "epochs"},
            "backend": keras.backend.backend(), "keras_sysid": keras_sysid.__version__, **more}


def model_for_recording(recording, core: dict, readout: str, name: str = "sysid_model") -> keras.Model:
    """A model for a synthetic recording, its readout set up by name.

    ``readout`` may be any registered readout; one listed in
    :data:`~keras_sysid.recipes.presets.SYNTHETIC_READOUTS` gets those
    settings, and sets itself up from the train tier
    (:meth:`~keras_sysid.readouts.Readout.setup_from_data`:
    a readout with positions starts each neuron where the data place it). The readout bias starts at the mean training responses; the
    images (white noise, already standardised) are taken as they are.

    Args:
        recording: A :class:`~keras_sysid.data.Recording` of the synthetic truth (its train tier is used).
        core: A core spec (``{"type": ..., **kwargs}``).
        readout: A registered readout type name.
        name: Model name.
    """
    if readout not in readout_registry():
        raise ValueError(f"Unknown readout {readout!r}; choose one of {sorted(readout_registry())}.")
    preset = synthetic_readout(readout)
    images, responses = recording.tier("train")
    model = build_model(n_neurons=recording.n_neurons, image_shape=recording.image_shape, core=core,
                        readout=preset["readout"], mean_responses=responses.mean(axis=0), name=name)
    # No neuron metadata: a synthetic recording's is the truth the fit is scored against.
    model.readout.setup_from_data(NeuronEvidence.of(model, images, responses))
    return model


def model_for(config: SyntheticRunConfig, recording) -> keras.Model:
    """The model a run fits: core preset ``config.core``, readout ``config.readout``."""
    core_name = DEFAULT_SYNTHETIC_CORE[config.ground_truth] if config.core == "auto" else config.core
    if core_name not in SYNTHETIC_CORES:
        raise ValueError(f"Unknown core {core_name!r}; choose 'auto' or one of {sorted(SYNTHETIC_CORES)}.")
    return model_for_recording(recording, SYNTHETIC_CORES[core_name](config.n_types), config.readout)


def run_synthetic(
    config: SyntheticRunConfig, verbose: int = 1, callbacks=(), backup_dir=None, strategy=None, jit_compile=None,
    key=None,
) -> tuple[keras.Model, dict]:
    """Simulates, fits and scores one model.

    Args:
        config: The run's settings.
        verbose: Keras verbosity.
        callbacks: Extra Keras callbacks.
        backup_dir: Folder that keeps the fit resumable: rerunning the same
            config with it continues after the last completed epoch (see
            :func:`~keras_sysid.training.fit_with_schedule`).
        strategy: A ``tf.distribute`` strategy (see
            :mod:`keras_sysid.distribute`); ``config.batch_size`` is the
            global batch.
        jit_compile: XLA for the training step (``None``: the preferred
            setting for this device kind, :mod:`keras_sysid.devices`).
        key: The backup's key (default :func:`synthetic_key`).

    Returns:
        ``(model, results)`` where ``results`` holds ``fev`` (mean over neurons
        on noise-free test rates), ``fev_median``, ``rf_error_px`` (median
        distance of learned to true RF centre), ``frac_rf_within_1px``,
        ``corr_test`` (mean correlation with noise-free test rates),
        ``epochs``, ``seconds`` and the config.
    """
    start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    recording = config.recording()

    def scope():
        return strategy.scope() if strategy is not None else contextlib.nullcontext()

    with scope():
        model = model_for(config, recording)
    replicas = 1 if strategy is None else strategy.num_replicas_in_sync
    batch_statistics = distribute.synchronized_batch_norm(model) if replicas > 1 else contextlib.nullcontext()
    with scope(), batch_statistics:
        history = fit_with_schedule(
            model,
            recording.epoch_stream("train", config.batch_size, seed=config.seed),
            recording.dataset("validation", 256),
            max_epochs=config.epochs,
            learning_rate=config.learning_rate,
            patience=config.patience,
            verbose=verbose,
            callbacks=callbacks,
            backup_dir=backup_dir,
            fingerprint=key if key is not None else synthetic_key(config),
            jit_compile=jit_compile,
        )
    # A model trained in mixed precision is scored (and returned) in float32.
    model = devices.float32_copy(model)
    test = recording.indices("test")
    truth = Split(images=recording.images[test], responses=recording.responses[test],
                  clean_responses=recording.trials["clean_responses"][test])
    scores = evaluation.scores_against_truth(model, truth)
    fev = scores["fev"]
    distance = metrics.rf_distance(model.rf_positions(), recording.neurons["rf_location"])
    results = {
        "fev": float(np.mean(fev)),
        "fev_median": float(np.median(fev)),
        "corr_test": float(np.mean(scores["correlation"])),
        "rf_error_px": float(np.median(distance)),
        "frac_rf_within_1px": float(np.mean(distance <= 1.0)),
        "epochs": len(history.epoch),
        "final_loss": float(history.history["loss"][-1]),
        "best_val_loss": float(np.min(history.history["val_loss"])),
        "best_epoch": int(np.nanargmin(history.history["val_loss"])) + 1,
        "seconds": round(time.perf_counter() - start, 1),
        "max_epochs": config.epochs,
        "stopped_early": len(history.epoch) < config.epochs,
        "stop_reason": stop_reason(history, config.epochs),
        "config": dataclasses.asdict(config),
    }
    return model, results



def fit_synthetic(config: SyntheticRunConfig, out=None, verbose: int = 1, callbacks=(), strategy=None,
                  jit_compile=None, log=print) -> dict:
    """:func:`run_synthetic` in a run folder: locked, resumable, read back once finished.

    Args:
        config: The run's settings.
        out: The run folder (default ``runs/train/<ground truth>_<readout>_<key digest>``);
            gets ``model.keras``, ``results.json`` and ``backup/``. Under a
            multi-worker strategy only the chief writes it; every other worker
            keeps its own backups in ``backup/worker<i>``.
        verbose: As :func:`run_synthetic`.
        callbacks: As :func:`run_synthetic`.
        strategy: As :func:`run_synthetic`.
        jit_compile: As :func:`run_synthetic`.
        log: Where progress lines go.

    Returns:
        The results (as :func:`run_synthetic`'s, plus backend, strategy,
        replicas, precision and the key).

    Raises:
        RunLockedError: another process is fitting into ``out``.
        RunKeyError: ``out`` holds a run of another key.
    """
    precision = devices.current_precision()
    strategy_name = distribute.strategy_name(strategy)
    key = synthetic_key(config, precision=precision, strategy=strategy_name)
    run = runs.Run(out or runs.default_folder("train", f"{config.ground_truth}_{config.readout}", key), key)
    how = {"backend": keras.backend.backend(), "strategy": strategy_name, "precision": precision,
           "replicas": int(strategy.num_replicas_in_sync) if strategy is not None else 1}
    if not distribute.is_chief():
        # Every worker trains (and backs up) in step, each into its own folder; the chief writes the run.
        _, results = run_synthetic(config, verbose=verbose, callbacks=callbacks, strategy=strategy,
                                   jit_compile=jit_compile, key=key,
                                   backup_dir=os.path.join(run.backup_dir, f"worker{distribute.task_index()}"))
        return {**results, **how}
    with run:
        log(f"run folder: {run.folder} (model.keras, results.json; rerun the same command to resume)")
        finished = run.finished(config.epochs)
        if finished is not None:
            log(f"finished already: read {run.path(runs.RESULTS)} (a finished run is read back, not refitted)")
            return finished
        with run.resumable():
            model, results = run_synthetic(config, verbose=verbose, callbacks=callbacks, backup_dir=run.backup_dir,
                                           strategy=strategy, jit_compile=jit_compile, key=key)
        results.update(how)
        log(stopping_line(results))
        run.save_model(model)
        return run.write_results(results)
