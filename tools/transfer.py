r"""Transfer learning curve: a pretrained core vs. a fresh model on new neurons.

New neurons of the same cell types as the pretrained model's synthetic
population are simulated with growing numbers of training images; each size
fits the pretrained core with a new readout and a fresh model of the same
architecture, and prints their test FEV. The last line is the table as JSON.

Examples:

  python tools/transfer.py --pretrained synthetic_cnn_factorized

  python tools/transfer.py --pretrained zoo/synthetic_cnn_factorized \
      --sizes 256,1024 --n_neurons 50 --fine_tune
"""

import json

from absl import app, flags

from keras_sysid import transfer

_PRETRAINED = flags.DEFINE_string("pretrained", None, "Zoo name or folder of a synthetic 'cnn' fit.", required=True)
_SIZES = flags.DEFINE_list("sizes", ["128", "256", "512", "1024", "2048"], "Training images per point.")
_N_NEURONS = flags.DEFINE_integer("n_neurons", 100, "New neurons.")
_FINE_TUNE = flags.DEFINE_bool("fine_tune", False, "Train the transferred core too (default: frozen).")
_MAX_EPOCHS = flags.DEFINE_integer("max_epochs", 100, "Upper bound on epochs per fit.")
_SEED = flags.DEFINE_integer("seed", 1, "Seed of the new neurons and of training.")


def main(argv):
    del argv
    rows = transfer.learning_curve_for_entry(
        _PRETRAINED.value, n_neurons=_N_NEURONS.value, train_sizes=[int(s) for s in _SIZES.value],
        freeze_core=not _FINE_TUNE.value, max_epochs=_MAX_EPOCHS.value, seed=_SEED.value,
    )
    print(json.dumps(rows))


if __name__ == "__main__":
    app.run(main)
