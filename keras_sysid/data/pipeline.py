"""``tf.data`` input pipelines over in-memory arrays."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

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
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.asarray(images, dtype="float32"), np.asarray(responses, dtype="float32"))
    )
    if shuffle:
        dataset = dataset.shuffle(n_images, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(int(batch_size), drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
