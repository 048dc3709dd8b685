"""``keras-sysid transfer`` (keras_sysid/cli/transfer.py) run from a checkout; ``--help`` describes it."""

import sys

import keras_sysid_launcher  # starts the command before Keras is imported, so that --backend applies

if __name__ == "__main__":
    sys.exit(keras_sysid_launcher.main(["keras-sysid", "transfer", *sys.argv[1:]]))
