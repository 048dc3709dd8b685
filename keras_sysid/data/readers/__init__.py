"""One reader per recording format, each registered with :func:`keras_sysid.data.formats.register_format`.

:func:`keras_sysid.data.load` imports them on first use and picks the one that
claims its source. A new format is one module here.
"""
