r"""Fit a model to a recording, or to the built-in synthetic ground truth, and score it.

With ``--data`` (any recording keras_sysid.data.load reads: a
``static*-preproc0`` zip or folder, or an NWB file), a recipe
(``--recipe NAME`` of keras_sysid.recipes.RECIPES, or ``--core``,
``--readout`` and ``--state``) is fitted on the recording's train tier,
stopped early on its validation tier's correlation and scored on its
repeated test images (keras_sysid.recipes.fit_recording). The run folder
gets ``model.keras``, ``saved_model/`` (for TensorFlow Serving; TensorFlow
backend only), ``scores.npz`` (per-neuron scores and RF positions),
``results.json`` (test scores, epochs, seconds, settings) and, with
matplotlib, ``test_scores.png`` (per-neuron scores, against the oracle),
``rf_positions.png`` (the learned RF centres) and, with the neurons'
cortical coordinates, ``retinotopy.png``. The
last line printed is ``results.json`` as one JSON object.

Without ``--data``, a population is simulated from the synthetic ground truth
and the model scored against it (keras_sysid.recipes.fit_synthetic); the last line printed is one JSON object with
``fev``, ``rf_error_px``, ``frac_rf_within_1px``, ``epochs``, ``seconds`` and
more.

Every run keeps its files in a folder, printed at the start: ``--out``, or
runs/fit/<recording>_<readout>_<hash> (without ``--data``:
runs/train/<truth>_<readout>_<hash>), the hash of every setting, the data and
the keras_sysid version. The run is resumable: after a crash, Ctrl-C or
kill -9, rerun the same command and it goes on from the last completed epoch
(backups in OUT/backup); a finished run is read back, not refitted, and one
given a larger --max_epochs goes on. A folder in use by another run is locked:
a second fit into it stops at once, naming the process.

Examples:

  # A recording: the Gaussian readout on the paper's core, with TensorBoard logs.
  keras-sysid fit --data ../shared/data/mouse_v1_lurz2021/static20457-5-9-preproc0.zip \
      --readout gaussian --out runs/fit/gaussian --logdir runs/fit/gaussian/logs

  # Lurz et al.'s core, readout positions predicted from cortical coordinates.
  keras-sysid fit --data static20457-5-9-preproc0.zip --core lurz --readout cortex_gaussian

  # New neurons on a zoo model's core (frozen; --fine_tune trains it too).
  keras-sysid fit --data session.nwb --pretrained mouse_v1_gaussian --readout gaussian

  # The best mouse V1 recipe (the ablation's 'modulator' variant): behaviour and eye position as inputs.
  keras-sysid fit --data static20457-5-9-preproc0.zip --recipe mouse_v1_best
  # ... the same, spelled out:
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

  # The same fit under JAX (any installed Keras backend; docs/benchmarks.md).
  keras-sysid fit --backend jax

  # Synthetic truth only: data-parallel over all local GPUs (or, without GPUs, 2 logical CPUs).
  keras-sysid fit --strategy mirrored --logical_cpus 2

  # Two workers (run one command per machine, index 0 and 1); worker 0 writes --out.
  TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
              "task": {"type": "worker", "index": 0}}' \
      keras-sysid fit --strategy multiworker --out runs/dog_2workers
"""

import dataclasses
import json
import sys
import time

import keras
from absl import app, flags

from keras_sysid import devices, distribute, readouts, recipes
from keras_sysid.cli import _backend, _recordings
from keras_sysid.data import RecordingError
from keras_sysid.recipes.presets import (
    RECORDING_CORES,
    SYNTHETIC_CORES,
    FitSettings,
    SyntheticRunConfig,
    recording_spec,
)
from keras_sysid.resume import BackupError
from keras_sysid.runs import RunInterrupted, RunKeyError, RunLockedError

# Its documentation page, linked from --help (keras_sysid.cli.main.docs_link).
DOCS_PAGE = "your-data/"

flags.adopt_module_key_flags(_recordings)

