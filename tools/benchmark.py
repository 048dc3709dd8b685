r"""Speed, hardware utilisation and peak memory of the paper's model.

Measures this machine's float32 matmul rate, then trains the paper's model
(core 13/3/3 x 48, batch 64) on random 36x64 images at each population size
and readout, each in a fresh process, and optionally the input pipeline on a
published data set. Prints a table, then one JSON line with everything.

Examples:

  # The README's table (2 CPU cores: about 15 minutes).
  python tools/benchmark.py --readouts factorized,gaussian \
      --n_neurons 1000,5000,20000,100000 \
      --data ../shared/data/mouse_v1_lurz2021/static20457-5-9-preproc0.zip

  # XLA on and off, float32 and mixed precision, at the paper's size.
  python tools/benchmark.py --n_neurons 5335 --jit_compile both --mixed_precision both
"""

import json

from absl import app, flags

from keras_sysid.experiments import benchmark

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
_MIXED_PRECISION = flags.DEFINE_enum("mixed_precision", "off", ["off", "on", "both"], "bfloat16 compute.")
_DATA = flags.DEFINE_string("data", None, "A static*-preproc0 zip or folder: also measure the input pipeline.")


def _steps_for(n_neurons: int) -> int:
    # Keeps each large run to about a minute on 2 cores.
    return _STEPS.value if n_neurons <= 20000 else max(3, _STEPS.value * 20000 // n_neurons)


def main(argv):
    del argv
    rate = benchmark.matmul_rate()
    print(f"float32 matmul: {rate['matmul_gflops']} GFLOP/s ({rate['matmul_size']}^2)")
    jit_options = {"preferred": [None], "true": [True], "false": [False], "both": [True, False]}[_JIT_COMPILE.value]
    precision_options = {"off": [False], "on": [True], "both": [False, True]}[_MIXED_PRECISION.value]
    header = (
        f"{'readout':>15} {'neurons':>8} {'XLA':>5} {'precision':>14} {'train img/s':>11} {'GFLOP/img':>9} "
        f"{'util %':>6} {'predict img/s':>13} {'peak RSS MB':>11} {'parameters':>11}"
    )
    print(header)
    rows = []
    for readout in _READOUTS.value:
        for n_neurons in (int(n) for n in _N_NEURONS.value):
            for jit_compile in jit_options:
                for mixed_precision in precision_options:
                    row = benchmark.benchmark_training(
                        n_neurons, (_HEIGHT.value, _WIDTH.value), _BATCH_SIZE.value, _steps_for(n_neurons), readout,
                        jit_compile=jit_compile, mixed_precision=mixed_precision,
                    )
                    row["utilisation"] = round(
                        row["train_gflops_per_image"] * row["train_images_per_s"] / rate["matmul_gflops"], 3
                    )
                    rows.append(row)
                    print(
                        f"{readout:>15} {n_neurons:>8} {str(row['jit_compile']):>5} {row['precision']:>14} "
                        f"{row['train_images_per_s']:>11} {row['train_gflops_per_image']:>9} "
                        f"{100 * row['utilisation']:>6.1f} {row['predict_images_per_s']:>13} "
                        f"{row['peak_rss_mb']:>11} {row['parameters']:>11}",
                        flush=True,
                    )
    pipeline = None
    if _DATA.value:
        pipeline = benchmark.benchmark_input_pipeline(_DATA.value, _BATCH_SIZE.value)
        print(
            f"input pipeline ({pipeline['data']}, {pipeline['n_train']} training trials): read in "
            f"{pipeline['load_seconds']} s, streams {pipeline['pipeline_images_per_s']} images/s"
        )
    print(json.dumps({"matmul": rate, "training": rows, "input_pipeline": pipeline}))


if __name__ == "__main__":
    app.run(main)
