"""Many recordings, one core: a shared core (*what*) and one readout (*where*) per session.

The paper's argument scaled up (SENSORIUM trains one core on 7 mice): every
neuron of every scan teaches the shared core, while each session keeps what is
its own: its neurons and readout, its image standardisation, response scale
and, if it has them, behaviour parts. A session here is one
:class:`~keras_sysid.models.SystemIdentificationModel` whose core is the shared
layer, so predicting, evaluating, exporting or analysing one session is done
with the tools for single models.
"""

from __future__ import annotations

import re

import keras
import numpy as np
from keras import ops

from keras_sysid import evaluation, validation
from keras_sysid.models import SystemIdentificationModel, build_model
from keras_sysid.transfer import keras_config_without_state

# Session names become weight paths and SavedModel signature names (serving_<name>).
_SESSION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


def check_session_name(name) -> str:
    """``name`` if it can name a session (a letter, then letters, digits, ``_``), else a ``ValueError``."""
    if not isinstance(name, str) or not _SESSION_NAME.match(name):
        raise ValueError(
            f"Session name {name!r} is not usable: it names weights and a SavedModel signature, so it must start "
            "with a letter and hold only letters, digits and '_' (at most 64), e.g. 'scan_20457_5_9'."
        )
    return name


def session_name_for(label: str) -> str:
    """A valid session name made from any label (a file name, a scan id): other characters become ``_``."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", str(label))[:64]
    return check_session_name(name if name[:1].isalpha() else f"s_{name}"[:64])


@keras.saving.register_keras_serializable(package="keras_sysid")
class MultiSessionModel(keras.Model):
    """One shared core, one :class:`~keras_sysid.models.SystemIdentificationModel` per recording session.

    Each session model (``model.sessions[name]``) is a complete model whose
    ``core`` is the shared layer: it predicts, evaluates, exports and saves
    like any single model, with its own neuron count, readout, image
    standardisation, response scale and behaviour parts. The multi-session
    model maps a dict of per-session inputs to a dict of per-session
    predictions, which is what training needs: each step takes one batch from
    every session (:class:`~keras_sysid.data.pipeline.SessionStream`, fitted by
    :func:`fit_sessions`), so the core's gradient pools all of them.

    Args:
        core: The shared core layer.
        sessions: ``{name: SystemIdentificationModel}``, each built on ``core``
            (names: a letter, then letters, digits, ``_``).

    Input shape:
        ``{name: inputs of session name}`` for any subset of the sessions:
        ``(batch_name, H, W, C)`` images, or the session's dict of inputs.

    Output shape:
        ``{name: (batch_name, n_neurons of session name)}``.

    Example:
        >>> model = build_multisession_model({"a": {"n_neurons": 300, "image_shape": (36, 64)},
        ...                                   "b": {"n_neurons": 500, "image_shape": (36, 64)}})
        >>> model.sessions["b"].predict(images_b).shape
        (n, 500)
    """

    def __init__(self, core: keras.layers.Layer, sessions: dict, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(sessions, dict) or not sessions:
            raise ValueError(f"MultiSessionModel needs a non-empty dict of session models; got {type(sessions).__name__}.")
        for name, session in sessions.items():
            check_session_name(name)
            if not isinstance(session, SystemIdentificationModel):
                raise ValueError(f"Session {name!r} must be a SystemIdentificationModel; got {type(session).__name__}.")
            if session.core is not core:
                raise ValueError(f"Session {name!r} has its own core; every session must be built on the shared core.")
        self.core = core
        self.sessions = dict(sessions)
        self.built = True

    @property
    def session_names(self) -> tuple[str, ...]:
        return tuple(self.sessions)

    @property
    def n_neurons(self) -> dict[str, int]:
        """``{session: neuron count}``."""
        return {name: session.n_neurons for name, session in self.sessions.items()}

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            raise ValueError(
                f"A MultiSessionModel takes a dict {{session name: inputs}}; got {type(inputs).__name__}. To predict "
                f"one session, use model.sessions[name].predict(images) (sessions: {list(self.sessions)})."
            )
        unknown = [name for name in inputs if name not in self.sessions]
        if unknown:
            raise ValueError(f"Unknown sessions {unknown}; this model has {list(self.sessions)}.")
        return {name: self.sessions[name](x, training=training) for name, x in inputs.items()}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled per-session losses, each on responses divided by that session's scale, plus penalties."""
        if isinstance(y, dict) and isinstance(y_pred, dict):
            # As SystemIdentificationModel.compute_loss, per session, in float32.
            scales = {name: ops.cast(self.sessions[name].response_scale, "float32") for name in y}
            y = {name: ops.cast(value, "float32") / scales[name] for name, value in y.items()}
            y_pred = {name: ops.cast(value, "float32") / scales[name] for name, value in y_pred.items()}
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)

    # -- the single model's input checks, per session ----------------------------

    def _check_sessions(self, x, y, what: str) -> None:
        """Checks dict-of-arrays inputs (and responses) session by session, as each session model checks its own."""
        if not isinstance(x, dict):
            if validation.is_array_like(x):
                raise ValueError(f"A MultiSessionModel takes a dict {{session name: inputs}} for {what}; got one array. "
                                 f"To use one session, call model.sessions[name] (sessions: {list(self.sessions)}).")
            return  # a dataset: its elements are checked by the session models as they come
        self._check_known(x)
        if y is not None and (not isinstance(y, dict) or set(y) != set(x)):
            given = sorted(y) if isinstance(y, dict) else type(y).__name__
            raise ValueError(f"{what} responses must be a dict with the inputs' sessions {sorted(x)}; got {given}.")
        for name, inputs in x.items():
            if validation.is_array_like(inputs) or isinstance(inputs, dict):
                self.sessions[name]._check_arrays(inputs, None if y is None else y[name], f"session {name!r} {what}")

    def fit(self, x=None, y=None, *args, **kwargs):
        self._check_sessions(x, y, "training")
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check_sessions(x, y, "evaluation")
        return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_sessions(x, None, "prediction")
        return super().predict(x, *args, **kwargs)

    def predict_sessions(self, inputs: dict, batch_size: int = 256, verbose: int = 0) -> dict:
        """``{name: (n_name, N_name) predictions}`` for ``{name: inputs}``, sessions of any sizes."""
        self._check_known(inputs)
        return {name: self.sessions[name].predict(x, batch_size=batch_size, verbose=verbose) for name, x in inputs.items()}

    def adapt(self, data: dict) -> "MultiSessionModel":
        """Learns each session's normalisation from its training data (:meth:`SystemIdentificationModel.adapt`).

        Args:
            data: ``{name: (inputs, responses)}``: each session's training
                images (or dict of inputs) and ``(T, N)`` responses.

        Returns:
            The model itself.
        """
        self._check_known(data)
        for name, (inputs, responses) in data.items():
            self.sessions[name].adapt(inputs, responses)
        return self

    def add_session(self, name: str, n_neurons: int, image_shape=None, readout=None, like: str | None = None,
                    mean_responses=None, **settings) -> SystemIdentificationModel:
        """Adds a session for new neurons, on the shared core; returns its model.

        The new readout is, unless given, of the same kind and settings as
        session ``like``'s (default: the first session), with new weights (as
        :func:`keras_sysid.transfer.with_new_readout` makes one). Train it with
        :func:`fit_sessions` ``(model, {name: ...}, ..., freeze_core=True)``
        for the readout alone, or with ``freeze_core=False`` (and any other
        sessions) to fine-tune the core too.

        Args:
            name: The new session's name.
            n_neurons: Its neuron count.
            image_shape: ``(H, W)`` or ``(H, W, C)``; default: ``like``'s.
            readout: A readout layer or ``{"type": ..., **kwargs}``.
            like: The session whose readout settings and image shape to copy.
            mean_responses: ``(n_neurons,)`` mean responses, for the readout's
                starting bias (or call ``adapt`` on the session model).
            **settings: Other :func:`~keras_sysid.models.build_model`
                arguments of the new session: ``behavior_channels``,
                ``shifter``, ``modulator`` and their statistics (none by default).

        Raises:
            ValueError: a bad or taken name, or a session whose core input has
                other channels than the shared core's (image plus behaviour channels).

        Example:
            >>> session = model.add_session("scan3", n_neurons=800)
            >>> session.adapt(images, responses)   # its own image statistics and response scale
            >>> fit_sessions(model, {"scan3": (images, responses)}, {"scan3": validation}, freeze_core=True)
        """
        check_session_name(name)
        if name in self.sessions:
            raise ValueError(f"Session {name!r} exists already; sessions: {list(self.sessions)}.")
        template = self.sessions[like if like is not None else self.session_names[0]]
        image_shape = tuple(image_shape if image_shape is not None else template.image_shape)
        check_core_channels({template.name: _core_channels(template.image_shape, template.behavior_channels,
                                                            template.behavior_stats),
                              name: _core_channels(image_shape, settings.get("behavior_channels"),
                                                   settings.get("behavior_stats"))})
        session = build_model(
            n_neurons, image_shape, core=self.core,
            readout=readout if readout is not None else keras_config_without_state(template.readout),
            nonlinearity=template.nonlinearity, mean_responses=mean_responses, name=name, **settings,
        )
        self.sessions[name] = session
        # Compiled steps know only the old sessions.
        self.train_function = self.test_function = self.predict_function = None
        return session

    def _check_known(self, data: dict) -> None:
        if not isinstance(data, dict):
            raise ValueError(f"Give a dict {{session name: ...}}; got {type(data).__name__}.")
        unknown = [name for name in data if name not in self.sessions]
        if unknown:
            raise ValueError(f"Unknown sessions {unknown}; this model has {list(self.sessions)}.")

    def get_config(self):
        sessions = {}
        for name, session in self.sessions.items():
            config = session.get_config()
            config.pop("core")  # stored once, for all sessions
            sessions[name] = config
        return {"name": self.name, "core": keras.saving.serialize_keras_object(self.core), "sessions": sessions}

    @classmethod
    def from_config(cls, config):
        core = keras.saving.deserialize_keras_object(config["core"])
        sessions = {name: SystemIdentificationModel.from_config({**session, "core": core})
                    for name, session in config["sessions"].items()}
        return cls(core, sessions, name=config.get("name"))


