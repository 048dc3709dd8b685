r"""Training and inference speed and peak memory of the paper's model.

Each population size runs in a fresh process; prints a table, then one JSON
line with every measurement.

Examples:

  python tools/benchmark.py
  python tools/benchmark.py --n_neurons 1000,5000,20000 --steps 30
"""

import json

from absl import app, flags

from keras_sysid import benchmark

_N_NEURONS = flags.DEFINE_list("n_neurons", ["1000", "5000", "20000"], "Population sizes to measure.")
_HEIGHT = flags.DEFINE_integer("height", 36, "Image height.")
_WIDTH = flags.DEFINE_integer("width", 64, "Image width.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Training batch size.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed training steps per size.")
_READOUT = flags.DEFINE_enum("readout", "factorized", ["factorized", "fully_connected"], "Readout.")


def main(argv):
    del argv
    rows = []
    print(f"{'neurons':>8} {'train img/s':>12} {'predict img/s':>14} {'peak RSS MB':>12} {'parameters':>11}")
    for n_neurons in _N_NEURONS.value:
        row = benchmark.benchmark_training(
            int(n_neurons), (_HEIGHT.value, _WIDTH.value), _BATCH_SIZE.value, _STEPS.value, _READOUT.value
        )
        rows.append(row)
        print(
            f"{row['n_neurons']:>8} {row['train_images_per_s']:>12} {row['predict_images_per_s']:>14} "
            f"{row['peak_rss_mb']:>12} {row['parameters']:>11}",
            flush=True,
        )
    print(json.dumps({"benchmark": rows}))


if __name__ == "__main__":
    app.run(main)
