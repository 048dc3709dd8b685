"""Data-parallel training with ``tf.distribute`` (TensorFlow backend only).

Keras 3 on TensorFlow trains under a ``tf.distribute`` strategy when the model
is built and compiled inside ``strategy.scope()``. What that means for these
models:

- The batch size passed to the data pipeline is the *global* batch: each of the
  ``R`` replicas gets ``batch / R`` images, and the gradients are summed over
  replicas after Keras divides each replica's loss by ``R``. The mean Poisson
  loss over the global batch is therefore the single-device loss, and the
  learning rate needs no scaling.
- Penalties (readout sparsity, core smoothness) enter each replica's loss
  once; after the ``1 / R`` scaling and the sum over replicas they count once
  in total, as on one device.
- Batch normalisation must see the global batch to match one device:
  :func:`synchronized_batch_norm` switches Keras' ``synchronized`` batch
  statistics on for a fit (otherwise each replica normalises with its own
  ``batch / R`` images).
"""

from __future__ import annotations

import contextlib
import json
import os

import keras

STRATEGIES = ("default", "mirrored", "multiworker")


def use_logical_cpus(n_devices: int) -> None:
    """Splits the CPU into ``n_devices`` logical devices, so ``mirrored`` can
    be tried (and tested) without GPUs. Must run before TensorFlow starts
    using devices.
    """
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * int(n_devices))
    except RuntimeError as error:
        raise RuntimeError(
            f"Cannot split the CPU into {n_devices} logical devices: TensorFlow is already initialised ({error}). "
            "Call use_logical_cpus first thing in the process."
        ) from error


def make_strategy(name: str = "default"):
    """A ``tf.distribute`` strategy by name.

    Args:
        name: ``"default"`` (no distribution), ``"mirrored"`` (all local GPUs,
            or all logical CPU devices when there is no GPU) or
            ``"multiworker"`` (``MultiWorkerMirroredStrategy``; the cluster
            comes from the ``TF_CONFIG`` environment variable).

    Returns:
        A ``tf.distribute.Strategy``; build and compile the model in its
        ``scope()``.
    """
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [device.name for device in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "--strategy multiworker needs the TF_CONFIG environment variable, e.g. "
                '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}.'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy {name!r}; choose one of {STRATEGIES}.")


def strategy_name(strategy) -> str:
    """The name in :data:`STRATEGIES` of a strategy :func:`make_strategy` made (``None``: ``"default"``)."""
    if strategy is None:
        return "default"
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multiworker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    return "default"


def task_index() -> int:
    """This process's task index in its ``TF_CONFIG`` cluster (0 outside one)."""
    return int(json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {}).get("index", 0))


def is_chief() -> bool:
    """Whether this process writes outputs: worker 0 (or the chief) of a
    ``TF_CONFIG`` cluster, and any process outside one."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    if not task:
        return True
    return task.get("type") == "chief" or (task.get("type") == "worker" and int(task.get("index", 0)) == 0
                                            and "chief" not in config.get("cluster", {}))


@contextlib.contextmanager
def synchronized_batch_norm(model: keras.Model):
    """Within the block, every ``BatchNormalization`` of ``model`` computes its
    statistics over the global batch (all replicas), as one device would.

    The setting is switched back off on exit, so saved configs keep
    ``synchronized=False``, which every Keras backend can load.
    """
    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.synchronized = True
    try:
        yield model
    finally:
        for layer in layers:
            layer.synchronized = False


_SAFE_CLASSES: dict = {}


@contextlib.contextmanager
def multi_worker_safe(model: keras.Model):
    """Within the block, ``model`` trains under ``MultiWorkerMirroredStrategy`` (:class:`MultiWorkerSafeTrainSteps`).

    Applied by training (:func:`~keras_sysid.training.fit_with_schedule`) around
    ``fit``, so models need not inherit the workaround: the model's class is
    swapped for a subclass with the fix only while a multi-worker strategy
    trains it, and restored after. Elsewhere it does nothing.
    """
    strategy = getattr(model, "_distribute_strategy", None)
    in_multi_worker_mode = getattr(getattr(strategy, "extended", None), "_in_multi_worker_mode", None)
    if in_multi_worker_mode is None or not in_multi_worker_mode() or isinstance(model, MultiWorkerSafeTrainSteps):
        yield model
        return
    original = type(model)
    if original not in _SAFE_CLASSES:
        _SAFE_CLASSES[original] = type(original.__name__, (MultiWorkerSafeTrainSteps, original), {})
    model.__class__ = _SAFE_CLASSES[original]
    try:
        yield model
    finally:
        model.__class__ = original


class MultiWorkerSafeTrainSteps:
    """Mixin for a ``keras.Model`` that lets Keras' TensorFlow trainer run under
    ``MultiWorkerMirroredStrategy``.

    Keras 3's TensorFlow trainer cannot train under that strategy as shipped
    (tensorflow/tensorflow#72388): it averages each
    step's logs with ``reduce(axis=0)``, which fails on scalars, and it builds
    the compiled metrics from one batch that it first reduces across replicas,
    which the strategy cannot do eagerly. Outside multi-worker mode every
    method here is Keras' own. Remove this class once Keras handles both.
    """

    def train_step(self, *args, **kwargs):
        return self._reducible_across_workers(super().train_step(*args, **kwargs))

    def test_step(self, *args, **kwargs):
        return self._reducible_across_workers(super().test_step(*args, **kwargs))

    def _reducible_across_workers(self, logs):
        # As 1-element vectors the scalars average to the same scalar.
        strategy = getattr(self, "_distribute_strategy", None)
        in_multi_worker_mode = getattr(getattr(strategy, "extended", None), "_in_multi_worker_mode", None)
        if in_multi_worker_mode is None or not in_multi_worker_mode():
            return logs
        return {name: keras.ops.reshape(value, (1,)) for name, value in logs.items()}

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Overrides a private Keras method (the only hook there is): only the
        # batch's shapes matter for building metrics, so this worker's own
        # first replica batch serves instead of a cross-replica reduction.
        strategy = getattr(self, "_distribute_strategy", None)
        if iterator is not None and strategy is not None:
            for _, _, batches in iterator:
                first = next(batches)
                data_batch = keras.tree.map_structure(lambda value: strategy.experimental_local_results(value)[0], first)
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
