"""Reading a recording named on the command line, whatever its format, and the flags of the NWB reader."""

from absl import app, flags

from keras_sysid.data import Recording, load_static

_NWB_RESPONSES = flags.DEFINE_string(
    "nwb_responses", None, "NWB: the RoiResponseSeries to read (a path or its tail); default the only one.")
_NWB_STIMULUS = flags.DEFINE_string(
    "nwb_stimulus", None, "NWB: the stimulus IndexSeries, ImageSeries or TimeIntervals; default the only one.")
_NWB_WINDOW = flags.DEFINE_list(
    "nwb_window", None,
    "NWB: START,STOP in seconds after each onset over which each ROI's trace is averaged; default from the "
    "presentation period and the imaging rate (keras_sysid.data.load_nwb).")
_NWB_IMAGE_SIZE = flags.DEFINE_list("nwb_image_size", None, "NWB: HEIGHT,WIDTH to resize the images to.")
_NWB_BEHAVIOR = flags.DEFINE_list("nwb_behavior", None, "NWB: TimeSeries averaged per trial as behaviour.")
_NWB_PUPIL_CENTER = flags.DEFINE_string("nwb_pupil_center", None, "NWB: the two-column pupil position series.")


def nwb_options() -> dict:
    """The ``--nwb_*`` flags as :func:`~keras_sysid.data.load_nwb` arguments (only those given)."""
    options = {"responses": _NWB_RESPONSES.value, "stimulus": _NWB_STIMULUS.value,
               "behavior": _NWB_BEHAVIOR.value, "pupil_center": _NWB_PUPIL_CENTER.value}
    for name, flag, kind, example in (("window", _NWB_WINDOW, float, "0.1,0.35"),
                                      ("image_size", _NWB_IMAGE_SIZE, int, "36,64")):
        if flag.value is not None:
            try:
                first, second = (kind(value) for value in flag.value)
            except ValueError:
                raise app.UsageError(f"--{flag.name} takes two numbers, e.g. {example}; got {flag.value}.") from None
            if not first < second if name == "window" else min(first, second) < 1:
                raise app.UsageError(f"--{flag.name} {','.join(flag.value)}: "
                                     + ("the start must come before the stop." if name == "window"
                                        else "both sizes must be at least 1."))
            options[name] = (first, second)
    return {name: value for name, value in options.items() if value is not None}


def load_recording(path: str, tiers=None, nwb_options: dict | None = None) -> Recording:
    """A recording as :class:`~keras_sysid.data.Recording`.

    Args:
        path: An ``.nwb`` file (:func:`~keras_sysid.data.load_nwb`), or a
            ``static*-preproc0`` zip or folder (:func:`~keras_sysid.data.load_static`).
        tiers: ``static*-preproc0`` only: read only these tiers' trials (default: all).
        nwb_options: ``load_nwb`` arguments for an NWB file (the commands pass
            :func:`nwb_options`, their ``--nwb_*`` flags).

    Raises:
        RecordingError: the recording is unreadable or incomplete.
    """
    if str(path).lower().endswith(".nwb"):
        # Imported here: only NWB files need it (and its optional reader, pynwb).
        from keras_sysid.data import load_nwb

        return load_nwb(path, **(nwb_options or {}))
    return load_static(path, tiers=tiers)
