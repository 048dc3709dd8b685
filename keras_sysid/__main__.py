"""``python -m keras_sysid COMMAND [flags]``: the ``keras-sysid`` console script.

Python imports the package (and so Keras and TensorFlow) before this module:
TensorFlow's start-up messages may show, and ``--backend`` other than Keras'
starts the program again (:mod:`keras_sysid.cli._backend`). ``keras-sysid``
starts before the package and has neither cost.
"""

import sys

from keras_sysid.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
