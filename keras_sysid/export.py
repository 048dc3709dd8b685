"""Export to a TensorFlow SavedModel for serving (TensorFlow Serving, TF-only users).

The SavedModel holds one serving signature, ``serving_default``: ``images``
float32 ``[None, H, W, C]`` in the data's units -> ``responses`` float32
``[None, N]`` in the data's units. Loading it needs TensorFlow only, not
keras_sysid.
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
    image_shape = tuple(model.image_shape) if hasattr(model, "image_shape") else tuple(model.input_shape[1:])
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images):
        return {"responses": model(images, training=False)}

    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec((None, *image_shape), tf.float32, name="images")],
    )
    archive.write_out(path, verbose=False)
