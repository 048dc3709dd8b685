"""Export to a TensorFlow SavedModel for serving (TensorFlow Serving, TF-only users).

The SavedModel holds one serving signature, ``serving_default``: ``images``
float32 ``[None, H, W, C]`` in the data's units, plus, for a model that takes
them (``model.input_names``), ``behavior`` ``[None, n_behavior]`` and
``pupil_center`` ``[None, n_pupil]`` in the data's units -> ``responses``
float32 ``[None, N]`` in the data's units. Loading it needs TensorFlow only,
not keras_sysid.
"""

from __future__ import annotations

import keras


def export_saved_model(model: keras.Model, path: str) -> None:
    """Writes ``model`` as a SavedModel with a dynamic-batch serving signature.

    Args:
        model: A built model with ``image_shape`` ``(H, W, C)`` (any
            :class:`~keras_sysid.models.SystemIdentificationModel`).
        path: Destination folder.

    Example:
        >>> export_saved_model(model, "serving/1")
        >>> served = tf.saved_model.load("serving/1").signatures["serving_default"]
        >>> served(images=tf.zeros((2, 36, 64, 1)))["responses"].shape
        TensorShape([2, 5335])
    """
    import tensorflow as tf  # SavedModel is TensorFlow's format; keep it at this edge.

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"SavedModel export needs the TensorFlow Keras backend; this one is {keras.backend.backend()!r}.")
    shapes = input_shapes(model)
    names = list(shapes)
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(*inputs):
        given = dict(zip(names, inputs))
        return {"responses": model(given if len(names) > 1 else given["images"], training=False)}

    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec((None, *shapes[name]), tf.float32, name=name) for name in names],
    )
    archive.write_out(path, verbose=False)


def input_shapes(model: keras.Model) -> dict[str, tuple[int, ...]]:
    """``{input name: shape without the batch axis}`` of everything ``model`` takes.

    ``{"images": (H, W, C)}`` for an image-only model; behaviour-aware models
    and ensembles of them add ``"behavior"`` and ``"pupil_center"``, sized
    by the train-tier statistics they were built with.
    """
    image_shape = tuple(model.image_shape) if hasattr(model, "image_shape") else tuple(model.input_shape[1:])
    shapes = {"images": image_shape}
    members = getattr(model, "members", [model])
    for name, stats in (("behavior", "behavior_stats"), ("pupil_center", "pupil_stats")):
        if name in getattr(model, "input_names", ("images",)):
            sizes = {len(getattr(m, stats)["mean"]) for m in members if getattr(m, stats, None) is not None}
            if len(sizes) != 1:
                raise ValueError(f"The model's members disagree on the number of {name} variables: {sorted(sizes)}.")
            shapes[name] = (sizes.pop(),)
    return shapes
