r"""Fit a population model to the built-in synthetic ground truth and score it.

Prints Keras' progress, then, as its last line, one JSON object with ``fev``,
``rf_error_px``, ``frac_rf_within_1px``, ``epochs``, ``seconds`` and more.

Examples:

  # The paper's Fig. 4: 1000 DoG cells of 2 types, one-layer core.
  python tools/train.py

  # Nonlinear ground truth, factorized model with the paper's 3-layer core.
  python tools/train.py --ground_truth cnn --n_types 4

  # A linear-nonlinear (LN) model of the same data, for comparison.
  python tools/train.py --ground_truth cnn --n_types 4 --core identity \
      --readout fully_connected

  # Every run keeps its model (.keras) and results (results.json) in a folder,
  # printed at the start: runs/train/<truth>_<readout>_<hash of the settings>
  # by default, or --out. The run is resumable: after a crash or kill -9, rerun
  # the same command and it goes on from the last completed epoch (backups in
  # OUT/backup); a finished run is read back, not refitted.
  python tools/train.py --out runs/dog

  # The same fit under JAX (any installed Keras backend; README, Benchmark).
  python tools/train.py --backend jax

  # Data-parallel over all local GPUs (or, without GPUs, 2 logical CPUs).
  python tools/train.py --strategy mirrored --logical_cpus 2

  # Two workers (run one command per machine, index 0 and 1); worker 0 writes --out.
  TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
              "task": {"type": "worker", "index": 0}}' \
      python tools/train.py --strategy multiworker --out runs/dog_2workers
"""

import dataclasses
import hashlib
import json
import os

import _keras_backend  # first: it sets KERAS_BACKEND from --backend, and imports TensorFlow without its banner
import keras

import keras_sysid
from absl import app, flags

from keras_sysid import devices, distribute, readouts
from keras_sysid.experiments.presets import SYNTHETIC_CORES, SyntheticRunConfig
from keras_sysid.experiments.synthetic import run_synthetic

_GROUND_TRUTH = flags.DEFINE_enum("ground_truth", "dog", ["dog", "cnn"], "Synthetic ground truth.")
_N_NEURONS = flags.DEFINE_integer("n_neurons", 1000, "Number of simulated neurons.")
_N_TYPES = flags.DEFINE_integer("n_types", 2, "Number of cell types.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 48, "Images are image_size x image_size pixels.")
_N_TRAIN = flags.DEFINE_integer("n_train", 8192, "Training images.")
_JITTER = flags.DEFINE_float("jitter", 0.05, "DoG: relative within-type size jitter.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the simulation and of training.")
_CORE = flags.DEFINE_enum(
    "core", "auto", ["auto", *SYNTHETIC_CORES], "Core preset; auto: linear for dog, paper for cnn."
)
_READOUT = flags.DEFINE_enum(
    "readout", "factorized", list(readouts.registry()),
    "Any registered readout (settings from keras_sysid.experiments.presets.SYNTHETIC_READOUTS, else its defaults).",
)
_EPOCHS = flags.DEFINE_integer("epochs", 200, "Maximum epochs (early stopping usually ends sooner).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Training batch size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", SyntheticRunConfig.learning_rate, "Initial learning rate.")
_PATIENCE = flags.DEFINE_integer("patience", 5, "Epochs without improvement before each LR step.")
_OUT = flags.DEFINE_string(
    "out", None,
    "Folder to write model.keras, results.json and resumable backups into "
    "(default: runs/train/<ground_truth>_<readout>_<hash of every setting and the keras_sysid version>, printed "
    "at the start).",
)
_BACKUP_DIR = flags.DEFINE_string(
    "backup_dir", None, "Folder of per-epoch backups for resuming (default: OUT/backup)."
)
_STRATEGY = flags.DEFINE_enum("strategy", "default", list(distribute.STRATEGIES), "tf.distribute strategy.")
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
    "logical_cpus", None, "Split the CPU into this many logical devices (to use --strategy mirrored without GPUs)."
)


def main(argv):
    del argv
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
        epochs=_EPOCHS.value,
        batch_size=_BATCH_SIZE.value,
        learning_rate=_LEARNING_RATE.value,
        patience=_PATIENCE.value,
    )
    backend = _keras_backend.check()
    if backend != "tensorflow" and (_STRATEGY.value != "default" or _LOGICAL_CPUS.value):
        raise app.UsageError(f"--strategy and --logical_cpus are tf.distribute's: use --backend tensorflow, not {backend}.")
    if _LOGICAL_CPUS.value:
        distribute.use_logical_cpus(_LOGICAL_CPUS.value)
    jit_compile = {"preferred": None, "true": True, "false": False}[_JIT_COMPILE.value]
    # The strategy comes first: a multi-worker one must be made before
    # anything (such as asking for the device kind) starts TensorFlow's runtime.
    strategy = distribute.make_strategy(_STRATEGY.value) if backend == "tensorflow" else None
    if _MIXED_PRECISION.value == "preferred":
        mixed_precision = devices.preferred_mixed_precision()
    else:
        mixed_precision = _MIXED_PRECISION.value == "true"
    if mixed_precision:
        keras.mixed_precision.set_global_policy(devices.mixed_policy_name())
    out = _OUT.value or _default_out(config, backend, mixed_precision, _STRATEGY.value)
    backup_dir = _BACKUP_DIR.value or os.path.join(out, "backup")
    if distribute.is_chief():
        print(f"run folder: {out} (model.keras, results.json; rerun the same command to resume)", flush=True)
        if os.path.isdir(backup_dir) and os.listdir(backup_dir):
            print(f"going on from the backup in {backup_dir} (a finished run is read back, not refitted)", flush=True)
    if backup_dir and not distribute.is_chief():
        # Every worker must train (and back up) in step, but into its own folder.
        backup_dir = os.path.join(backup_dir, f"worker{distribute.task_index()}")
    model, results = run_synthetic(
        config, verbose=1, backup_dir=backup_dir, strategy=strategy, jit_compile=jit_compile
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


def _default_out(config, backend: str, mixed_precision: bool, strategy: str) -> str:
    """``runs/train/<truth>_<readout>_<hash>``: one folder per distinct run, so the same command resumes it."""
    settings = {**dataclasses.asdict(config), "backend": backend, "mixed_precision": bool(mixed_precision),
                "strategy": strategy, "keras_sysid": keras_sysid.__version__}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return os.path.join("runs", "train", f"{config.ground_truth}_{config.readout}_{digest}")


if __name__ == "__main__":
    app.run(main)
