"""Throughput, hardware utilisation and memory of population models.

Every measurement runs in its own spawned process, under the Keras backend it
names: peak memory is the process's peak resident set size (``ru_maxrss``),
which earlier runs would otherwise hide, the matmul rate is measured alone,
and Keras picks its backend once per process.

Utilisation is ``useful training FLOPs per image x images/s`` over the
machine's measured matmul rate *in the precision the model computes in*
(float32, or bfloat16 under a mixed policy). Useful FLOPs are what the
model's math needs, counted from the layer shapes
(:func:`training_flops_per_image`): each convolution, and each readout's own
count (``Readout.flops_per_image``: ``4 * C * N`` multiply-adds for a point
read, ``H * W * C * N`` for a dense mask); the forward pass, plus twice that
for the backward pass (input and weight gradients), except the first
convolution, whose input needs no gradient. Work an implementation wastes
(a dense read of a point, padding) is not counted.

The *core alone* is the same model with a one-neuron point readout: its rate
bounds what any point readout can reach.
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
import os
import resource
import time

import numpy as np

from keras_sysid.experiments.presets import MOUSE_CORE


def forward_flops_per_image(model) -> dict:
    """Multiply-add FLOPs (2 per multiply-add) of one image's forward pass.

    Returns:
        ``{"core": ..., "readout": ...}``: the core's convolutions (dense
        layers only; batch norm and activations are ignored) and the readout's
        own count (``Readout.flops_per_image``; for the masked readouts, the
        ``(C, H * W) @ (H * W, N)`` space contraction and the ``(C, N)``
        feature product).
    """
    import keras

    height, width = model.image_shape[:2]
    shape = (1, height, width, model.image_shape[2])
    core_flops = 0
    for layer in model.core._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Conv2D):
            out = layer.compute_output_shape(shape)
            kernel_h, kernel_w = layer.kernel_size
            core_flops += 2 * out[1] * out[2] * kernel_h * kernel_w * shape[3] * out[3]
            shape = out
    return {"core": int(core_flops), "readout": int(model.readout.flops_per_image())}


def training_flops_per_image(model) -> int:
    """FLOPs of one image's training step: forward + backward (see module doc)."""
    forward = forward_flops_per_image(model)
    first_conv = next(
        (layer for layer in model.core._flatten_layers(include_self=False) if hasattr(layer, "kernel_size")), None
    )
    first_flops = 0
    if first_conv is not None:
        height, width = model.image_shape[:2]
        out = first_conv.compute_output_shape((1, height, width, model.image_shape[2]))
        first_flops = 2 * out[1] * out[2] * int(np.prod(first_conv.kernel_size)) * model.image_shape[2] * out[3]
    total = forward["core"] + forward["readout"]
    return int(3 * total - first_flops)


BACKENDS = ("tensorflow", "jax", "torch")


def _measure_matmul(size: int, repeats: int, dtype: str) -> dict:
    import keras

    if dtype == "mixed":
        from keras_sysid.devices import mixed_policy_name

        dtype = keras.mixed_precision.Policy(mixed_policy_name()).compute_dtype
    rng = np.random.default_rng(0)
    a = keras.ops.cast(keras.ops.convert_to_tensor(rng.standard_normal((size, size)).astype("float32")), dtype)
    b = keras.ops.cast(keras.ops.convert_to_tensor(rng.standard_normal((size, size)).astype("float32")), dtype)
    if keras.backend.backend() == "jax":
        import jax

        multiply = jax.jit(keras.ops.matmul)
    else:
        multiply = keras.ops.matmul
    keras.ops.convert_to_numpy(keras.ops.cast(multiply(a, b), "float32"))
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        product = multiply(a, b)
        # Wait for the product inside the clock: JAX and GPUs return before it is computed.
        if hasattr(product, "block_until_ready"):
            product.block_until_ready()
        elif keras.backend.backend() == "torch" and product.is_cuda:
            import torch

            torch.cuda.synchronize()
        elif keras.backend.backend() == "tensorflow":
            product = product.numpy()
        best = min(best, time.perf_counter() - start)
    return {
        "backend": keras.backend.backend(), "dtype": dtype, "matmul_size": size,
        "matmul_gflops": round(2 * size**3 / best / 1e9, 1),
    }


