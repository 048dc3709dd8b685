r"""Transfer learning curve: a pretrained core vs. a fresh model on new neurons.

New neurons of the same cell types as the pretrained model's synthetic
population are simulated with growing numbers of training images; each size
fits the pretrained core with a new readout and a fresh model of the same
architecture, and prints their test FEV. The last line is the table as JSON.

Examples:

  # Each new neuron located with the pretrained core (the fresh model, which
  # has none, uses the spike-triggered envelope), then its features learned.
  python tools/transfer.py --pretrained synthetic_cnn_factorized --readout fixed_mask

  # The factorized readout, its masks started at those locations.
  python tools/transfer.py --pretrained synthetic_cnn_factorized

  # Both models at the envelope, or both at the true location (what the core
  # transfers once the neurons are found).
  python tools/transfer.py --pretrained synthetic_cnn_factorized --readout fixed_mask --locations envelope
  python tools/transfer.py --pretrained synthetic_cnn_factorized --readout fixed_mask --locations known

  python tools/transfer.py --pretrained zoo/synthetic_cnn_factorized \
      --sizes 256,1024 --n_neurons 50 --fine_tune
"""

import json

from absl import app, flags

from keras_sysid import readouts
from keras_sysid.experiments import transfer_curve

_PRETRAINED = flags.DEFINE_string("pretrained", None, "Zoo name or folder of a synthetic 'cnn' fit.", required=True)
_SIZES = flags.DEFINE_list("sizes", ["128", "256", "512", "1024", "2048"], "Training images per point.")
_N_NEURONS = flags.DEFINE_integer("n_neurons", 100, "New neurons.")
_FINE_TUNE = flags.DEFINE_bool("fine_tune", False, "Train the transferred core too (default: frozen).")
_MAX_EPOCHS = flags.DEFINE_integer("max_epochs", 100, "Upper bound on epochs per fit.")
_READOUT = flags.DEFINE_enum(
    "readout", "same", ["same", *readouts.registry()],
    "New readout of both models (same: the pretrained model's kind and settings).",
)
_LOCATIONS = flags.DEFINE_enum(
    "locations", "core", ["core", "envelope", "known"],
    "Where new neurons' masks are placed or started: core (transferred model: found with its core; fresh model: "
    "spike-triggered envelope), envelope (both), known (both at the true location).",
)
_SEED = flags.DEFINE_integer("seed", 1, "Seed of the new neurons and of training.")


def main(argv):
    del argv
    rows = transfer_curve.learning_curve_for_entry(
        _PRETRAINED.value, n_neurons=_N_NEURONS.value, train_sizes=[int(s) for s in _SIZES.value],
        freeze_core=not _FINE_TUNE.value, max_epochs=_MAX_EPOCHS.value, seed=_SEED.value,
        readout=None if _READOUT.value == "same" else {"type": _READOUT.value},
        locations=_LOCATIONS.value,
    )
    print(json.dumps(rows))


if __name__ == "__main__":
    app.run(main)
