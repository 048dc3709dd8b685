r"""Speed, hardware utilisation and peak memory of the paper's model.

Measures this machine's matmul rate (float32, and bfloat16 when mixed
precision is measured), then trains the paper's model (core 13/3/3 x 48,
batch 64) on random 36x64 images at each population size and readout, each
in a fresh process, under each Keras backend asked for, and optionally the
input pipeline on a published data set. For every backend, precision and XLA
setting it first measures the *core alone* (a one-neuron point readout): the
rate no point readout can beat. Prints a table, then one JSON line with
everything.

Examples:

  # The table of docs/benchmarks.md (2 CPU cores: about 20 minutes).
  keras-sysid benchmark --readouts factorized,gaussian \
      --n_neurons 1000,5335,20000,100000 \
      --data ../shared/data/mouse_v1_lurz2021/static20457-5-9-preproc0.zip

  # The default precision of this CPU (mixed bfloat16 where it is native).
  keras-sysid benchmark --readouts factorized,gaussian --n_neurons 5335 --mixed_precision preferred

  # Predict of the zoo's factorized model, dense vs. its pruned-mask copy.
  keras-sysid benchmark --n_neurons 5335 --readouts factorized --pruned mouse_v1_factorized

  # The same model under every installed backend, training and inference.
  keras-sysid benchmark --backends tensorflow,jax,torch --readouts gaussian --n_neurons 5335

  # Serving: Keras against every export format's runtime (SavedModel, ONNX Runtime, OpenVINO, LiteRT):
  # images/s at batch 64, latency p50/p99 at batch 1 and the largest difference to Keras, in one run.
  keras-sysid benchmark --serving mouse_v1_gaussian,mouse_v1_ensemble
"""

import json

from absl import flags

from keras_sysid.experiments import benchmark, serving

# Its documentation page, linked from --help (keras_sysid.cli.main.docs_link).
DOCS_PAGE = "benchmarks/"

# The core alone is this readout with one neuron: its cost is negligible.
_CORE_ALONE = ("core alone", "gaussian", 1)

_N_NEURONS = flags.DEFINE_list("n_neurons", ["1000", "5000", "20000"], "Population sizes to measure.")
_READOUTS = flags.DEFINE_list("readouts", ["factorized"], "Registered readouts to measure (factorized, gaussian, ...).")
_HEIGHT = flags.DEFINE_integer("height", 36, "Image height.")
_WIDTH = flags.DEFINE_integer("width", 64, "Image width.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Training batch size.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed training steps per size (fewer above 20k neurons, at least 3).")
_JIT_COMPILE = flags.DEFINE_enum(
    "jit_compile", "preferred", ["preferred", "true", "false", "both"],
    "XLA compilation (preferred: keras_sysid.devices' choice for this device kind).",
)
_MIXED_PRECISION = flags.DEFINE_enum(
    "mixed_precision", "false", ["preferred", "true", "false", "both"],
    "Compute in bfloat16 (float16 on GPUs) with float32 weights, as keras-sysid fit --mixed_precision (preferred: "
    "on where measured faster for this device kind, keras_sysid.devices); both: measure float32 and mixed.",
)
_DATA = flags.DEFINE_string("data", None, "A static*-preproc0 zip or folder: also measure the input pipeline.")
_REPEATS = flags.DEFINE_integer(
    "repeats", 1, "Fresh processes per configuration; the row is the one with the median training rate."
)
_PRUNED = flags.DEFINE_string(
    "pruned", None,
    "A zoo factorized model (e.g. mouse_v1_factorized): also time its predict against its pruned-readout copy.",
)
_SERVING = flags.DEFINE_list(
    "serving", None, "Zoo models (e.g. mouse_v1_gaussian,mouse_v1_ensemble): measure serving instead of training, "
    "Keras against every export format in its own runtime (needs the serve extra).")
_BACKENDS = flags.DEFINE_list(
    "backends", None, "Keras backends to measure (tensorflow, jax, torch; default: KERAS_BACKEND or tensorflow)."
)


def mixed_precision_options(choice: str) -> list[bool]:
    """``--mixed_precision`` as the precisions to measure: ``[False]``, ``[True]`` or both (float32 first).

    ``preferred`` is :func:`keras_sysid.devices.preferred_mixed_precision` on
    this process's Keras backend and device kind.
    """
    if choice == "preferred":
        from keras_sysid import devices

        return [bool(devices.preferred_mixed_precision())]
    return {"true": [True], "false": [False], "both": [False, True]}[choice]


