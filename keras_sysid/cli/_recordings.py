"""Reading a recording named on the command line, whatever its format."""

from keras_sysid.data.static import StaticData, load_static


def load_recording(path: str, tiers=None) -> StaticData:
    """A recording as :class:`~keras_sysid.data.StaticData`.

    Args:
        path: An ``.nwb`` file (:func:`~keras_sysid.data.load_nwb`), or a
            ``static*-preproc0`` zip or folder (:func:`~keras_sysid.data.load_static`).
        tiers: ``static*-preproc0`` only: read only these tiers' trials (default: all).

    Raises:
        StaticDataError: the recording is unreadable or incomplete.
    """
    if str(path).lower().endswith(".nwb"):
        # Imported here: only NWB files need it (and its optional reader, pynwb).
        from keras_sysid.data import load_nwb

        return load_nwb(path)
    return load_static(path, tiers=tiers)
