"""Serving speed and agreement of every export format against Keras, on zoo models (``keras-sysid benchmark --serving``).

For each model, in one fresh TensorFlow process: export to every format of
:data:`keras_sysid.export.FORMATS`, run each artefact in its own runtime
(:func:`keras_sysid.export.runtime_predictor`) on the same inputs, and measure
against Keras (``predict`` and ``predict_on_batch``):

- the largest relative difference to Keras' prediction (max |runtime - Keras| / max |Keras|);
- throughput, images/s at batch 64 (median of ``repeats`` passes over ``n_batches`` batches);
- latency at batch 1, p50 and p99 over ``n_requests`` single-image requests.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from keras_sysid.experiments.benchmark import _in_fresh_process

KERAS_RUNTIMES = ("keras predict", "keras predict_on_batch")


def _inputs(shapes: dict, n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {name: (rng.uniform(0, 255, (n, *shape)) if name == "images" else rng.normal(size=(n, *shape)))
            .astype("float32") for name, shape in shapes.items()}


def _rows(inputs: dict, start: int, stop: int):
    batch = {name: value[start:stop] for name, value in inputs.items()}
    return batch if len(batch) > 1 else batch["images"]


def _measure(predict, inputs, batch_size, n_batches, n_requests, repeats) -> dict:
    predict(_rows(inputs, 0, batch_size))  # warm-up: first calls compile or allocate
    predict(_rows(inputs, 0, 1))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for index in range(n_batches):
            first = index * batch_size % (len(next(iter(inputs.values()))) - batch_size + 1)
            predict(_rows(inputs, first, first + batch_size))
        rates.append(n_batches * batch_size / (time.perf_counter() - start))
    latencies = []
    for index in range(n_requests):
        start = time.perf_counter()
        predict(_rows(inputs, index % batch_size, index % batch_size + 1))
        latencies.append(time.perf_counter() - start)
    return {"images_per_s_batch": round(float(np.median(rates)), 1),
            "latency_ms_p50": round(1e3 * float(np.percentile(latencies, 50)), 3),
            "latency_ms_p99": round(1e3 * float(np.percentile(latencies, 99)), 3)}


def _measure_model(name: str, batch_size: int, n_batches: int, n_requests: int, repeats: int) -> dict:
    from keras_sysid import export, zoo

    model = zoo.load(name)
    shapes = export.input_shapes(model)
    inputs = _inputs(shapes, 4 * batch_size)
    expected = model.predict(_rows(inputs, 0, batch_size), verbose=0)
    runtimes = {
        "keras predict": lambda x: model.predict(x, verbose=0, batch_size=batch_size),
        "keras predict_on_batch": model.predict_on_batch,
    }
    rows, exports = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for format in export.FORMATS:
            out = os.path.join(folder, format)
            os.makedirs(out)
            start = time.perf_counter()
            export.export_model(model, out, format)
            exports[format] = round(time.perf_counter() - start, 1)
            runtimes[format] = export.runtime_predictor(out)
        for runtime, predict in runtimes.items():
            got = np.asarray(predict(_rows(inputs, 0, batch_size)))
            row = _measure(predict, inputs, batch_size, n_batches, n_requests, repeats)
            row["max_relative_difference"] = float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))
            rows[runtime] = row
    return {"model": name, "n_neurons": int(model.n_neurons), "inputs": {k: list(v) for k, v in shapes.items()},
            "batch_size": batch_size, "export_seconds": exports, "runtimes": rows}


def benchmark_serving(models=("mouse_v1_gaussian", "mouse_v1_ensemble"), batch_size: int = 64, n_batches: int = 10,
                      n_requests: int = 200, repeats: int = 3) -> list[dict]:
    """Each model's runtimes (Keras and every export format) measured in one fresh TensorFlow process per model.

    Returns:
        ``[{"model", "n_neurons", "inputs", "batch_size", "export_seconds": {format: s},
        "runtimes": {runtime: {"images_per_s_batch", "latency_ms_p50",
        "latency_ms_p99", "max_relative_difference"}}}, ...]``.
    """
    return [_in_fresh_process(_measure_model, dict(name=name, batch_size=batch_size, n_batches=n_batches,
                                                   n_requests=n_requests, repeats=repeats), backend="tensorflow")
            for name in models]


def table(results: list[dict]) -> str:
    """The measurements as a Markdown table, fastest batch-1 runtime marked per model."""
    lines = ["| model | runtime | images/s, batch 64 | latency p50 ms, batch 1 | p99 ms | max rel. diff to Keras |",
             "|---|---|---:|---:|---:|---:|"]
    for result in results:
        fastest = min(result["runtimes"], key=lambda runtime: result["runtimes"][runtime]["latency_ms_p50"])
        for runtime, row in result["runtimes"].items():
            mark = " (fastest at batch 1)" if runtime == fastest else ""
            lines.append(f"| {result['model']} | {runtime}{mark} | {row['images_per_s_batch']:.0f} | "
                         f"{row['latency_ms_p50']:.2f} | {row['latency_ms_p99']:.2f} | "
                         f"{row['max_relative_difference']:.1e} |")
    return "\n".join(lines)