def build_multisession_model(sessions: dict, core=None, readout=None, nonlinearity: str = "softplus",
                             name: str = "multisession_model") -> MultiSessionModel:
    """Builds a shared core and one model per session from small configs.

    Args:
        sessions: ``{name: settings}``; each ``settings`` holds ``n_neurons``
            and ``image_shape`` and may hold any other
            :func:`~keras_sysid.models.build_model` argument but ``core``
            (its own ``readout``, ``image_mean``, ``behavior_channels``,
            ``shifter``, ``modulator``, their statistics...).
        core: The shared core: a layer, a type name or ``{"type": ..., **kwargs}``
            (``keras_sysid.cores.registry()``). Default: ``StackedConv2DCore``.
        readout: Every session's readout settings unless it gives its own
            (``n_neurons`` is filled in per session). Default: factorized.
        nonlinearity: Output nonlinearity of every session.
        name: Model name.

    Returns:
        A built, uncompiled :class:`MultiSessionModel`.

    Raises:
        ValueError: a bad session name, missing ``n_neurons`` / ``image_shape``,
            or sessions whose core inputs have different channel counts.
    """
    from keras_sysid import cores

    if not isinstance(sessions, dict) or not sessions:
        raise ValueError("build_multisession_model needs a non-empty dict {session name: {'n_neurons', 'image_shape'}}.")
    shared_core = cores.get(core if core is not None else "stacked_conv2d", name="core")
    models, channels = {}, {}
    for session_name, settings in sessions.items():
        check_session_name(session_name)
        settings = dict(settings)
        missing = [key for key in ("n_neurons", "image_shape") if key not in settings]
        if missing or "core" in settings:
            raise ValueError(f"Session {session_name!r}: settings need n_neurons and image_shape and no core "
                             f"(it is shared); got {sorted(settings)}.")
        channels[session_name] = _core_channels(settings["image_shape"], settings.get("behavior_channels"),
                                                settings.get("behavior_stats"))
        check_core_channels(channels)
        settings.setdefault("readout", readout)
        settings.setdefault("nonlinearity", nonlinearity)
        models[session_name] = build_model(core=shared_core, name=session_name, **settings)
    return MultiSessionModel(shared_core, models, name=name)


