"""A recipe's model for a recording: built, normalised with ``model.adapt``, set up from the data."""

from __future__ import annotations

import inspect

import keras

from keras_sysid import cores, multisession, readouts, transfer, zoo
from keras_sysid.data.recording import Recording, RecordingError
from keras_sysid.models import SystemIdentificationModel, build_model


def needs(spec: dict) -> tuple[str, ...]:
    """The inputs a spec's model takes, as ``model.input_names``: ``("images", ...)``."""
    uses_behavior = bool(spec.get("behavior_channels")) or spec.get("modulator") is not None
    return ("images",) + (("behavior",) if uses_behavior else ()) + (
        ("pupil_center",) if spec.get("shifter") is not None else ())


def build_for_recording(spec: dict, recording: Recording, seed: int = 0, name: str = "sysid_model",
                        core=None) -> keras.Model:
    """Builds (does not fit) the model of ``spec`` for a recording, ready to fit on its train tier.

    The model's normalisation (image, behaviour and pupil statistics, each
    neuron's response scale and starting rate) is learned from the train
    tier by ``model.adapt``, which ends with the readout setting itself up
    from the data (:meth:`~keras_sysid.readouts.Readout.setup_from_data`: the
    neurons' metadata, e.g. cortical coordinates, and, for a readout with
    positions, where the responses place each neuron).

    Args:
        spec: A model spec (:attr:`~keras_sysid.recipes.Recipe.model`).
        recording: Its train tier is used.
        seed: Seeds the weights (and a readout that takes a seed).
        name: Model name.
        core: A core layer to use instead of ``spec["core"]`` (a shared one).

    Raises:
        RecordingError: the recording lacks what the spec needs (behaviour,
            pupil centre, neuron metadata), named.
    """
    keras.utils.set_random_seed(seed)
    inputs = recording.model_inputs("train", needs(spec))  # raises if the recording lacks a variable
    responses = recording.responses[recording.indices("train")]
    readout = dict(spec["readout"])
    if "seed" in inspect.signature(readouts.registry()[readout["type"]]).parameters:
        readout["seed"] = seed
    # Sizes only: model.adapt sets the statistics from the train tier.
    placeholder = {name: {"mean": [0.0] * inputs[name].shape[1], "std": [1.0] * inputs[name].shape[1]}
                   for name in ("behavior", "pupil_center") if isinstance(inputs, dict) and name in inputs}
    if spec.get("pretrained") is not None:
        pretrained = load_pretrained(spec)
        if pretrained.image_shape != recording.image_shape:
            raise RecordingError(f"{recording.name}: its images are {recording.image_shape}, but the pretrained core "
                                 f"of {spec['pretrained']} takes {pretrained.image_shape}.")
        keras.utils.set_random_seed(seed)
        model = transfer.with_new_readout(pretrained, recording.n_neurons, readout=readout,
                                          freeze_core=bool(spec.get("freeze_core", True)), name=name)
    else:
        model = build_model(
            n_neurons=recording.n_neurons, image_shape=recording.image_shape,
            core=core if core is not None else spec["core"], readout=readout, name=name,
            behavior_channels=bool(spec.get("behavior_channels")), shifter=spec.get("shifter"),
            modulator=spec.get("modulator"), behavior_stats=placeholder.get("behavior"),
            pupil_stats=placeholder.get("pupil_center"),
        )
    # The images too: a pretrained core then sees the new recording's images standardised, as it saw its own.
    # The readout sets itself up from the data there too (its neurons' metadata, positions from the responses).
    try:
        model.adapt(inputs, responses, neurons=recording.neurons)
    except ValueError as error:
        raise RecordingError(f"{recording.name}: {error}") from None
    return model


def load_pretrained(spec: dict) -> SystemIdentificationModel:
    """The model whose core ``spec["pretrained"]`` names (a zoo name, zoo folder or ``.keras`` file).

    Raises:
        RecordingError: it is not an image-only single model, or the spec also asks for the animal's state.
    """
    name = spec["pretrained"]
    model = zoo.load_any(name)
    if not isinstance(model, SystemIdentificationModel) or model.takes_state:
        raise RecordingError(f"{name}: a pretrained core comes from an image-only SystemIdentificationModel; this is "
                             f"a {type(model).__name__}" + (" that takes the animal's state." if
                                                            getattr(model, "takes_state", False) else "."))
    if needs(spec) != ("images",):
        raise RecordingError(f"{name}: new neurons on a pretrained core take images only; drop the state parts.")
    return model


def build_for_recordings(spec: dict, recordings: dict, seed: int = 0, name: str = "multisession_model"):
    """A :class:`~keras_sysid.multisession.MultiSessionModel` of ``spec``, one session per recording.

    Each session is :func:`build_for_recording`'s model of its recording, on
    one shared core.

    Args:
        spec: A model spec.
        recordings: ``{session name: Recording}`` (names as
            :func:`~keras_sysid.multisession.check_session_name` allows).
        seed: Seeds the weights.
        name: Model name.

    Raises:
        RecordingError: a recording lacks what the spec needs, named.
        ValueError: recordings whose images (plus behaviour channels) differ in channels.
    """
    inputs = {session: recording.model_inputs("train", needs(spec)) for session, recording in recordings.items()}
    multisession.check_core_channels({
        session: recording.image_shape[2] + (inputs[session]["behavior"].shape[1] if spec.get("behavior_channels") else 0)
        for session, recording in recordings.items()})
    keras.utils.set_random_seed(seed)
    core = cores.get(spec["core"], name="core")
    sessions = {session: build_for_recording(spec, recording, seed=seed, name=session, core=core)
                for session, recording in recordings.items()}
    return multisession.MultiSessionModel(core, sessions, name=name)


def session_names(recordings) -> dict:
    """``{recording name: session name}``: valid session names, distinct (``ValueError`` otherwise)."""
    names = {}
    for recording in recordings:
        session = multisession.session_name_for(recording.name)
        if session in names.values():
            raise ValueError(f"Recordings {sorted(r.name for r in recordings)} give the same session name "
                             f"{session!r}; rename one.")
        names[recording.name] = session
    return names