def matmul_rate(size: int = 4096, repeats: int = 5, dtype: str = "float32", backend: str | None = None) -> dict:
    """This machine's matmul rate (best of ``repeats`` square matmuls), in a fresh process.

    Args:
        size: Side of the square matrices.
        repeats: Timed repeats (after one untimed).
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"``, or ``"mixed"``: the
            compute dtype of :func:`keras_sysid.devices.mixed_policy_name`
            (the rate mixed precision is measured against).
        backend: Keras backend (default: this process's).

    Returns:
        ``{"backend", "dtype", "matmul_size", "matmul_gflops": GFLOP/s}``.
    """
    return _in_fresh_process(_measure_matmul, dict(size=size, repeats=repeats, dtype=dtype), backend=backend)


def _clock():
    import keras

    class Clock(keras.callbacks.Callback):
        """Wall time of each training epoch, and the end time of each prediction batch."""

        def __init__(self):
            super().__init__()
            self.epoch_seconds = []
            self.predict_batch_ends = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_seconds.append(time.perf_counter() - self._start)

        def on_predict_batch_end(self, batch, logs=None):
            self.predict_batch_ends.append(time.perf_counter())

    return Clock()


def _training_stream(images, responses, batch_size: int, seed: int):
    """The endless shuffled stream keras_sysid's fits read; a ``PyDataset`` where TensorFlow is absent."""
    try:
        import tensorflow  # noqa: F401  (tf.data feeds every Keras backend)
    except ImportError:
        pass
    else:
        from keras_sysid.data.pipeline import EpochStream

        return EpochStream(images, responses, batch_size=batch_size, seed=seed).dataset()
    import keras

    class Batches(keras.utils.PyDataset):
        """Shuffled batches of in-memory arrays (a machine without TensorFlow, e.g. the GPU machine)."""

        def __init__(self):
            super().__init__()
            self.order = np.random.default_rng(seed).permutation(len(images))

        def __len__(self):
            return len(images) // batch_size

        def __getitem__(self, index):
            rows = self.order[index * batch_size:(index + 1) * batch_size]
            return images[rows], responses[rows]

    return Batches()


def _measure_training(
    n_neurons: int, image_shape, batch_size: int, steps: int, readout: str, seed: int,
    jit_compile=None, mixed_precision: bool = False,
) -> dict:
    import keras

    from keras_sysid.devices import mixed_policy_name
    from keras_sysid.models import build_model
    from keras_sysid.training import compile_model

    if mixed_precision:
        keras.mixed_precision.set_global_policy(mixed_policy_name())
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch_size * steps, *image_shape, 1)).astype("float32")
    responses = rng.poisson(1.0, (batch_size * steps, n_neurons)).astype("float32")
    model = build_model(
        n_neurons, image_shape, core=MOUSE_CORE, readout={"type": readout}, image_mean=127.5, image_std=64.0,
        mean_responses=np.ones(n_neurons),
    )
    compile_model(model, jit_compile=jit_compile)
    # Training reads one endless stream, as keras_sysid's own fits do, and only
    # its second epoch is timed: the first compiles the step function, and
    # starting a new iterator (each fit call, and each epoch of a finite NumPy
    # input) stalled for about 1.5 s here, a cost of the input, not the model.
    stream = _training_stream(images, responses, batch_size, seed)
    clock = _clock()
    model.fit(stream, steps_per_epoch=steps, epochs=2, verbose=0, shuffle=False, callbacks=[clock])
    train_seconds = clock.epoch_seconds[-1]
    # Prediction is timed from the end of its first batch to the end of its last.
    model.predict(images, batch_size=batch_size, verbose=0, callbacks=[clock])
    predict_seconds = clock.predict_batch_ends[-1] - clock.predict_batch_ends[0]
    forward = forward_flops_per_image(model)
    return {
        "backend": keras.backend.backend(),
        "device": _device_name(),
        "n_neurons": n_neurons,
        "readout": readout,
        "batch_size": batch_size,
        "image_shape": list(image_shape),
        "jit_compile": bool(model.jit_compile),
        "precision": keras.mixed_precision.global_policy().name,
        "train_images_per_s": round(batch_size * steps / train_seconds, 1),
        "predict_images_per_s": round(batch_size * (steps - 1) / predict_seconds, 1),
        "train_gflops_per_image": round(training_flops_per_image(model) / 1e9, 4),
        "readout_forward_mflops_per_image": round(forward["readout"] / 1e6, 3),
        "parameters": int(model.count_params()),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _child(queue, function, kwargs):
    try:
        queue.put(function(**kwargs))
    except Exception as error:  # reported to the parent, which raises it with context
        queue.put({"error": f"{type(error).__name__}: {error}"})


def _device_name() -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    if keras.backend.backend() == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return gpus[0].name if gpus else "cpu"


@contextlib.contextmanager
def _keras_backend(backend: str | None):
    """``KERAS_BACKEND`` set for the processes started inside (Keras reads it at import)."""
    if backend is None:
        yield
        return
    if backend not in BACKENDS:
        raise ValueError(f"Unknown Keras backend {backend!r}; expected one of {BACKENDS}.")
    if importlib.util.find_spec(backend) is None:
        raise ValueError(f"The Keras backend {backend!r} is not installed here (pip install {backend}).")
    before = os.environ.get("KERAS_BACKEND")
    os.environ["KERAS_BACKEND"] = backend
    try:
        yield
    finally:
        if before is None:
            del os.environ["KERAS_BACKEND"]
        else:
            os.environ["KERAS_BACKEND"] = before


def _in_fresh_process(function, kwargs: dict, backend: str | None = None) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, function, kwargs))
    with _keras_backend(backend):
        process.start()
    result = queue.get()
    process.join()
    if "error" in result:
        raise RuntimeError(f"{function.__name__} with {kwargs} under {backend or 'this backend'} failed: {result['error']}")
    return result