_DATA = flags.DEFINE_multi_string(
    "data", None,
    "A recording to fit: a static*-preproc0 zip or folder, or an .nwb file (repeat for several on one core). "
    "Left out: the synthetic ground truth.",
)
_RECIPE = flags.DEFINE_enum(
    "recipe", None, list(recipes.RECIPES),
    "--data: a named recipe (keras_sysid.recipes.RECIPES): "
    + "; ".join(f"{name}: {recipe.description}" for name, recipe in recipes.RECIPES.items())
    + ". Left out: --core, --readout and --state.",
)
_PRETRAINED = flags.DEFINE_string(
    "pretrained", None,
    "--data: fit the recording's neurons on the core of this model (a zoo name, zoo folder or .keras file of an "
    "image-only model): a new --readout on a frozen core (--fine_tune trains the core too).",
)
_FINE_TUNE = flags.DEFINE_boolean("fine_tune", False, "With --pretrained: train the pretrained core too.")
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
    f"--data: {', '.join(RECORDING_CORES)} (keras_sysid.recipes.presets.RECORDING_CORES); auto: paper.",
)
_READOUT = flags.DEFINE_enum(
    "readout", "factorized", list(readouts.registry()),
    "Any registered readout (settings from keras_sysid.recipes.presets: SYNTHETIC_READOUTS, with --data "
    "RECORDING_READOUTS; else its defaults).",
)
_EPOCHS = flags.DEFINE_integer(
    "epochs", None,
    f"Maximum epochs (early stopping usually ends sooner; default {SyntheticRunConfig.epochs}, "
    f"with --data {FitSettings.max_epochs}). Raised on a finished run that ran out of epochs, the run goes on.",
)
flags.DEFINE_alias("max_epochs", "epochs")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Training batch size.")
_LEARNING_RATE = flags.DEFINE_float(
    "learning_rate", None,
    f"Initial learning rate (default {SyntheticRunConfig.learning_rate}; with --data, the recipe's, "
    f"else {FitSettings.learning_rate}).",
)
_PATIENCE = flags.DEFINE_integer(
    "patience", None,
    f"Epochs without improvement before each LR step (default {SyntheticRunConfig.patience}, "
    f"with --data {FitSettings.patience}).",
)
_OUT = flags.DEFINE_string(
    "out", None,
    "Run folder for the model, results.json and resumable backups (default: runs/fit/<recording>_<readout>_"
    "<hash>, or without --data runs/train/<ground_truth>_<readout>_<hash>, the hash of every setting, the data and "
    "the keras_sysid version; printed at the start).",
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
            _fit_data()
        else:
            _fit_synthetic(backend)
    except (RecordingError, BackupError, RunKeyError, RunLockedError) as error:
        sys.exit(f"error: {error}")
    except RunInterrupted as interrupted:
        # The backup holds every completed epoch: the same command goes on from there.
        print(f"\n{interrupted}", file=sys.stderr)
        sys.exit(130)


def _fit_synthetic(backend: str) -> None:
    """The built-in synthetic ground truth (the paper's Fig. 4 by default)."""
    given = [f"--{name}" for name in ("state", "recipe", "pretrained", "fine_tune") if flags.FLAGS[name].present]
    if given:
        raise app.UsageError(f"{', '.join(given)}: for a recording (--data), not the synthetic truth.")
    if _CORE.value not in ("auto", *SYNTHETIC_CORES):
        raise app.UsageError(f"--core {_CORE.value} is for --data; the synthetic truth takes auto, "
                             f"{', '.join(SYNTHETIC_CORES)}.")
    config = SyntheticRunConfig(
        ground_truth=_GROUND_TRUTH.value, n_neurons=_N_NEURONS.value, n_types=_N_TYPES.value,
        image_size=_IMAGE_SIZE.value, n_train=_N_TRAIN.value, jitter=_JITTER.value, seed=_SEED.value,
        core=_CORE.value, readout=_READOUT.value, epochs=_given(_EPOCHS, SyntheticRunConfig.epochs),
        batch_size=_BATCH_SIZE.value, learning_rate=_given(_LEARNING_RATE, SyntheticRunConfig.learning_rate),
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
    _set_precision()
    results = recipes.fit_synthetic(config, out=_OUT.value, verbose=_verbosity(), callbacks=_callbacks(),
                                    strategy=strategy, jit_compile=_jit_compile(), log=_log)
    print(json.dumps(results))


def _fit_data() -> None:
    """The recordings of ``--data``, through :func:`keras_sysid.recipes.fit_recording`."""
    given = [f"--{name}" for name in _SYNTHETIC_ONLY if flags.FLAGS[name].present]
    if given:
        raise app.UsageError(f"{', '.join(given)}: for the synthetic truth, not with --data.")
    recipe = _recipe()
    recordings = []
    for path in _DATA.value:
        started = time.perf_counter()
        print(f"reading {path} ...", flush=True)
        recording = _recordings.load_recording(path, nwb_options=_recordings.nwb_options())
        print(f"  {recording.name}: {recording.n_trials} trials, {recording.n_neurons} neurons, images "
              f"{recording.image_shape} ({time.perf_counter() - started:.1f} s)", flush=True)
        chosen = _recordings.describe(recording)
        if chosen:
            print(chosen, flush=True)
        if recording.name in [r.name for r in recordings]:
            raise app.UsageError(f"--data: two recordings are named {recording.name}.")
        recordings.append(recording)
    _set_precision()
    try:
        results = recipes.fit_recording(recordings, recipe, out=_OUT.value, verbose=_verbosity(),
                                        callbacks=_callbacks(), jit_compile=_jit_compile(), log=_log)
    except ValueError as error:  # recordings that give one session name
        raise app.UsageError(f"--data: {error}") from None
    print(json.dumps(results))


def _recipe() -> recipes.Recipe:
    """The recipe of ``--recipe``, or of ``--core``, ``--readout`` and ``--state``, with the fit flags given."""
    if _FINE_TUNE.value and not _PRETRAINED.value:
        raise app.UsageError("--fine_tune: for a pretrained core (--pretrained NAME).")
    if _RECIPE.value:
        spelled = [f"--{name}" for name in ("core", "readout", "state", "pretrained") if flags.FLAGS[name].present]
        if spelled:
            raise app.UsageError(f"{', '.join(spelled)}: a recipe names its model; give --recipe or these, not both.")
        recipe = recipes.RECIPES[_RECIPE.value]
    elif _PRETRAINED.value:
        spelled = [f"--{name}" for name in ("core", "state") if flags.FLAGS[name].present]
        if spelled:
            raise app.UsageError(f"{', '.join(spelled)}: --pretrained brings its core, and takes images only.")
        recipe = recipes.Recipe(recipes.pretrained_spec(_PRETRAINED.value, _READOUT.value, _FINE_TUNE.value))
    else:
        core = "paper" if _CORE.value == "auto" else _CORE.value
        if core not in RECORDING_CORES:
            raise app.UsageError(
                f"--core {core} is for the synthetic truth; with --data: auto, {', '.join(RECORDING_CORES)}."
            )
        recipe = recipes.Recipe(recording_spec(core, _READOUT.value, state=_STATE.value))
    if _LEARNING_RATE.value is not None:
        recipe = dataclasses.replace(recipe, model={**recipe.model, "learning_rate": _LEARNING_RATE.value})
    return recipe.with_settings(
        max_epochs=_given(_EPOCHS, recipe.settings.max_epochs), patience=_given(_PATIENCE, recipe.settings.patience),
        batch_size=_BATCH_SIZE.value, seed=_SEED.value)


def _given(flag, default):
    """The flag's value, or ``default`` where it was left out (its default depends on the kind of fit)."""
    return default if flag.value is None else flag.value


def _set_precision() -> None:
    """Sets Keras' global policy from ``--mixed_precision``."""
    if _MIXED_PRECISION.value == "preferred":
        mixed_precision = devices.preferred_mixed_precision()
    else:
        mixed_precision = _MIXED_PRECISION.value == "true"
    if mixed_precision:
        keras.mixed_precision.set_global_policy(devices.mixed_policy_name())


def _jit_compile():
    return {"preferred": None, "true": True, "false": False}[_JIT_COMPILE.value]


def _verbosity() -> int:
    """Keras' progress bar on a terminal; one line per epoch into a log file or pipe."""
    return 1 if sys.stdout.isatty() else 2


def _callbacks() -> list:
    return [keras.callbacks.TensorBoard(_LOGDIR.value)] if _LOGDIR.value else []


def _log(line: str) -> None:
    print(line, flush=True)
