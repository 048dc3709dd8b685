"""Export to a TensorFlow SavedModel for serving (TensorFlow Serving, TF-only users).

The SavedModel holds one serving signature, ``serving_default``: ``images``
float32 ``[None, H, W, C]`` in the data's units, plus, for a model that takes
them (``model.input_names``), ``behavior`` ``[None, n_behavior]`` and
``pupil_center`` ``[None, n_pupil]`` in the data's units -> ``responses``
float32 ``[None, N]`` in the data's units. Loading it needs TensorFlow only,
not keras_sysid.

A :class:`~keras_sysid.multisession.MultiSessionModel` gets one signature per
session instead, ``serving_<session name>``, each taking that session's inputs
and giving its ``responses``; ``serving_default`` is then the first session's.
"""

from __future__ import annotations

import os

import keras


def check_writable(path: str) -> str:
    """Refuses a destination folder that cannot be written, before any work is spent on it.

    A folder is written as a new folder beside ``path`` that then takes its
    place (so ``path`` appears complete or not at all); it is made, with any
    missing folders above it, in the nearest existing folder above ``path``,
    which must therefore be a writable folder.

    Args:
        path: The folder to write (a SavedModel's, say).

    Returns:
        ``path``, normalised.

    Raises:
        ValueError: naming the folder above ``path`` that is not a folder (a file), or is not writable.
    """
    out = os.path.normpath(os.fspath(path))
    folder = os.path.dirname(os.path.abspath(out))
    while not os.path.lexists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write {out}: {folder} is not a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {out}: the folder {folder} is not writable (read-only, or not yours).")
    return out


def export_saved_model(model: keras.Model, path: str) -> None:
    """Writes ``model`` as a SavedModel with a dynamic-batch serving signature.

    The signature's inputs are :func:`input_shapes` ``(model)``, each float32
    with a free batch axis: ``images`` alone, or, for a model that takes the
    animal's state (or an ensemble with such a member), also ``behavior``
    and/or ``pupil_center``, all required.

    Args:
        model: A built model with ``image_shape`` ``(H, W, C)``: any
            :class:`~keras_sysid.models.SystemIdentificationModel` or
            :class:`~keras_sysid.ensemble.Ensemble`; or a
            :class:`~keras_sysid.multisession.MultiSessionModel`, which gets
            a signature ``serving_<name>`` per session in place of ``serving_default``.
        path: Destination folder.

    Example:
        >>> export_saved_model(model, "serving/1")
        >>> served = tf.saved_model.load("serving/1").signatures["serving_default"]
        >>> served(images=tf.zeros((2, 36, 64, 1)))["responses"].shape
        TensorShape([2, 5335])
        >>> # A behaviour-aware model: every input it takes, by name.
        >>> served(images=images, behavior=behavior, pupil_center=pupil_center)["responses"]
    """
    import tensorflow as tf  # SavedModel is TensorFlow's format; keep it at this edge.

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"SavedModel export needs the TensorFlow Keras backend; this one is {keras.backend.backend()!r}.")
    archive = keras.export.ExportArchive()
    archive.track(model)
    for signature, served_model in signatures(model).items():
        shapes = input_shapes(served_model)
        archive.add_endpoint(
            name=signature,
            fn=_serving_function(served_model, list(shapes)),
            input_signature=[tf.TensorSpec((None, *shapes[name]), tf.float32, name=name) for name in shapes],
        )
    archive.write_out(path, verbose=False)


def signatures(model: keras.Model) -> dict[str, keras.Model]:
    """``{signature name: the model it serves}`` as :func:`export_saved_model` writes them.

    ``{"serving_default": model}``, or, for a
    :class:`~keras_sysid.multisession.MultiSessionModel`, ``{"serving_<name>":
    session model}`` for each session.
    """
    from keras_sysid.multisession import MultiSessionModel

    if isinstance(model, MultiSessionModel):
        return {f"serving_{name}": session for name, session in model.sessions.items()}
    return {"serving_default": model}


def _serving_function(model: keras.Model, names: list[str]):
    """``(*inputs in the order of names) -> {"responses": ...}`` for one signature."""

    def serve(*inputs):
        given = dict(zip(names, inputs))
        return {"responses": model(given if len(names) > 1 else given["images"], training=False)}

    return serve


def input_shapes(model: keras.Model) -> dict[str, tuple[int, ...]]:
    """``{input name: shape without the batch axis}`` of everything ``model`` takes, as exported.

    ``model.input_shapes()`` where the model has it (a
    :class:`~keras_sysid.models.SystemIdentificationModel` or an
    :class:`~keras_sysid.ensemble.Ensemble`): ``{"images": (H, W, C)}`` for an
    image-only model, plus ``"behavior"`` and/or ``"pupil_center"`` for one that
    takes the animal's state. Any other model: ``{"images": image_shape or input_shape[1:]}``.
    """
    if hasattr(model, "input_shapes"):
        return {name: tuple(shape) for name, shape in model.input_shapes().items()}
    image_shape = tuple(model.image_shape) if hasattr(model, "image_shape") else tuple(model.input_shape[1:])
    return {"images": image_shape}
