r"""Make (or remake) one zoo entry: model, metadata, model card and checksums.

Examples:

  # Mouse V1 entries: fit, or reuse a model that tools/reproduce.py fitted.
  python tools/build_zoo.py --entry mouse_v1_factorized \
      --data ../shared/data/mouse_v1_lurz2021/static20457-5-9-preproc0.zip \
      --model runs/mouse_v1/factorized/model.keras \
      --trained_with "python tools/reproduce.py --experiment mouse_v1 --data static20457-5-9-preproc0.zip --models factorized --max_epochs 60"

  # The best mouse V1 models, from a finished tools/reproduce.py --experiment mouse_v1_sota
  # run: the ensemble of the variant best on validation, and the best behaviour-aware model.
  python tools/build_zoo.py --entry mouse_v1_ensemble \
      --data ../shared/data/mouse_v1_lurz2021/static20457-5-9-preproc0.zip --model runs/mouse_v1_sota
  python tools/build_zoo.py --entry mouse_v1_behavior \
      --data ../shared/data/mouse_v1_lurz2021/static20457-5-9-preproc0.zip --model runs/mouse_v1_sota

  # The synthetic ground truths as simulators (constructed, seconds).
  python tools/build_zoo.py --entry synthetic_dog_groundtruth

  # The factorized model fitted to a synthetic ground truth (as tools/train.py).
  python tools/build_zoo.py --entry synthetic_cnn_factorized

  # Rewrite an existing entry's card with today's facts (metrics re-measured, weights untouched).
  python tools/build_zoo.py --entry mouse_v1_gaussian --card_only \
      --data ../shared/data/mouse_v1_lurz2021/static20457-5-9-preproc0.zip
"""

import json
import os

import _keras_backend  # first: it sets KERAS_BACKEND and imports TensorFlow without its banner
from absl import app, flags

from keras_sysid import zoo
from keras_sysid.experiments import zoo_recipes

_ENTRY = flags.DEFINE_enum("entry", None, sorted(zoo_recipes.RECIPES), "Which entry.", required=True)
_DATA = flags.DEFINE_string("data", None, "mouse_v1_*: the static*-preproc0 zip or folder.")
_MODEL = flags.DEFINE_string(
    "model", None,
    "mouse_v1_factorized/gaussian: a fitted .keras file to use instead of fitting; mouse_v1_ensemble/behavior: "
    "the output folder of tools/reproduce.py --experiment mouse_v1_sota.",
)
_TRAINED_WITH = flags.DEFINE_string(
    "trained_with", None, "mouse_v1_* with --model: the command that fitted it, for the card (default: reproduce.py)."
)
_OUT = flags.DEFINE_string("out", None, "Entry folder (default zoo/<entry>).")
_CARD_ONLY = flags.DEFINE_bool(
    "card_only", False,
    "Rewrite an existing entry's card (metadata.json, README.md) with the facts today's cards state, after "
    "re-measuring its metrics; its model files are kept byte for byte.",
)


def main(argv):
    del argv
    if _ENTRY.value.startswith("mouse_v1") and not _DATA.value:
        raise app.UsageError(f"--entry {_ENTRY.value} needs --data.")
    out = _OUT.value or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zoo", _ENTRY.value)
    if _CARD_ONLY.value:
        facts = zoo.rewrite_card(out, zoo_recipes.refreshed_card(_ENTRY.value, out, _DATA.value))
        print(json.dumps({"entry": _ENTRY.value, "folder": out, "card": "rewritten", "metrics": facts.get("metrics", {})}))
        return
    model, facts, card_text = zoo_recipes.RECIPES[_ENTRY.value]({"data": _DATA.value, "model": _MODEL.value, "trained_with": _TRAINED_WITH.value})
    zoo.save(model, out, facts, card_text)
    print(json.dumps({"entry": _ENTRY.value, "folder": out, "metrics": facts.get("metrics", {})}))


if __name__ == "__main__":
    app.run(main)
