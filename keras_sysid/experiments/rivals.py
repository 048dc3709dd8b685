"""The paper's rival models (Klindt et al. 2017, Table 1), fitted to real data.

Every rival is a :func:`~keras_sysid.models.build_model` config in
:data:`keras_sysid.experiments.presets.RIVALS`; they differ only in core and
readout:

========================  ==========================  ==================================
name                      core                        readout
========================  ==========================  ==================================
``lnp``                   none (pixels)               fully connected, smooth, L2
``fully_connected``       paper's 3-layer CNN          fully connected + dropout + L2
                                                      (McIntosh et al. 2016)
``fixed_mask``            paper's 3-layer CNN          fixed Gaussian at the peak of the
                                                      spike-triggered envelope
                                                      (Batty et al. 2017)
``factorized``            paper's 3-layer CNN          factorized sparse (the paper;
                                                      signed features)
``gaussian``              paper's 3-layer CNN          learned Gaussian position
                                                      (Lurz et al. 2021)
========================  ==========================  ==================================

:func:`fit_rival` fits one on the train tier of a
:class:`~keras_sysid.data.Recording` with early stopping on its validation
tier, training on responses divided by each neuron's std and folding that
scale back into the model, so the result predicts the data's own units.
"""

from __future__ import annotations

import dataclasses
import inspect
import time

import keras
import numpy as np

from keras_sysid import readouts
from keras_sysid.experiments.presets import RIVALS, FitSettings
from keras_sysid.models import build_model
from keras_sysid.training import fit_with_schedule


def build_rival(name: str, data, seed: int = 0) -> keras.Model:
    """Builds (does not fit) rival ``name`` for a data set.

    Image mean and std come from the data's train tier and live inside the
    model. The readout then sets itself up from the train tier
    (:meth:`~keras_sysid.readouts.Readout.setup_from_data`): a
    readout with positions starts each neuron where the data place it.

    Args:
        name: A key of :data:`RIVALS`.
        data: A :class:`~keras_sysid.data.Recording` with a train tier.
        seed: Seed of the weight initialisation.

    Returns:
        A built, uncompiled :class:`~keras_sysid.models.SystemIdentificationModel`
        whose readout bias predicts each neuron's mean scaled response.
    """
    if name not in RIVALS:
        raise ValueError(f"Unknown rival {name!r}; choose one of {sorted(RIVALS)}.")
    keras.utils.set_random_seed(seed)
    image_mean, image_std = data.image_statistics("train")
    train_images, train_responses = data.tier("train")
    scale = data.response_scale("train")
    spec = RIVALS[name]
    readout = dict(spec["readout"])
    if "seed" in inspect.signature(readouts.registry()[readout["type"]]).parameters:
        # A readout that samples in training (Gaussian) draws from the run's seed.
        readout["seed"] = seed
    model = build_model(
        n_neurons=data.n_neurons,
        image_shape=data.image_shape,
        core=spec["core"],
        readout=readout,
        image_mean=image_mean,
        image_std=image_std,
        mean_responses=(train_responses / scale).mean(axis=0),
        name=name,
    )
    model.readout.setup_from_data(readouts.NeuronEvidence.of(model, train_images, train_responses, data.neurons))
    return model


def fit_key(name: str, data, settings: FitSettings) -> dict:
    """Everything that determines :func:`fit_rival`'s result, as JSON-ready values.

    ``{"rival", "spec" (its :data:`RIVALS` entry), "settings" (seed included),
    "data" (the data's content fingerprint,
    :meth:`~keras_sysid.data.Recording.fingerprint`), "backend"}``: not the
    data's name or path, so the same data read from its zip or its folder,
    under any name, has the same key. The Keras backend is part of it: the
    same seed draws other initial weights and batches under another backend.
    """
    if name not in RIVALS:
        raise ValueError(f"Unknown rival {name!r}; choose one of {sorted(RIVALS)}.")
    return {
        "rival": name, "spec": RIVALS[name], "settings": dataclasses.asdict(settings), "data": data.fingerprint(),
        "backend": keras.backend.backend(),
    }


def fit_rival(name: str, data, settings: FitSettings | None = None, verbose: int = 1, callbacks=(), backup_dir=None,
              jit_compile=None):
    """Builds and fits rival ``name`` on ``data``'s train tier.

    Early stopping (with learning-rate steps) watches the validation tier's
    correlation: on data this noisy the penalties' growth can outweigh the
    loss's slow fall while the fit still improves. Training targets are responses divided by
    :meth:`~keras_sysid.data.Recording.response_scale`; that scale is then set
    on the model, so it predicts responses in the data's units.

    Args:
        name: A key of :data:`RIVALS`.
        data: A :class:`~keras_sysid.data.Recording` with train and validation tiers.
        settings: Optimisation settings (default :class:`FitSettings`).
        verbose: Keras verbosity.
        callbacks: Extra Keras callbacks.
        backup_dir: Folder that keeps the fit resumable (see
            :func:`~keras_sysid.training.fit_with_schedule`); its fingerprint
            is :func:`fit_key`, so a backup of other data, another spec,
            other settings or another seed is refused, not resumed.
        jit_compile: XLA for the training step (``None``: the preferred
            setting for this device kind, :mod:`keras_sysid.devices`).

    Returns:
        ``(model, info)`` with ``info`` = ``{"epochs", "seconds", "best_val_correlation"}``
        (``seconds`` counts this call only).
    """
    settings = settings or FitSettings()
    start = time.perf_counter()
    model = build_rival(name, data, seed=settings.seed)
    scale = data.response_scale("train")
    history = fit_with_schedule(
        model,
        data.epoch_stream("train", settings.batch_size, seed=settings.seed, response_scale=scale),
        data.dataset("validation", 256, response_scale=scale),
        max_epochs=settings.max_epochs,
        learning_rate=RIVALS[name].get("learning_rate", settings.learning_rate),
        patience=settings.patience,
        n_decays=settings.n_decays,
        verbose=verbose,
        callbacks=callbacks,
        monitor="val_correlation",
        backup_dir=backup_dir,
        fingerprint=fit_key(name, data, settings) if backup_dir is not None else None,
        jit_compile=jit_compile,
    )
    model.set_response_scale(scale)
    info = {
        "epochs": len(history.epoch),
        "seconds": round(time.perf_counter() - start, 1),
        "best_val_correlation": float(np.max(history.history["val_correlation"])),
    }
    return model, info
