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


INTERLEAVE_MODES = ("proportional", "even")


class SessionStream:
    """Training batches of several recording sessions: each step one batch of every session.

    For a :class:`~keras_sysid.multisession.MultiSessionModel`: each session's
    batch holds only its own trials, and one step takes one from every
    session, so one optimiser step pools them all (the shared core's gradient
    sums over sessions), as neuralpredictors' multi-session training does.
    How the sessions share the steps:

    - ``"proportional"``: session ``k``'s batches hold about
      ``batch_size * K * n_k / sum(n)`` trials and its loss weighs ``K * n_k /
      sum(n)`` (:attr:`loss_weights`), so every trial counts alike, as if the
      sessions were pooled; an epoch is about one pass over every session.
      The penalties of a session's own readout are not weighted, so against
      its data they weigh ``1 / (K * n_k / sum(n))`` times what they weigh in
      a fit of that session alone: more for small sessions, less for large.
    - ``"even"``: every session's batches hold ``batch_size`` trials and its
      loss weighs 1, so every session counts alike, and each readout's
      penalty weighs against its data as in a fit of its session alone; an
      epoch is one pass over the largest session, smaller ones cycling.

    Batches are gathered in Python (``tf.data.Dataset.from_generator``), fine
    for the in-memory recordings of this field; unlike
    :class:`EpochStream` it is not made for ``tf.distribute``.

    Each session's order is a seeded permutation per pass, a pure function of
    ``(seed, session index, pass)``, so a fit can resume at any epoch and see
    the batches an uninterrupted one would.

    Args:
        data: ``{name: (inputs, responses)}``: ``(n, H, W, C)`` images (or a
            dict of per-trial inputs with ``"images"``) and ``(n, N)`` responses.
        batch_size: Trials per session batch (``"even"``), or the mean over
            sessions (``"proportional"``).
        seed: Shuffle seed.
        interleave: ``"proportional"`` or ``"even"``.

    Example:
        >>> stream = SessionStream({"a": (xa, ya), "b": (xb, yb)}, batch_size=64)
        >>> model.fit(stream.dataset(), steps_per_epoch=stream.steps_per_epoch, epochs=10)
    """

    def __init__(self, data: dict, batch_size: int = 64, seed: int = 0, interleave: str = "proportional"):
        if interleave not in INTERLEAVE_MODES:
            raise ValueError(f"interleave must be one of {INTERLEAVE_MODES}; got {interleave!r}.")
        if not isinstance(data, dict) or not data:
            raise ValueError("SessionStream needs a non-empty dict {session name: (inputs, responses)}.")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
        # EpochStream checks and holds each session's arrays (float32).
        self.streams = {name: EpochStream(inputs, responses, batch_size=batch_size, seed=seed)
                        for name, (inputs, responses) in data.items()}
        self.interleave, self.seed = interleave, int(seed)
        sizes = {name: len(stream.responses) for name, stream in self.streams.items()}
        total, n_sessions = sum(sizes.values()), len(sizes)
        if interleave == "even":
            self.batch_sizes = {name: int(batch_size) for name in sizes}
            self.loss_weights = {name: 1.0 for name in sizes}
        else:
            self.batch_sizes = {name: max(1, round(batch_size * n_sessions * n / total)) for name, n in sizes.items()}
            self.loss_weights = {name: n_sessions * n / total for name, n in sizes.items()}
        self.batches_per_pass = {name: -(-n // self.batch_sizes[name]) for name, n in sizes.items()}
        self.steps_per_epoch = max(self.batches_per_pass.values())

    def _rows(self, session_index: int, name: str, step: int, permutations: dict) -> np.ndarray:
        """Trial rows of session ``name``'s batch number ``step`` (counted from the first epoch)."""
        per_pass = self.batches_per_pass[name]
        pass_index, batch = divmod(step, per_pass)
        if permutations.get(name, (None,))[0] != pass_index:
            rng = np.random.default_rng([self.seed, session_index, pass_index])
            permutations[name] = (pass_index, rng.permutation(len(self.streams[name].responses)))
        size = self.batch_sizes[name]
        return permutations[name][1][batch * size:(batch + 1) * size]

    def batches(self, first_epoch: int = 0):
        """Endless ``({name: inputs}, {name: responses})`` numpy batches from the start of ``first_epoch``."""
        permutations = {}
        step = int(first_epoch) * self.steps_per_epoch
        while True:
            inputs, responses = {}, {}
            for index, (name, stream) in enumerate(self.streams.items()):
                rows = self._rows(index, name, step, permutations)
                inputs[name] = ({key: values[rows] for key, values in stream.images.items()}
                                if isinstance(stream.images, dict) else stream.images[rows])
                responses[name] = stream.responses[rows]
            yield inputs, responses
            step += 1

    def dataset(self, first_epoch: int = 0) -> tf.data.Dataset:
        """:meth:`batches` as a ``tf.data.Dataset``; ``steps_per_epoch`` batches make one epoch."""
        import tensorflow as tf

        def spec(values):
            return tf.TensorSpec((None, *np.shape(values)[1:]), tf.float32)

        signature = (
            {name: tf.nest.map_structure(spec, stream.images) for name, stream in self.streams.items()},
            {name: spec(stream.responses) for name, stream in self.streams.items()},
        )
        return tf.data.Dataset.from_generator(lambda: self.batches(first_epoch), output_signature=signature).prefetch(2)
