"""End-to-end experiments on the built-in synthetic ground truth.

:func:`run_synthetic` is the library side of ``tools/train.py``: simulate a
population, build a model, fit it with the paper's schedule, and score it
against the truth (FEV on noise-free test rates, RF localisation error).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

import keras
import numpy as np

from keras_sysid import devices, distribute, metrics
from keras_sysid.data.synthetic import make_population
from keras_sysid.models import build_model
from keras_sysid.training import fit_with_schedule

# Core presets. "linear" is the paper's Fig. 4 fit: one 13x13 layer, one kernel
# per cell type, no nonlinearity. Its "same" padding keeps the grid as large as
# the image: a kernel that learns its cell off-centre shifts every mask the
# other way, and with a "valid" grid the cells nearest the border would then
# fall off it. "paper" is the three-layer core.
CORE_PRESETS = {
    "linear": lambda n_types: {
        "type": "stacked_conv2d", "channels": n_types, "kernel_sizes": [13], "paddings": "same",
        "smoothness": 0.01,
    },
    "paper": lambda n_types: {
        "type": "stacked_conv2d", "channels": 32, "kernel_sizes": [13, 3, 3],
        "smoothness": 0.01, "group_sparsity": 0.001,
    },
    "identity": lambda n_types: {"type": "identity"},
}

READOUT_PRESETS = {
    "factorized": {"type": "factorized", "l1": 0.05},
    "fully_connected": {"type": "fully_connected", "l2": 0.01, "smoothness": 0.1},
}

DEFAULT_CORE = {"dog": "linear", "cnn": "paper"}


@dataclasses.dataclass
class SyntheticRunConfig:
    """Settings of one synthetic experiment (defaults: the paper's Fig. 4)."""

    ground_truth: str = "dog"
    n_neurons: int = 1000
    n_types: int = 2
    image_size: int = 48
    n_train: int = 8192
    jitter: float = 0.05
    seed: int = 0
    core: str = "auto"
    readout: str = "factorized"
    epochs: int = 200
    batch_size: int = 64
    learning_rate: float = 0.003
    patience: int = 5


def model_for(config: SyntheticRunConfig, image_shape, mean_responses) -> keras.Model:
    """The model a run fits: presets chosen by ``config.core`` / ``config.readout``."""
    core_name = DEFAULT_CORE[config.ground_truth] if config.core == "auto" else config.core
    if core_name not in CORE_PRESETS:
        raise ValueError(f"Unknown core {core_name!r}; choose 'auto' or one of {sorted(CORE_PRESETS)}.")
    if config.readout not in READOUT_PRESETS:
        raise ValueError(f"Unknown readout {config.readout!r}; choose one of {sorted(READOUT_PRESETS)}.")
    return build_model(
        n_neurons=len(mean_responses),
        image_shape=image_shape,
        core=CORE_PRESETS[core_name](config.n_types),
        readout=READOUT_PRESETS[config.readout],
        mean_responses=mean_responses,
    )


def run_synthetic(
    config: SyntheticRunConfig, verbose: int = 1, callbacks=(), backup_dir=None, strategy=None, jit_compile=None
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

    Returns:
        ``(model, results)`` where ``results`` holds ``fev`` (mean over neurons
        on noise-free test rates), ``fev_median``, ``rf_error_px`` (median
        distance of learned to true RF centre), ``frac_rf_within_1px``,
        ``corr_test`` (mean correlation with noise-free test rates),
        ``epochs``, ``seconds`` and the config.
    """
    start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    population = make_population(
        config.ground_truth,
        n_neurons=config.n_neurons,
        n_types=config.n_types,
        image_size=config.image_size,
        n_train=config.n_train,
        jitter=config.jitter,
        seed=config.seed,
    )
    def scope():
        return strategy.scope() if strategy is not None else contextlib.nullcontext()

    with scope():
        model = model_for(config, population.image_shape, population.train.responses.mean(axis=0))
    replicas = 1 if strategy is None else strategy.num_replicas_in_sync
    batch_statistics = distribute.synchronized_batch_norm(model) if replicas > 1 else contextlib.nullcontext()
    with scope(), batch_statistics:
        history = fit_with_schedule(
            model,
            population.epoch_stream("train", config.batch_size, seed=config.seed),
            population.dataset("validation", 256),
            max_epochs=config.epochs,
            learning_rate=config.learning_rate,
            patience=config.patience,
            verbose=verbose,
            callbacks=callbacks,
            backup_dir=backup_dir,
            fingerprint=dataclasses.asdict(config),
            jit_compile=jit_compile,
        )
    # A model trained in mixed precision is scored (and returned) in float32.
    model = devices.float32_copy(model)
    prediction = model.predict(population.test.images, batch_size=256, verbose=0)
    fev = metrics.fev(population.test.clean_responses, prediction)
    distance = metrics.rf_distance(model.rf_positions(), population.locations)
    results = {
        "fev": float(np.mean(fev)),
        "fev_median": float(np.median(fev)),
        "corr_test": float(np.mean(metrics.correlation(population.test.clean_responses, prediction))),
        "rf_error_px": float(np.median(distance)),
        "frac_rf_within_1px": float(np.mean(distance <= 1.0)),
        "epochs": len(history.epoch),
        "final_loss": float(history.history["loss"][-1]),
        "best_val_loss": float(np.min(history.history["val_loss"])),
        "seconds": round(time.perf_counter() - start, 1),
        "config": dataclasses.asdict(config),
    }
    return model, results
