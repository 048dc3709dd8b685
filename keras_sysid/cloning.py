"""Copies of Keras layers and models through their configs (never through pickle)."""

from __future__ import annotations

from collections.abc import Callable

import keras


def clone(obj, copy_weights: bool = True, edit_config: Callable[[dict], dict] | None = None, input_shape=None):
    """A new layer or model from ``obj``'s Keras config, deserialised in safe mode.

    Args:
        obj: A built Keras layer or model.
        copy_weights: Give the copy ``obj``'s weights (otherwise it keeps its
            own newly initialised ones).
        edit_config: Called with the serialised config (a dict, as
            ``keras.saving.serialize_keras_object`` writes it) and returns the
            config to build from, e.g. to rename the copy or change its dtype
            policy.
        input_shape: Builds the copy for this shape if deserialising left it
            unbuilt (a bare layer, unlike a model, does not build itself).

    Returns:
        The copy; ``obj`` is left untouched.
    """
    config = keras.saving.serialize_keras_object(obj)
    if edit_config is not None:
        config = edit_config(config)
    copy = keras.saving.deserialize_keras_object(config, safe_mode=True)
    if input_shape is not None and not copy.built:
        copy.build(tuple(input_shape))
    if copy_weights:
        copy.set_weights(obj.get_weights())
    return copy
