"""Reading a recording named on the command line, whatever its format, and the flags of the NWB reader.

The commands that read recordings adopt this module's flags
(``flags.adopt_module_key_flags(_recordings)``), so that their ``--help`` lists them.
"""

import re

from absl import app, flags

from keras_sysid import data
from keras_sysid.data import Recording, RecordingError, registered_formats

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

# The NWB reader's arguments that a flag sets: load_nwb(responses=...) is --nwb_responses.
NWB_FLAGS = {flag.name[len("nwb_"):]: flag.name for flag in (
    _NWB_RESPONSES, _NWB_STIMULUS, _NWB_WINDOW, _NWB_IMAGE_SIZE, _NWB_BEHAVIOR, _NWB_PUPIL_CENTER)}
# ``name=`` in a message, then the value it shows, if any: a quoted string, a tuple or list, or a bare word.
_ARGUMENT = re.compile(
    r"(?<![\w.\-])(?P<name>" + "|".join(NWB_FLAGS) + r")="
    r"(?P<value>'[^']*'|\"[^\"]*\"|\([^()]*\)|\[[^\[\]]*\]|[^\s,;()\[\]]+)?"
)


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


def flag_names(message: str) -> str:
    """``message`` (from the NWB reader) with its Python arguments named as the commands' flags.

    ``responses=`` becomes ``--nwb_responses``, ``responses='dff'`` becomes
    ``--nwb_responses=dff``, ``window=(0.1, 0.35)`` becomes ``--nwb_window=0.1,0.35``;
    arguments without a flag (``images=``, ``index_column=``, ``tier_rule=``...) stay.
    """

    def as_flag(match):
        flag = "--" + NWB_FLAGS[match.group("name")]
        value = match.group("value")
        if value is None:
            return flag
        if value[0] in "([":  # a tuple or list: the flag's comma-separated form
            value = ",".join(part.strip().strip("'\"") for part in value[1:-1].split(",") if part.strip())
        return f"{flag}={value}"

    return _ARGUMENT.sub(as_flag, message)


def _format_of(path) -> str | None:
    """The name of the registered format that reads ``path`` (as :func:`keras_sysid.data.load` picks it)."""
    return next((name for name, reader in registered_formats().items() if reader.claims(path)), None)


def load_recording(path: str, tiers=None, nwb_options: dict | None = None) -> Recording:
    """A recording as :class:`~keras_sysid.data.Recording`, read by :func:`keras_sysid.data.load`.

    Prints nothing (the commands print :func:`describe`).

    Args:
        path: Any source :func:`keras_sysid.data.load` reads: an ``.nwb``
            file, a ``static*-preproc0`` zip or folder...
        tiers: ``static*-preproc0`` only: read only these tiers' trials (default: all).
        nwb_options: ``load_nwb`` arguments, used for an NWB file only (the
            commands pass :func:`nwb_options`, their ``--nwb_*`` flags).

    Raises:
        RecordingError: the recording is unreadable or incomplete; for an NWB
            file the message names the ``--nwb_*`` flags (:func:`flag_names`).
        ValueError: for an NWB file, a bad reader argument (named as its flag).
    """
    kind = _format_of(path)
    if kind == "nwb":
        options = dict(nwb_options or {})
    elif kind == "static" and tiers is not None:
        options = {"tiers": tiers}
    else:
        options = {}
    try:
        return data.load(path, **options)
    except (RecordingError, ValueError) as error:
        if kind != "nwb":
            raise
        raise type(error)(flag_names(str(error))) from None


def _empty(value) -> bool:
    return value is None or (isinstance(value, (str, list, tuple, dict)) and not value)


def _value_text(key: str, value) -> str:
    """``value`` for people: numbers with :g, sequences comma-separated (as the flags take them), a window in s."""
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, dict):
        return ", ".join(f"{k} {_value_text(str(k), v)}" for k, v in value.items() if not _empty(v))
    if isinstance(value, bool) or not isinstance(value, (int, float, list, tuple)):
        return str(value)
    values = value if isinstance(value, (list, tuple)) else [value]
    text = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return f"{text} s" if numeric and "window" in key else text


def describe(recording: Recording, width: int = 100) -> str:
    """What the reader chose for ``recording`` (its ``provenance``), as one or two short lines; ``""`` if nothing.

    E.g. ``  chosen: responses processing/ophys/DfOverF/dff; stimulus
    stimulus/presentation/natural_scenes; window 0.1,0.35 s``: items go on the
    first line while it stays within ``width`` characters, the rest on a second.
    """
    provenance = getattr(recording, "provenance", None) or {}
    items = [f"{str(key).replace('_', ' ')} {_value_text(str(key), value)}".rstrip()
             for key, value in provenance.items() if not _empty(value)]
    if not items:
        return ""
    first, rest = "  chosen: " + items[0], items[1:]
    while rest and len(first) + 2 + len(rest[0]) <= width:
        first += "; " + rest.pop(0)
    return first + ("\n  " + " " * len("chosen: ") + "; ".join(rest) if rest else "")