def _core_channels(image_shape, behavior_channels, behavior_stats) -> int:
    """Channels of a session's core input: the image's, plus one per behaviour variable fed as a channel."""
    image_shape = tuple(image_shape)
    n_behavior = len((behavior_stats or {}).get("mean", [])) if behavior_channels else 0
    return (image_shape[2] if len(image_shape) == 3 else 1) + n_behavior


def check_core_channels(channels: dict) -> None:
    """A ``ValueError`` unless every session's core input (``{name: channels}``) has the same channel count."""
    if len(set(channels.values())) > 1:
        raise ValueError(f"The shared core needs the same input channels in every session; got {channels} "
                         "(image channels plus behaviour channels).")


def evaluate_sessions(model: MultiSessionModel, datasets: dict, tier: str = "test", verbose: int = 0) -> dict:
    """Scores each session on its data's ``tier`` (:func:`keras_sysid.evaluation.evaluate_model`).

    Args:
        model: A fitted :class:`MultiSessionModel`.
        datasets: ``{name: Recording}`` for any of its sessions.
        tier: A tier with repeated images.

    Returns:
        ``{name: RepeatScores}``.
    """
    model._check_known(datasets)
    return {name: evaluation.evaluate_model(model.sessions[name], data, tier, verbose=verbose)
            for name, data in datasets.items()}


def session_correlations(model: MultiSessionModel, data: dict, batch_size: int = 256) -> dict[str, float]:
    """``{name: mean over neurons of the correlation of prediction and response}`` for ``{name: (inputs, responses)}``."""
    from keras_sysid.metrics import correlation

    predictions = model.predict_sessions({name: inputs for name, (inputs, _) in data.items()}, batch_size=batch_size)
    return {name: float(np.mean(correlation(np.asarray(data[name][1]), predictions[name]))) for name in data}


def check_session_data(model: MultiSessionModel, data, what: str) -> dict:
    """``{name: (inputs, responses)}``, each checked against its session model before any work.

    Returns the pairs with the inputs as the session model takes them (a list
    of arrays becomes its dict of inputs).
    """
    model._check_known(data)
    checked = {}
    for name, pair in data.items():
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"{what} data of session {name!r} must be an (inputs, responses) pair; got {type(pair).__name__}.")
        session = model.sessions[name]
        inputs = validation.as_model_inputs(pair[0], session.input_names, session.image_shape)
        session._check_arrays(inputs, pair[1], f"session {name!r} {what}")
        validation.check_poisson_targets(pair[1], f"session {name!r} {what} responses")
        checked[name] = (inputs, pair[1])
    return checked


__all__ = [
    "MultiSessionModel",
    "build_multisession_model",
    "check_core_channels",
    "check_session_data",
    "check_session_name",
    "evaluate_sessions",
    "session_correlations",
    "session_name_for",
]
