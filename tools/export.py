"""``keras-sysid export`` (keras_sysid/cli/export.py) run from a checkout; ``--help`` describes it."""

import sys

import keras_sysid_launcher  # starts the command before Keras is imported, so that --backend applies

if __name__ == "__main__":
    sys.exit(keras_sysid_launcher.main(["keras-sysid", "export", *sys.argv[1:]]))