def _steps_for(n_neurons: int) -> int:
    # Keeps each large run to about a minute on 2 cores.
    return _STEPS.value if n_neurons <= 20000 else max(3, _STEPS.value * 20000 // n_neurons)


def _row_text(backend, label, row, core_rate):
    return (
        f"{backend:>10} {label:>15} {row['n_neurons']:>8} {str(row['jit_compile']):>5} {row['precision']:>14} "
        f"{row['train_images_per_s']:>11} {row['train_gflops_per_image']:>9.4g} {100 * row['utilisation']:>6.1f} "
        f"{100 * row['train_images_per_s'] / core_rate:>9.0f} {row['predict_images_per_s']:>13} "
        f"{row['peak_rss_mb']:>11} {row['parameters']:>11}"
    )


def main(argv):
    del argv
    import os

    if _SERVING.value:
        results = serving.benchmark_serving(_SERVING.value)
        print(serving.table(results))
        print(json.dumps(results))
        return

    backends = _BACKENDS.value or [os.environ.get("KERAS_BACKEND", "tensorflow")]
    jit_options = {"preferred": [None], "true": [True], "false": [False], "both": [True, False]}[_JIT_COMPILE.value]
    precision_options = mixed_precision_options(_MIXED_PRECISION.value)
    dtypes = ["float32"] * (False in precision_options) + ["mixed"] * (True in precision_options)
    rates = {}
    for backend in backends:
        for dtype in dtypes:
            rates[backend, dtype] = benchmark.matmul_rate(dtype=dtype, backend=backend)
            rate = rates[backend, dtype]
            print(f"{backend} {rate['dtype']} matmul: {rate['matmul_gflops']} GFLOP/s (4096^2)", flush=True)
    # Utilisation is against the machine's best rate in that precision, whichever framework reached it.
    best_rate = {dtype: max(rates[b, dtype]["matmul_gflops"] for b in backends) for dtype in dtypes}
    print(
        f"{'backend':>10} {'readout':>15} {'neurons':>8} {'XLA':>5} {'precision':>14} {'train img/s':>11} "
        f"{'GFLOP/img':>9} {'util %':>6} {'% of core':>9} {'predict img/s':>13} {'peak RSS MB':>11} {'parameters':>11}"
    )
    rows = []
    for backend in backends:
        for jit_compile in jit_options:
            for mixed_precision in precision_options:
                rate = best_rate["mixed" if mixed_precision else "float32"]
                configurations = [_CORE_ALONE] + [
                    (readout, readout, int(n)) for readout in _READOUTS.value for n in _N_NEURONS.value
                ]
                core_rate = None
                for label, readout, n_neurons in configurations:
                    # Rates of one configuration vary by about 10% from one process to the next on a shared VM.
                    repeats = sorted(
                        (
                            benchmark.benchmark_training(
                                n_neurons, (_HEIGHT.value, _WIDTH.value), _BATCH_SIZE.value, _steps_for(n_neurons),
                                readout, jit_compile=jit_compile, mixed_precision=mixed_precision, backend=backend,
                            )
                            for _ in range(_REPEATS.value)
                        ),
                        key=lambda measured: measured["train_images_per_s"],
                    )
                    row = repeats[len(repeats) // 2]
                    row["train_images_per_s_all"] = [measured["train_images_per_s"] for measured in repeats]
                    row["label"] = label
                    row["utilisation"] = round(row["train_gflops_per_image"] * row["train_images_per_s"] / rate, 3)
                    core_rate = core_rate or row["train_images_per_s"]
                    row["fraction_of_core_alone"] = round(row["train_images_per_s"] / core_rate, 3)
                    rows.append(row)
                    print(_row_text(backend, label, row, core_rate), flush=True)
    pipeline = None
    if _DATA.value:
        pipeline = benchmark.benchmark_input_pipeline(_DATA.value, _BATCH_SIZE.value)
        print(
            f"input pipeline ({pipeline['data']}, {pipeline['n_train']} training trials): read in "
            f"{pipeline['load_seconds']} s, streams {pipeline['pipeline_images_per_s']} images/s"
        )
    pruned = None
    if _PRUNED.value:
        pruned = benchmark.benchmark_pruned_predict(_PRUNED.value, _BATCH_SIZE.value)
        print(
            f"{_PRUNED.value} (mask density {pruned['density']}), predict images/s, batch {pruned['batch_size']}: "
            f"dense {pruned['predict_images_per_s']['dense']}, pruned {pruned['predict_images_per_s']['pruned']}; "
            f"readout forward {pruned['readout_ms']['dense']} -> {pruned['readout_ms']['pruned']} ms"
        )
        for point in pruned["random_mask_sweep"]:
            print(f"  random mask, density {point['density']}: readout {point['dense_ms']} -> {point['pruned_ms']} ms")
    print(json.dumps({"matmul": list(rates.values()), "training": rows, "input_pipeline": pipeline, "pruned": pruned}))

