r"""Transfer learning curve: a pretrained core vs. a fresh model on new neurons.

New neurons of the same cell types as the pretrained model's synthetic
population are simulated with growing numbers of training images; each size
fits the pretrained core with a new readout and a fresh model of the same
architecture, once per seed, and prints their test FEV: a line per fit, a
table of mean ± std (min..max) over the seeds, and, last, the rows as JSON
(per-seed values included). With --results, every finished fit is also
written to a JSON file, from which an interrupted run resumes.

Examples:

  # Each new neuron located with the pretrained core (the fresh model, which
  # has none, uses the spike-triggered envelope), then its features learned.
  keras-sysid transfer --pretrained synthetic_cnn_factorized --readout fixed_mask

  # The factorized readout, its masks started at those locations.
  keras-sysid transfer --pretrained synthetic_cnn_factorized

  # Both models at the envelope, or both at the true location (what the core
  # transfers once the neurons are found).
  keras-sysid transfer --pretrained synthetic_cnn_factorized --readout fixed_mask --locations envelope
  keras-sysid transfer --pretrained synthetic_cnn_factorized --readout fixed_mask --locations known

  keras-sysid transfer --pretrained zoo/synthetic_cnn_factorized \
      --sizes 256,1024 --n_neurons 50 --fine_tune --seeds 1,2,3,4,5 --results runs/fine_tune.json
"""

import json

from absl import flags

from keras_sysid import readouts
from keras_sysid.cli import _backend
from keras_sysid.experiments import transfer_curve

# Its documentation page, linked from --help (keras_sysid.cli.main.docs_link).
DOCS_PAGE = "results/"

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
_SEEDS = flags.DEFINE_list(
    "seeds", ["1", "2", "3"], "Seeds; each point is fitted once per seed (new neurons, images, weights, batch order)."
)
_MONITOR = flags.DEFINE_enum(
    "monitor", "val_loss", ["val_loss", "val_correlation"],
    "What early stopping watches (val_correlation ignores the response scale, which FEV scores).",
)
_RESULTS = flags.DEFINE_string(
    "results", None, "JSON file each finished fit is written to; a rerun with the same settings reuses its fits."
)


def main(argv):
    del argv
    _backend.check()
    rows = transfer_curve.learning_curve_for_entry(
        _PRETRAINED.value, n_neurons=_N_NEURONS.value, train_sizes=[int(s) for s in _SIZES.value],
        freeze_core=not _FINE_TUNE.value, max_epochs=_MAX_EPOCHS.value, seeds=[int(s) for s in _SEEDS.value],
        readout=None if _READOUT.value == "same" else {"type": _READOUT.value},
        locations=_LOCATIONS.value, monitor=_MONITOR.value, results_path=_RESULTS.value,
    )
    print()
    print(transfer_curve.format_curve(rows))
    print(json.dumps(rows))

