r"""List the zoo's pretrained models, or show one's model card.

``list`` prints each shipped entry's name and description (and names any
entry whose files or facts are wrong, with what is wrong, then exits 1); ``show NAME``
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

# Its documentation page, linked from --help (keras_sysid.cli.main.docs_link).
DOCS_PAGE = "zoo/"

_ACTIONS = "list, or show NAME"


def main(argv):
    action, arguments = (argv[1], argv[2:]) if len(argv) > 1 else (None, [])
    if action == "list" and not arguments:
        entries, unusable = {}, {}
        for name in zoo.list_models():
            try:
                entries[name] = zoo.preset(name)
            except zoo.ZooError as error:
                unusable[name] = error
        # Every usable entry is listed; an unusable one is named with what is wrong, and the listing then fails.
        width = max((len(name) for name in entries), default=0)
        for name, entry in entries.items():
            print(f"{name:<{width}}  {entry['description'] or ''}")
        sys.stdout.flush()
        for name, error in unusable.items():
            print(f"error: zoo entry {name!r} is unusable: {error}", file=sys.stderr)
        if unusable:
            sys.exit(1)
    elif action == "show" and len(arguments) == 1:
        name = arguments[0]
        names = zoo.list_models()
        if name not in names:
            sys.exit(f"error: no zoo model {name!r}; the zoo has {', '.join(names) or 'none'}.")
        # The card is shown even where a fact of metadata.json is wrong (zoo list names that); it must verify.
        folder = zoo._resolve(name)
        try:
            zoo.verify(folder, (zoo.CARD_FILE,))
        except zoo.ZooError as error:
            sys.exit(f"error: {error}")
        with open(os.path.join(folder, zoo.CARD_FILE), encoding="utf-8") as file:
            print(file.read().rstrip("\n"))
    else:
        given = " ".join(argv[1:]) or "nothing"
        raise app.UsageError(f"zoo takes {_ACTIONS}; got {given}.")
