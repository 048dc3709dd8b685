"""``tf.data`` input pipelines over in-memory arrays.

TensorFlow is imported where a pipeline is built, not with the package, so
that the models and layers import under the JAX or PyTorch backend on a
machine without TensorFlow.
"""

from __future__ import annotations

import numpy as np

from keras_sysid import validation


def make_dataset(
    images,
    responses,
    batch_size: int = 64,
    shuffle: bool = True,
    seed: int = 0,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A batched, prefetched dataset of ``(images, responses)`` pairs.

    The arrays are checked first (shapes, matching trial counts, NaN/inf), so a
    bad array fails here with a clear ``ValueError``, not mid-epoch.

    Args:
        images: ``(n, H, W, C)`` array.
        responses: ``(n, N)`` array.
        batch_size: Pairs per batch.
        shuffle: Reshuffle the whole array every epoch, deterministically from
            ``seed``.
        seed: Shuffle seed.
        drop_remainder: Drop the last, smaller batch.

    Returns:
        A ``tf.data.Dataset`` yielding ``((b, H, W, C) float32, (b, N) float32)``.
    """
    n_images = validation.check_images(images)
    validation.check_responses(responses, n_trials=n_images)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(
        (np.asarray(images, dtype="float32"), np.asarray(responses, dtype="float32"))
    )
    if shuffle:
        dataset = dataset.shuffle(n_images, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(int(batch_size), drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


class EpochStream:
    """Shuffled training batches for any number of epochs, each epoch's order a
    pure function of ``(seed, epoch)``.

    ``Dataset.shuffle(reshuffle_each_iteration=True)`` keeps its epoch-to-epoch
    order in hidden seed state: a resumed process starts that state afresh,
    and ``tf.distribute``'s rewrite of the pipeline does not replay it as one
    device does. Here epoch ``e`` is ordered by a stateless permutation keyed
    by ``(seed, e)``, so a fit can start at any epoch and every device set sees
    the same batches. :func:`~keras_sysid.training.fit_with_schedule` takes it
    in place of a dataset.

    Args:
        images: ``(n, H, W, C)`` array, or a dict of per-trial arrays with an
            ``"images"`` entry (e.g. also ``"behavior"`` ``(n, 3)``), which the
            batches then carry as a dict.
        responses: ``(n, N)`` array.
        batch_size: Pairs per batch; each pass ends with its smaller remainder batch.
        seed: Shuffle seed.
        passes_per_epoch: Passes over the data (each in its own order) per
            Keras epoch. On a small training set a few steps make an epoch, and
            early stopping would count its patience in far fewer updates than
            on a large one; more passes per epoch even that out.

    Example:
        >>> stream = EpochStream(images, responses, batch_size=64, seed=0)
        >>> model.fit(stream.dataset(first_epoch=0), steps_per_epoch=stream.steps_per_epoch, epochs=10)
    """

    def __init__(self, images, responses, batch_size: int = 64, seed: int = 0, passes_per_epoch: int = 1):
        if isinstance(images, dict):
            if "images" not in images:
                raise ValueError(f"EpochStream: a dict of inputs needs an 'images' entry; got keys {sorted(images)}.")
            n_images = validation.check_images(images["images"])
            for name, values in images.items():
                if name != "images":
                    validation.check_trial_variables(values, np.shape(values)[-1], n_images, name=name)
            self.images = {name: np.asarray(values, dtype="float32") for name, values in images.items()}
        else:
            n_images = validation.check_images(images)
            self.images = np.asarray(images, dtype="float32")
        validation.check_responses(responses, n_trials=n_images)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
        self.responses = np.asarray(responses, dtype="float32")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        if int(passes_per_epoch) < 1:
            raise ValueError(f"passes_per_epoch must be >= 1; got {passes_per_epoch}.")
        self.passes_per_epoch = int(passes_per_epoch)
        self.steps_per_epoch = self.passes_per_epoch * -(-n_images // self.batch_size)

    def dataset(self, first_epoch: int = 0) -> tf.data.Dataset:
        """The endless stream of batches from the start of epoch ``first_epoch``.

        Returns:
            ``tf.data.Dataset`` of ``((b, H, W, C) float32, (b, N) float32)``
            (a dict of inputs in place of the images if given one);
            ``steps_per_epoch`` batches make one epoch.
        """
        import tensorflow as tf

        n_images, batch_size, seed = len(self.responses), self.batch_size, self.seed
        images = tf.nest.map_structure(tf.constant, self.images)
        responses = tf.constant(self.responses)

        def epoch_batches(epoch):
            keys = tf.random.stateless_uniform([n_images], seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
            return tf.data.Dataset.from_tensor_slices(tf.argsort(keys)).batch(batch_size)

        first_pass = int(first_epoch) * self.passes_per_epoch
        batches = tf.data.Dataset.range(first_pass, np.iinfo(np.int64).max).flat_map(epoch_batches)
        return batches.map(
            lambda rows: (tf.nest.map_structure(lambda values: tf.gather(values, rows), images),
                          tf.gather(responses, rows)),
            num_parallel_calls=tf.data.AUTOTUNE,
        ).prefetch(tf.data.AUTOTUNE)
