"""The paper's training schedule as a standard Keras callback, and a fit helper."""

from __future__ import annotations

import hashlib
import json

import keras
import numpy as np

from keras_sysid import validation
from keras_sysid.data.pipeline import EpochStream
from keras_sysid.devices import preferred_jit_compile
from keras_sysid.distribute import multi_worker_safe
from keras_sysid.losses import PoissonLoss, is_poisson_type
from keras_sysid.metrics import PearsonCorrelation
from keras_sysid.resume import TrainingBackup


class EarlyStoppingWithDecay(keras.callbacks.Callback):
    """Early stopping with best-weight restore, then a learning-rate step, repeated.

    When ``monitor`` has not improved for ``patience`` epochs, the best weights
    so far are restored and the learning rate is multiplied by ``factor``; after
    ``n_decays`` such steps the next plateau stops training (Klindt et al. 2017:
    divide by 3, three times). At the end the best weights are restored.

    Args:
        monitor: Quantity to watch (default ``"val_loss"``).
        mode: ``"min"`` (a loss) or ``"max"`` (e.g. ``"val_correlation"``).
        patience: Epochs without improvement before a step.
        factor: Learning-rate multiplier per step.
        n_decays: Number of steps before stopping.
        min_delta: Smallest decrease that counts as an improvement.
        verbose: Print a line at each step.

    Example:
        >>> model.fit(train, validation_data=val, epochs=200,
        ...           callbacks=[EarlyStoppingWithDecay(patience=5)])
    """

    def __init__(self, monitor="val_loss", patience=5, factor=1.0 / 3.0, n_decays=3, min_delta=0.0, verbose=1, mode="min"):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStoppingWithDecay: mode must be 'min' or 'max'; got {mode!r}.")
        self.mode = mode
        if patience < 1 or not 0.0 < factor < 1.0 or n_decays < 0:
            raise ValueError(
                f"EarlyStoppingWithDecay needs patience >= 1, 0 < factor < 1, n_decays >= 0; "
                f"got {patience}, {factor}, {n_decays}."
            )
        self.monitor = monitor
        self.patience = int(patience)
        self.factor = float(factor)
        self.n_decays = int(n_decays)
        self.min_delta = float(min_delta)
        self.verbose = int(verbose)

    def on_train_begin(self, logs=None):
        self.best = np.inf
        self.best_weights = None
        self.best_epoch = -1
        self.wait = 0
        self.decays_done = 0

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            raise ValueError(
                f"EarlyStoppingWithDecay monitors {self.monitor!r}, which fit did not log "
                f"(logged: {sorted(logs or {})}). Pass validation_data to fit."
            )
        if not np.isfinite(current):
            self.model.stop_training = True
            return
        current = float(current) if self.mode == "min" else -float(current)
        if current < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = float(current), epoch, 0
            self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        self.model.set_weights(self.best_weights)
        self.wait = 0
        if self.decays_done >= self.n_decays:
            self.model.stop_training = True
            return
        self.decays_done += 1
        learning_rate = self.model.optimizer.learning_rate
        new_rate = float(keras.ops.convert_to_numpy(learning_rate)) * self.factor
        learning_rate.assign(new_rate)
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: restored weights of epoch {self.best_epoch + 1}; learning rate -> {new_rate:.3g}")

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)

    def get_state(self) -> tuple[dict, list | None]:
        """``(counters, best_weights)``: what a resumed fit needs to go on identically."""
        counters = {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "decays_done": self.decays_done}
        return counters, self.best_weights

    def set_state(self, counters: dict, best_weights) -> None:
        """Restores a :meth:`get_state` (call after ``on_train_begin``)."""
        self.best = float(counters["best"])
        self.best_epoch = int(counters["best_epoch"])
        self.wait = int(counters["wait"])
        self.decays_done = int(counters["decays_done"])
        self.best_weights = best_weights


def stop_reason(history, max_epochs: int) -> str:
    """Why a fit ended: ``"early_stopping"`` (validation plateaued), ``"epoch_cap"`` or ``"not_finite"`` (a NaN).

    Args:
        history: The Keras ``History`` of :func:`fit_with_schedule` (resumed runs included).
        max_epochs: The fit's epoch cap.
    """
    if len(history.epoch) >= max_epochs:
        return "epoch_cap"
    last = [values[-1] for values in history.history.values() if len(values)]
    return "early_stopping" if np.all(np.isfinite(last)) else "not_finite"


