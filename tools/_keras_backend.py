"""``--backend`` and a quiet TensorFlow start-up for tools/build_zoo.py: import it before Keras or keras_sysid.

The commands' keras_sysid/cli/_backend.py, loaded without importing the
keras_sysid package (whose import would import Keras first).
"""

import keras_sysid_launcher

keras_sysid_launcher.load_early("keras_sysid.cli._backend")
