"""Transfer learning: a pretrained core (*what*) with a new readout (*where*) for new neurons."""

from __future__ import annotations

import keras
import numpy as np

from keras_sysid import readouts, validation
from keras_sysid.cloning import clone
from keras_sysid.models import SystemIdentificationModel
from keras_sysid.positions import feature_regression_positions


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
    core = clone(pretrained.core, input_shape=(None, *pretrained.image_shape))
    core.trainable = not freeze_core
    if readout is None:
        # The same class and settings, from its Keras config; a new size and new weights.
        readout = keras_config_without_state(pretrained.readout)
    readout_layer = readouts.get(readout, n_neurons=n_neurons, name="readout")
    model = SystemIdentificationModel(
        core, readout_layer, pretrained.image_shape, nonlinearity=pretrained.nonlinearity,
        image_mean=pretrained.image_mean, image_std=pretrained.image_std, name=name,
    )
    if mean_responses is not None:
        model.set_mean_responses(np.asarray(mean_responses))
    return model


def locate_new_neurons(
    model: SystemIdentificationModel, images, responses, ridge: float = 1.0, verbose: int = 1
) -> np.ndarray:
    """Where new neurons sit on ``model``'s core grid, found with its core.

    Runs the (pretrained) core on the images and, at every grid position,
    scores a ridge regression of each neuron's responses on the core's
    features there (:func:`~keras_sysid.positions.feature_regression_positions`).
    The core already knows *what* the cell types compute, so only *where*
    is left to find, from ``C`` weights per position instead of a pixel map.

    Args:
        model: A model whose core is pretrained.
        images: ``(T, *image_shape)`` training images in the data's units.
        responses: ``(T, N)`` the new neurons' responses to them.
        ridge: Ridge penalty per image (see ``feature_regression_positions``).
        verbose: 1: a line saying what runs, then a progress bar over grid
            positions (800 neurons on a mouse V1 core take about 1.5 minutes
            on 2 cores); 0: silent.

    Returns:
        ``(N, 2)`` (row, column) on the core's grid, for
        ``FixedMaskReadout.set_positions`` or ``FactorizedReadout.initialize_mask_at``.

    Example:
        >>> new = with_new_readout(ks.zoo.load("synthetic_cnn_factorized"), 100, readout={"type": "fixed_mask"})
        >>> new.readout.set_positions(locate_new_neurons(new, images, responses))
    """
    validation.check_responses(responses, n_trials=len(images), name="new neurons' responses")
    if verbose:
        print(f"locate_new_neurons: core features of {len(images)} images, then a ridge regression per grid position")
    on_grid, _ = feature_regression_positions(model.feature_maps(images), responses, ridge=ridge, verbose=verbose)
    return on_grid


def fresh_copy(model: SystemIdentificationModel, name: str = "fresh") -> SystemIdentificationModel:
    """A model of the same architecture as ``model`` with newly initialised weights."""
    def renamed(config):
        config["config"]["name"] = name
        return config

    return clone(model, copy_weights=False, edit_config=renamed)


def keras_config_without_state(layer) -> dict:
    """``layer``'s Keras config without its name, trainability and dtype, to make another like it."""
    config = keras.saving.serialize_keras_object(layer)
    # Without its build config the copy is built by the model it joins, for its own size.
    config.pop("build_config", None)
    for key in ("name", "trainable", "dtype"):
        config["config"].pop(key, None)
    return config