def stopping_line(results: dict) -> str:
    """One line for a fit's log saying how it ended (``results``: ``stop_reason``, ``epochs``, maybe ``best_epoch``)."""
    best = f" (best epoch {results['best_epoch']})" if results.get("best_epoch") else ""
    if results.get("stop_reason") == "epoch_cap":
        return (f"stopped at the epoch cap, {results['epochs']} epochs{best}: the validation tier may still improve; "
                "a larger --max_epochs on the same run folder goes on")
    if results.get("stop_reason") == "not_finite":
        return f"stopped at epoch {results['epochs']}: the loss or a metric was not finite (NaN or inf)"
    return f"stopped early at epoch {results['epochs']}{best}: the validation tier stopped improving"


def compile_model(model: keras.Model, learning_rate: float = 1e-3, jit_compile=None, loss=None) -> keras.Model:
    """Compiles with Adam, ``loss`` and a :class:`PearsonCorrelation` metric.

    ``jit_compile``: ``True``/``False``/``"auto"`` (Keras' choice), or ``None``
    for the measured fastest on this device kind
    (:func:`~keras_sysid.devices.preferred_jit_compile`). ``loss``: a Keras
    loss of ``(batch, N)`` responses and predicted means; ``None`` for
    :class:`PoissonLoss` (e.g.
    :class:`~keras_sysid.losses.ZeroInflatedGammaLoss` for calcium responses).
    """
    if jit_compile is None:
        jit_compile = preferred_jit_compile()
    _check_loss(model, loss)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=PoissonLoss() if loss is None else loss,
        metrics=[PearsonCorrelation(model.n_neurons)],
        jit_compile=jit_compile,
    )
    return model


def fit_with_schedule(
    model: keras.Model,
    train_data,
    validation_data,
    max_epochs: int = 200,
    learning_rate: float = 1e-3,
    patience: int = 5,
    n_decays: int = 3,
    verbose: int = 1,
    callbacks=(),
    monitor: str = "val_loss",
    backup_dir=None,
    fingerprint=None,
    jit_compile=None,
    batch_size: int = 64,
    seed: int = 0,
    loss=None,
):
    """Compiles ``model`` and fits it with the paper's schedule.

    Args:
        model: A :class:`~keras_sysid.models.SystemIdentificationModel`.
        train_data: ``(images, responses)`` arrays (images may be the dict of
            inputs a model with behaviour takes), an
            :class:`~keras_sysid.data.pipeline.EpochStream` (whose epoch
            orders make resumed and distributed fits equal one uninterrupted
            single-device fit; arrays are turned into one), or anything
            ``fit`` accepts, e.g. a ``tf.data.Dataset`` of ``(images,
            responses)`` batches.
        validation_data: The same for the validation split; it drives early
            stopping.
        max_epochs: Upper bound on epochs.
        learning_rate: Initial Adam learning rate.
        patience: Epochs without validation improvement before each decay.
        n_decays: Learning-rate divisions by 3 before stopping.
        verbose: Keras verbosity (1: progress bar).
        callbacks: Extra Keras callbacks.
        monitor: What early stopping watches: ``"val_loss"`` (minimised) or
            ``"val_correlation"`` (maximised). The loss includes the penalties,
            whose growth can hide a still-improving fit on noisy data.
        backup_dir: Folder for a :class:`~keras_sysid.resume.TrainingBackup`.
            When it holds a backup, the fit continues after its last completed
            epoch (or, if that run had finished, just loads its result); with
            an :class:`~keras_sysid.data.pipeline.EpochStream` the result equals
            an uninterrupted run's.
        fingerprint: The run's key, stored with the backup; resuming a
            backup with another key raises
            :class:`~keras_sysid.resume.BackupError`. ``None`` with a
            ``backup_dir``: a key proved from the model's config and starting
            weights, the data (arrays or ``EpochStream``; a ``tf.data``
            dataset cannot be hashed and needs ``fingerprint``) and the
            settings, so a backup of another run is never restored.
            ``max_epochs`` is in no key: a finished fit that ran out of
            epochs continues when given more.
        jit_compile: ``True``, ``False``, ``"auto"`` (Keras' choice) or ``None``
            (the fastest measured on this device kind, see :mod:`keras_sysid.devices`).
        batch_size: Batch size when ``train_data`` is arrays.
        seed: Shuffle seed when ``train_data`` is arrays.
        loss: As :func:`compile_model` (default :class:`PoissonLoss`).

    Raises:
        ValueError: before any training, for arrays or streams whose shapes,
            neuron count or values do not fit the model (see
            :mod:`keras_sysid.validation`), including responses a Poisson loss
            cannot model, or a loss for another neuron count.

    Returns:
        The Keras ``History``; ``len(history.epoch)`` is the number of epochs
        run (earlier, resumed runs included).
    """
    _check_loss(model, loss)
    poisson = loss is None or is_poisson_type(loss)
    train_data = _checked_training_data(model, train_data, "training", batch_size, seed, poisson)
    validation_data = _checked_training_data(model, validation_data, "validation", batch_size, seed, poisson)
    if isinstance(validation_data, EpochStream):
        validation_data = (validation_data.images, validation_data.responses)
    compile_model(model, learning_rate, jit_compile=jit_compile, loss=loss)
    schedule = EarlyStoppingWithDecay(
        monitor=monitor, patience=patience, n_decays=n_decays, verbose=verbose,
        mode="max" if monitor.endswith("correlation") else "min",
    )
    callbacks = [schedule, keras.callbacks.TerminateOnNaN(), *callbacks]

    def run_fit(all_callbacks, initial_epoch):
        if isinstance(train_data, EpochStream):
            steps_per_epoch, data = train_data.steps_per_epoch, train_data.dataset(first_epoch=initial_epoch)
        else:
            steps_per_epoch, data = None, train_data
        with multi_worker_safe(model):
            return model.fit(
                data,
                validation_data=validation_data,
                epochs=max_epochs,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps_per_epoch,
                callbacks=all_callbacks,
                verbose=verbose,
                # Arrays are shuffled by fit; datasets shuffle themselves (make_dataset does).
                shuffle=hasattr(data, "shape"),
            )

    if backup_dir is not None and fingerprint is None:
        fingerprint = automatic_key(model, {"train": train_data, "validation": validation_data},
                                    {"learning_rate": learning_rate, "patience": patience, "n_decays": n_decays,
                                     "monitor": monitor, "batch_size": batch_size, "seed": seed,
                                     # Only another loss enters the key, so Poisson runs keep theirs.
                                     **({} if loss is None else {"loss": keras.saving.serialize_keras_object(loss)})})
    return _fit_resumably(model, run_fit, callbacks, len(callbacks), schedule, backup_dir, fingerprint, verbose,
                          max_epochs)