def benchmark_training(
    n_neurons: int,
    image_shape=(36, 64),
    batch_size: int = 64,
    steps: int = 20,
    readout: str = "factorized",
    seed: int = 0,
    jit_compile=None,
    mixed_precision: bool = False,
    backend: str | None = None,
) -> dict:
    """Measures the paper's model (core 13/3/3 x 48) in a fresh process.

    Args:
        n_neurons: Population size.
        image_shape: ``(H, W)`` of the images.
        batch_size: Images per training step.
        steps: Timed training steps (after one untimed warm-up epoch).
        readout: A registered readout type (``keras_sysid.readouts.registry()``).
        seed: Seed of the random data and weights.
        jit_compile: ``True``, ``False``, ``"auto"`` (Keras' choice) or ``None``
            (:func:`keras_sysid.devices.preferred_jit_compile`).
        mixed_precision: Compute in bfloat16 (float16 on torch) with float32
            weights (Keras' ``mixed_*`` policies).
        backend: Keras backend to measure under (default: this process's).

    Returns:
        A dict with ``train_images_per_s``, ``predict_images_per_s``,
        ``train_gflops_per_image`` (useful FLOPs, see the module doc),
        ``readout_forward_mflops_per_image``, ``jit_compile``, ``precision``,
        ``peak_rss_mb`` (the whole process: Python, the framework and the
        model), ``parameters``, ``backend``, ``device`` and the settings.
    """
    kwargs = dict(
        n_neurons=n_neurons, image_shape=tuple(image_shape), batch_size=batch_size, steps=steps, readout=readout,
        seed=seed, jit_compile=jit_compile, mixed_precision=mixed_precision,
    )
    return _in_fresh_process(_measure_training, kwargs, backend=backend)


def _measure_input_pipeline(path: str, batch_size: int, epochs: int) -> dict:
    from keras_sysid.data import load as load_recording

    start = time.perf_counter()
    data = load_recording(path)
    load_seconds = time.perf_counter() - start
    scale = data.response_scale("train")
    stream = data.epoch_stream("train", batch_size, seed=0, response_scale=scale)
    batches = iter(stream.dataset())
    next(batches)  # builds the pipeline; not timed
    start = time.perf_counter()
    n_images = 0
    for _ in range(epochs * stream.steps_per_epoch - 1):
        images, _ = next(batches)
        n_images += int(images.shape[0])
    seconds = time.perf_counter() - start
    return {
        "data": data.name,
        "n_neurons": data.n_neurons,
        "n_train": len(data.indices("train")),
        "load_seconds": round(load_seconds, 2),
        "pipeline_images_per_s": round(n_images / seconds, 1),
    }


