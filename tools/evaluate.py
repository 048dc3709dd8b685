r"""Score a fitted model on the test tier of a ``static*-preproc0`` data set.

Prints, as its last line, one JSON object with ``corr_single``, ``corr_avg``,
``feve``, ``frac_oracle``, ``oracle``, ``n_neurons``, ``n_trials`` and
``n_images`` (see ``keras_sysid.evaluation``).

Examples:

  python tools/evaluate.py --model runs/mouse_v1/factorized/model.keras \
      --data ../shared/data/mouse_v1_lurz2021/static20457-5-9-preproc0.zip

  # A zoo model.
  python tools/evaluate.py --model mouse_v1_gaussian \
      --data ../shared/data/mouse_v1_lurz2021/static20457-5-9-preproc0.zip

  # Another tier with repeats, and per-neuron scores saved.
  python tools/evaluate.py --model model.keras --data static-folder/ \
      --tier validation --per_neuron scores.npz
"""

import json
import sys

import numpy as np
from absl import app, flags

from keras_sysid import evaluation, zoo
from keras_sysid.data.static import KNOWN_TIERS, StaticDataError, load_static

_MODEL = flags.DEFINE_string("model", None, "A .keras file, a zoo name or a zoo-format folder.", required=True)
_DATA = flags.DEFINE_string("data", None, "A static*-preproc0 zip file or folder.", required=True)
_TIER = flags.DEFINE_enum("tier", "test", list(KNOWN_TIERS), "Tier to score (needs repeated images).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Prediction batch size.")
_PER_NEURON = flags.DEFINE_string("per_neuron", None, "Also write per-neuron scores to this .npz file.")


def main(argv):
    del argv
    try:
        data = load_static(_DATA.value, tiers=[_TIER.value])
        model = zoo.load_any(_MODEL.value)
        scores = evaluation.evaluate_model(model, data, _TIER.value, _BATCH_SIZE.value)
    except (StaticDataError, ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    if _PER_NEURON.value:
        np.savez(_PER_NEURON.value, corr_single=scores.corr_single, corr_avg=scores.corr_avg,
                 feve=scores.feve, oracle=scores.oracle)
    print(json.dumps({"model": _MODEL.value, "data": data.name, "tier": _TIER.value, **scores.summary()}))


if __name__ == "__main__":
    app.run(main)
