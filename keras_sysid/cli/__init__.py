"""The command line, ``keras-sysid COMMAND [flags]`` (:mod:`keras_sysid.cli.main`): one module per command.

It sits above the library and :mod:`keras_sysid.experiments`; nothing there
imports it. ``main`` and ``_backend`` run before the package is imported
(:mod:`keras_sysid_launcher`), so they import nothing of keras_sysid at their top.
"""
