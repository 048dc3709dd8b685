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


def with_dtype_policy(config, policy_name: str):
    """A serialised Keras config with every stored dtype policy replaced by ``policy_name``.

    Args:
        config: A config as ``keras.saving.serialize_keras_object`` writes it
            (nested dicts and lists).
        policy_name: A dtype policy name, e.g. ``"float32"`` or ``"mixed_bfloat16"``.

    Returns:
        A new config; ``config`` is left untouched.
    """
    if isinstance(config, dict):
        if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            return policy_name
        return {key: with_dtype_policy(value, policy_name) for key, value in config.items()}
    if isinstance(config, list):
        return [with_dtype_policy(value, policy_name) for value in config]
    return config
