"""The fastest correct compilation and precision per device kind.

Chosen with ``tools/benchmark.py`` (README, Benchmark), which measures
training throughput with XLA (``jit_compile``) on and off and with float32 or
mixed precision. :func:`~keras_sysid.training.compile_model` uses
:func:`preferred_jit_compile` unless told otherwise.
"""

from __future__ import annotations

import keras

# cpu: measured on 2 cores (README). gpu: not measured here (no GPU was
# available); XLA is Keras' own default there and mixed precision stays off
# until a benchmark shows it helps without changing the fit.
PREFERRED = {
    "cpu": {"jit_compile": False, "mixed_precision": False},
    "gpu": {"jit_compile": True, "mixed_precision": False},
}


def device_kind() -> str:
    """``"gpu"`` when the Keras backend sees an accelerator, else ``"cpu"``."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
    if backend == "jax":
        import jax

        return "cpu" if jax.default_backend() == "cpu" else "gpu"
    if backend == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    return "cpu"


def preferred_jit_compile() -> bool:
    """Whether to compile training steps with XLA on this device kind."""
    return PREFERRED[device_kind()]["jit_compile"]