def benchmark_input_pipeline(path: str, batch_size: int = 64, epochs: int = 3) -> dict:
    """Reads a ``static*-preproc0`` data set and streams its shuffled, scaled
    training batches, in a fresh process.

    Returns:
        ``{"load_seconds", "pipeline_images_per_s", "n_neurons", "n_train", "data"}``:
        the time to read and check the file, and the images/s of the training
        stream (gather, response scaling, batching) after it is built.
    """
    return _in_fresh_process(_measure_input_pipeline, dict(path=str(path), batch_size=batch_size, epochs=epochs))


def _measure_pruned_predict(model_name: str, batch_size: int, n_images: int, repeats: int, densities) -> dict:
    import keras

    from keras_sysid import readouts, zoo
    from keras_sysid.inference_forms import with_pruned_readout

    dense = zoo.load(model_name)
    pruned = with_pruned_readout(dense)
    images = np.random.default_rng(0).uniform(0, 255, (n_images, *dense.image_shape)).astype("float32")
    worst = float(np.max(np.abs(pruned.predict_on_batch(images[:batch_size]) - dense.predict_on_batch(images[:batch_size]))))
    # predict_on_batch, dense and pruned interleaved: timing model.predict gave rates quantised
    # by its progress callback here (125/250/375 images/s).
    rates = {"dense": [], "pruned": []}
    for _ in range(repeats):
        for name, model in (("dense", dense), ("pruned", pruned)):
            model.predict_on_batch(images[:batch_size])
            start = time.perf_counter()
            for first in range(0, n_images, batch_size):
                model.predict_on_batch(images[first:first + batch_size])
            rates[name].append(round(n_images / (time.perf_counter() - start), 1))

    def readout_seconds(readout, features):
        import tensorflow as tf

        call = tf.function(lambda x: readout(x))
        call(features)
        times = []
        for _ in range(3 * repeats):
            start = time.perf_counter()
            keras.ops.convert_to_numpy(call(features))
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    features = dense.core((images[:batch_size] - dense.image_mean) / dense.image_std, training=False)
    sweep = []
    height, width = dense.grid_shape
    source = readouts.FactorizedReadout(dense.n_neurons, name="readout")
    source.build(tuple(features.shape))
    rng = np.random.default_rng(1)
    for density in densities:
        mask = rng.uniform(0.1, 1.0, (height * width, dense.n_neurons))
        source.mask.assign((mask * (rng.uniform(size=mask.shape) < density)).astype("float32"))
        sweep.append({
            "density": density,
            "dense_ms": round(1e3 * readout_seconds(source, features), 1),
            "pruned_ms": round(1e3 * readout_seconds(readouts.PrunedMaskReadout.from_factorized(source), features), 1),
        })
    return {
        "model": model_name,
        "density": round(pruned.readout.n_entries / (height * width * dense.n_neurons), 4),
        "batch_size": batch_size,
        "max_abs_difference": worst,
        "predict_images_per_s": {name: float(np.median(values)) for name, values in rates.items()},
        "predict_images_per_s_all": rates,
        "readout_ms": {
            "dense": round(1e3 * readout_seconds(dense.readout, features), 1),
            "pruned": round(1e3 * readout_seconds(pruned.readout, features), 1),
        },
        "random_mask_sweep": sweep,
    }


def benchmark_pruned_predict(
    model_name: str = "mouse_v1_factorized", batch_size: int = 64, n_images: int = 640, repeats: int = 5,
    densities=(0.05, 0.15, 0.3, 0.5),
) -> dict:
    """Prediction of a zoo factorized model against its pruned-readout copy, in a fresh process (TensorFlow).

    :func:`keras_sysid.inference_forms.with_pruned_readout` reads only the non-zero
    mask entries. Measures predict images/s of both (interleaved, median of
    ``repeats``), the readout's forward time alone, and the readout alone on
    random masks of each of ``densities`` (where the sparse read stops
    winning: the default ``max_density`` of ``with_pruned_readout``).

    Returns:
        ``{"model", "density", "batch_size", "max_abs_difference",
        "predict_images_per_s": {"dense", "pruned"}, "readout_ms": {...},
        "random_mask_sweep": [{"density", "dense_ms", "pruned_ms"}, ...]}``.
    """
    kwargs = dict(model_name=model_name, batch_size=batch_size, n_images=n_images, repeats=repeats,
                  densities=tuple(densities))
    return _in_fresh_process(_measure_pruned_predict, kwargs, backend="tensorflow")
