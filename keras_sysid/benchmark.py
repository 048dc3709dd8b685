"""Throughput and memory of population models, each measured in a fresh process.

Peak memory is the process's peak resident set size (``ru_maxrss``), so every
configuration runs in its own spawned process: peaks of earlier runs would
otherwise hide later ones.
"""

from __future__ import annotations

import multiprocessing
import resource
import time

import numpy as np

PAPER_CORE = {"type": "stacked_conv2d", "channels": 48, "kernel_sizes": [13, 3, 3]}


def _measure_training(n_neurons: int, image_shape, batch_size: int, steps: int, readout: str, seed: int) -> dict:
    import keras

    from keras_sysid.models import build_model
    from keras_sysid.training import compile_model

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch_size * steps, *image_shape, 1)).astype("float32")
    responses = rng.poisson(1.0, (batch_size * steps, n_neurons)).astype("float32")
    model = build_model(
        n_neurons, image_shape, core=PAPER_CORE, readout={"type": readout}, image_mean=127.5, image_std=64.0,
        mean_responses=np.ones(n_neurons),
    )
    compile_model(model)
    # The first epoch compiles the step function; only the second is timed.
    model.fit(images[: batch_size * 2], responses[: batch_size * 2], batch_size=batch_size, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(images, responses, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    train_seconds = time.perf_counter() - start
    model.predict(images[:batch_size], batch_size=batch_size, verbose=0)
    start = time.perf_counter()
    model.predict(images, batch_size=batch_size, verbose=0)
    predict_seconds = time.perf_counter() - start
    return {
        "n_neurons": n_neurons,
        "readout": readout,
        "batch_size": batch_size,
        "image_shape": list(image_shape),
        "train_images_per_s": round(batch_size * steps / train_seconds, 1),
        "predict_images_per_s": round(batch_size * steps / predict_seconds, 1),
        "parameters": int(model.count_params()),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _child(queue, kwargs):
    try:
        queue.put(_measure_training(**kwargs))
    except Exception as error:  # reported to the parent, which raises it with context
        queue.put({"error": f"{type(error).__name__}: {error}"})


def benchmark_training(
    n_neurons: int,
    image_shape=(36, 64),
    batch_size: int = 64,
    steps: int = 20,
    readout: str = "factorized",
    seed: int = 0,
) -> dict:
    """Measures the paper's model (core 13/3/3 x 48) in a fresh process.

    Args:
        n_neurons: Population size.
        image_shape: ``(H, W)`` of the images.
        batch_size: Images per training step.
        steps: Timed training steps (after one untimed warm-up epoch).
        readout: Readout type (a key of :data:`keras_sysid.models.READOUTS`).
        seed: Seed of the random data and weights.

    Returns:
        A dict with ``train_images_per_s``, ``predict_images_per_s``,
        ``peak_rss_mb`` (the whole process: Python, TensorFlow and the model),
        ``parameters`` and the settings.
    """
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    kwargs = dict(
        n_neurons=n_neurons, image_shape=tuple(image_shape), batch_size=batch_size, steps=steps, readout=readout, seed=seed
    )
    process = context.Process(target=_child, args=(queue, kwargs))
    process.start()
    result = queue.get()
    process.join()
    if "error" in result:
        raise RuntimeError(f"Benchmark with {kwargs} failed: {result['error']}")
    return result
