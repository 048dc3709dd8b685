"""Transfer learning: a pretrained core (*what*) with a new readout (*where*) for new neurons."""

from __future__ import annotations

import keras
import numpy as np

from keras_sysid.models import READOUTS, SystemIdentificationModel, _from_spec


def with_new_readout(
    pretrained: SystemIdentificationModel,
    n_neurons: int,
    readout=None,
    freeze_core: bool = True,
    mean_responses=None,
    name: str = "transferred",
) -> SystemIdentificationModel:
    """A model for a new population that reuses ``pretrained``'s core.

    The core is copied (config and weights), so ``pretrained`` is left
    untouched. With ``freeze_core`` its weights are not trained and its batch
    normalisation runs in inference mode; otherwise the whole model is
    fine-tuned. Image standardisation is kept from ``pretrained``.

    Args:
        pretrained: A fitted model.
        n_neurons: Neurons of the new population.
        readout: A readout layer or ``{"type": ..., **kwargs}``; default: the
            same kind and settings as ``pretrained``'s readout.
        freeze_core: Train only the readout.
        mean_responses: ``(n_neurons,)`` mean responses of the new population,
            to start the readout bias at.
        name: Model name.

    Returns:
        An uncompiled model; ``compile`` and ``fit`` it as usual.

    Example:
        >>> model = with_new_readout(ks.zoo.load("mouse_v1_gaussian"), n_neurons=800)
        >>> ks.training.fit_with_schedule(model, train, validation)
    """
    core = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(pretrained.core), safe_mode=True)
    if not core.built:
        core.build((None, *pretrained.image_shape))
    core.set_weights(pretrained.core.get_weights())
    core.trainable = not freeze_core
    if readout is None:
        config = pretrained.readout.get_config()
        kind = {cls: key for key, cls in READOUTS.items()}.get(type(pretrained.readout))
        if kind is None:
            raise ValueError(f"Cannot copy a {type(pretrained.readout).__name__} readout; pass `readout`.")
        for key in ("name", "n_neurons", "trainable", "dtype"):
            config.pop(key, None)
        readout = {"type": kind, **config}
    readout_layer = _from_spec("readout", READOUTS, readout, {"n_neurons": n_neurons, "name": "readout"})
    model = SystemIdentificationModel(
        core, readout_layer, pretrained.image_shape, nonlinearity=pretrained.nonlinearity,
        image_mean=pretrained.image_mean, image_std=pretrained.image_std, name=name,
    )
    if mean_responses is not None:
        model.set_mean_responses(np.asarray(mean_responses))
    return model
