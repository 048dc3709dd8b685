r"""List the zoo's pretrained models, or show one's model card.

``list`` prints each shipped entry's name and description; ``show NAME``
prints the entry's model card (its README.md: data, units, metrics, licence,
how it was trained), checked against its checksums.

Examples:

  keras-sysid zoo list
  keras-sysid zoo show mouse_v1_gaussian

  # Then score one, or load it in Python: keras_sysid.zoo.load("mouse_v1_gaussian").
  keras-sysid evaluate --model synthetic_cnn_factorized
"""

import os
import sys

from absl import app

from keras_sysid import zoo

_ACTIONS = "list, or show NAME"


def main(argv):
    action, arguments = (argv[1], argv[2:]) if len(argv) > 1 else (None, [])
    if action == "list" and not arguments:
        entries = _entries()
        width = max((len(name) for name in entries), default=0)
        for name, entry in entries.items():
            print(f"{name:<{width}}  {entry['description'] or ''}")
    elif action == "show" and len(arguments) == 1:
        entries = _entries()
        name = arguments[0]
        if name not in entries:
            sys.exit(f"error: no zoo model {name!r}; the zoo has {', '.join(entries) or 'none'}.")
        try:
            zoo.verify(entries[name]["folder"], (zoo.CARD_FILE,))
        except zoo.ZooError as error:
            sys.exit(f"error: {error}")
        with open(os.path.join(entries[name]["folder"], zoo.CARD_FILE), encoding="utf-8") as file:
            print(file.read().rstrip("\n"))
    else:
        given = " ".join(argv[1:]) or "nothing"
        raise app.UsageError(f"zoo takes {_ACTIONS}; got {given}.")


def _entries() -> dict:
    """``{name: card facts}`` of the shipped entries (:func:`keras_sysid.zoo.presets`)."""
    try:
        return {entry["name"]: entry for entry in zoo.presets()}
    except zoo.ZooError as error:
        sys.exit(f"error: {error}")