def automatic_key(model: keras.Model, data: dict, settings: dict) -> dict:
    """A backup key that proves the run: the model's config and starting weights, the data's content, the settings.

    Args:
        model: The model before training (its weights as initialised or adapted).
        data: ``{name: arrays, EpochStream or dict of them}``.
        settings: The fit's settings (JSON-able).

    Raises:
        ValueError: data whose content cannot be hashed (a ``tf.data`` dataset, a generator).
    """
    return {"model": model_digest(model), "data": {name: _content_digest(value, name) for name, value in data.items()},
            "settings": settings, "backend": keras.backend.backend()}


def model_digest(model: keras.Model) -> str:
    """SHA-256 (hex) of a model's config and weights: equal for the same architecture with the same weights."""
    digest = hashlib.sha256(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def _content_digest(value, name: str) -> str:
    digest = hashlib.sha256()

    def feed(item):
        if isinstance(item, EpochStream):
            feed(item.images)
            feed(item.responses)
            digest.update(repr((item.batch_size, item.seed, item.passes_per_epoch)).encode())
        elif isinstance(item, dict):
            for key in sorted(item):
                digest.update(str(key).encode())
                feed(item[key])
        elif isinstance(item, (tuple, list)):
            for part in item:
                feed(part)
        elif validation.is_array_like(item):
            array = np.ascontiguousarray(item)
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(array.tobytes())
        else:
            raise ValueError(
                f"backup_dir: the {name} data is a {type(item).__name__}, whose content cannot be hashed to prove "
                "that a backup is of this run; pass fingerprint= (a dict of everything the run depends on) or give "
                "arrays.")

    feed(value)
    return digest.hexdigest()


def _fit_resumably(model, run_fit, callbacks: list, backup_position: int, schedule, backup_dir, key,
                   verbose, max_epochs: int) -> keras.callbacks.History:
    """Calls ``run_fit(all_callbacks, initial_epoch)``, resuming from a backup in ``backup_dir`` when one is given.

    The :class:`~keras_sysid.resume.TrainingBackup` (keyed by ``key``) goes in
    at ``backup_position`` among the callbacks; a finished backup is restored
    without training, unless it ran out of fewer epochs than ``max_epochs``
    (then it continues). With a backup the History covers the whole run,
    earlier stretches included.
    """
    if backup_dir is None:
        return run_fit(callbacks, 0)
    backup = TrainingBackup(backup_dir, schedule, key)
    if backup.finished() and not backup.continues_to(max_epochs):
        backup.restore(model)
        return _history_of(model, backup.history())
    initial_epoch = backup.completed_epochs()
    if verbose and initial_epoch:
        print(f"Resuming from {backup_dir} after epoch {initial_epoch}.")
    run_fit([*callbacks[:backup_position], backup, *callbacks[backup_position:]], initial_epoch)
    return _history_of(model, backup.logs())


def _check_loss(model, loss) -> None:
    """Refuses a loss with per-neuron parameters for another neuron count than the model's."""
    n_loss, n_model = getattr(loss, "n_neurons", None), getattr(model, "n_neurons", None)
    if n_loss is not None and n_model is not None and int(n_loss) != int(n_model):
        raise ValueError(f"the loss {type(loss).__name__} has parameters for {n_loss} neurons but the model "
                         f"predicts {n_model}: fit it to this model's training responses.")


def _checked_training_data(model, data, what: str, batch_size: int, seed: int, poisson: bool = True):
    """``data`` with arrays as an :class:`EpochStream`; arrays and streams checked against ``model`` first."""
    checked = False
    if isinstance(data, (tuple, list)) and len(data) == 2:
        shape = model.input_shapes()["images"] if hasattr(model, "input_shapes") else None
        images = validation.as_model_inputs(data[0], getattr(model, "input_names", ("images",)), shape)
        if validation.is_array_like(images) or isinstance(images, dict):
            # Checked as given, so errors name the user's arrays, before the stream copies them.
            if hasattr(model, "_check_arrays"):
                model._check_arrays(images, data[1], what)
            data, checked = EpochStream(images, data[1], batch_size=batch_size, seed=seed), True
    if isinstance(data, EpochStream):
        if hasattr(model, "_check_arrays") and not checked:
            model._check_arrays(data.images, data.responses, what)
        if poisson:  # Other losses (zero-inflated gamma) judge their own targets.
            validation.check_poisson_targets(data.responses, f"{what} responses")
    elif data is not None and hasattr(model, "input_shapes"):
        validation.check_element_spec(data, model.input_shapes(), model.n_neurons, what)
    return data


def _history_of(model: keras.Model, logs: dict) -> keras.callbacks.History:
    """A ``History`` holding every epoch's logs, the finished runs' included."""
    history = keras.callbacks.History()
    history.set_model(model)
    history.history = {key: list(values) for key, values in logs.items()}
    history.epoch = list(range(len(next(iter(logs.values()), []))))
    return history


class SessionValidation(keras.callbacks.Callback):
    """Logs each session's validation correlation and their mean, ``val_correlation``, after every epoch.

    For a :class:`~keras_sysid.multisession.MultiSessionModel`, whose sessions'
    validation sets differ in size and so cannot go through ``fit``'s
    ``validation_data``. Put it before callbacks that read the logs (the
    early stopping of :func:`fit_sessions`).

    Args:
        data: ``{name: (inputs, responses)}`` validation data per session.
        batch_size: Prediction batch size.
    """

    def __init__(self, data: dict, batch_size: int = 256):
        super().__init__()
        self.data, self.batch_size = data, int(batch_size)

    def on_epoch_end(self, epoch, logs=None):
        from keras_sysid.multisession import session_correlations

        scores = session_correlations(self.model, self.data, batch_size=self.batch_size)
        if logs is not None:
            logs.update({f"val_correlation_{name}": value for name, value in scores.items()})
            logs["val_correlation"] = float(np.mean(list(scores.values())))


def fit_sessions(
    model,
    train_data: dict,
    validation_data: dict,
    max_epochs: int = 200,
    learning_rate: float = 1e-3,
    patience: int = 5,
    n_decays: int = 3,
    interleave: str = "proportional",
    batch_size: int = 64,
    seed: int = 0,
    freeze_core: bool = False,
    verbose: int = 1,
    callbacks=(),
    backup_dir=None,
    fingerprint=None,
    jit_compile=None,
):
    """Fits a :class:`~keras_sysid.multisession.MultiSessionModel` with the paper's schedule.

    Each step takes one batch of every session in ``train_data``
    (:class:`~keras_sysid.data.pipeline.SessionStream`, ``interleave``
    choosing how they share the steps); early stopping and the learning-rate
    steps watch the mean over sessions of the validation correlation
    (:class:`SessionValidation`), as :func:`fit_with_schedule` does for one.

    Args:
        model: The multi-session model (its sessions adapted to their data).
        train_data: ``{name: (inputs, responses)}`` for the sessions to train
            (all, or some: e.g. a new one with ``freeze_core``).
        validation_data: The same sessions' validation data.
        max_epochs: As :func:`fit_with_schedule`.
        learning_rate: As :func:`fit_with_schedule`.
        patience: As :func:`fit_with_schedule`.
        n_decays: As :func:`fit_with_schedule`.
        interleave: ``"proportional"`` (every trial weighs alike) or ``"even"``
            (every session weighs alike).
        batch_size: Trials per session batch (the mean over sessions, when proportional).
        seed: Shuffle seed.
        freeze_core: Train only the sessions' own parts; the core's weights
            stay and its batch normalisation runs in inference mode. Sessions
            not in ``train_data`` are frozen too. These settings stay with the
            model (and its saved file) until the next ``fit_sessions``.
        verbose: Keras verbosity (1: progress bar).
        callbacks: Extra Keras callbacks.
        backup_dir: Resume after a kill, as :func:`fit_with_schedule`.
        fingerprint: The backup's key, as :func:`fit_with_schedule`; the
            backup is also keyed by the sessions (in order), which of them
            train, ``interleave``, ``freeze_core`` and the optimisation settings.
        jit_compile: As :func:`fit_with_schedule`.

    Returns:
        The Keras ``History`` with ``loss``, ``val_correlation`` (the mean) and
        ``val_correlation_<name>`` per session.

    Raises:
        ValueError: before any training: unknown sessions, training and
            validation sessions that differ, or a session's arrays that do not
            fit its model (shape, neuron count, NaN, responses a Poisson loss
            cannot model), named by session.
    """
    from keras_sysid.data.pipeline import SessionStream
    from keras_sysid.multisession import check_session_data

    train_data = check_session_data(model, train_data, "training")
    validation_data = check_session_data(model, validation_data, "validation")
    if set(train_data) != set(validation_data):
        raise ValueError(f"Train sessions {sorted(train_data)} and validation sessions {sorted(validation_data)} differ; "
                         "early stopping needs validation data of every session trained.")
    stream = SessionStream(train_data, batch_size=batch_size, seed=seed, interleave=interleave)
    _set_trainable_parts(model, trained=set(train_data), core=not freeze_core)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss={name: PoissonLoss() for name in train_data},
        loss_weights=stream.loss_weights,
        jit_compile=preferred_jit_compile() if jit_compile is None else jit_compile,
    )
    schedule = EarlyStoppingWithDecay(monitor="val_correlation", mode="max", patience=patience, n_decays=n_decays,
                                      verbose=verbose)
    callbacks = [SessionValidation(validation_data), schedule, keras.callbacks.TerminateOnNaN(), *callbacks]
    # Weights are stored by session position, and the optimizer's state by the variables trained: a backup
    # resumes only the same sessions, in the same order, trained the same way.
    key = {"run": fingerprint, "sessions": list(model.sessions), "trained": list(train_data),
           "interleave": interleave, "freeze_core": bool(freeze_core), "batch_size": int(batch_size),
           "seed": int(seed), "learning_rate": float(learning_rate), "patience": int(patience),
           "n_decays": int(n_decays)}

    def run_fit(all_callbacks, initial_epoch):
        return model.fit(stream.dataset(first_epoch=initial_epoch), epochs=max_epochs, initial_epoch=initial_epoch,
                         steps_per_epoch=stream.steps_per_epoch, callbacks=all_callbacks, verbose=verbose,
                         shuffle=False)

    # The backup goes right after the schedule, whose state it saves, and before the caller's callbacks.
    if fingerprint is None and backup_dir is not None:
        key["run"] = automatic_key(model, {"train": train_data, "validation": validation_data}, {})
    return _fit_resumably(model, run_fit, callbacks, 2, schedule, backup_dir, key, verbose, max_epochs)


def _set_trainable_parts(model, trained: set, core: bool) -> None:
    """Freezes the shared core unless ``core``, and every session's own parts unless it is in ``trained``."""
    for name, session in model.sessions.items():
        # The session's own layers, not the session model: its trainable flag would reach the shared core.
        for part in (session.readout, session.shifter, session.modulator):
            if part is not None:
                part.trainable = name in trained
    model.core.trainable = core
