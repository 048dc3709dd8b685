"""The fastest correct compilation and precision per device kind.

Chosen with ``tools/benchmark.py`` (docs/benchmarks.md), which measures
training throughput with XLA (``jit_compile``) on and off and with float32 or
mixed precision, and with ``tools/train.py``, which showed that mixed bfloat16
fits the synthetic ground truth as well as float32.
:func:`~keras_sysid.training.compile_model` uses :func:`preferred_jit_compile`
unless told otherwise; ``tools/train.py`` uses :func:`preferred_mixed_precision`.
"""

from __future__ import annotations

import keras

from keras_sysid.cloning import clone, with_dtype_policy

# cpu: measured on 2 cores (docs/benchmarks.md). Mixed precision only where the CPU has
# native bfloat16 arithmetic; elsewhere bfloat16 is emulated and slower.
# gpu: not measured here (no GPU was available); XLA is Keras' own default
# there and mixed precision stays off until a benchmark shows it helps.
PREFERRED = {
    "cpu": {"jit_compile": False, "mixed_precision": "native_bfloat16"},
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
    """Whether to compile training steps with XLA on this device kind and Keras backend.

    Under JAX, the step is always compiled: without ``jax.jit`` it runs op by
    op from Python. Under PyTorch, ``jit_compile`` means ``torch.compile``,
    which Keras marks experimental; it stays off.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        return True
    if backend == "torch":
        return False
    return PREFERRED[device_kind()]["jit_compile"]


def cpu_has_native_bfloat16() -> bool:
    """Whether this (Linux) CPU has bfloat16 instructions (AVX512-BF16 or AMX-BF16)."""
    try:
        with open("/proc/cpuinfo") as file:
            flags = next((line.split(":", 1)[1].split() for line in file if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def preferred_mixed_precision() -> bool:
    """Whether training on this device kind should compute in mixed precision."""
    choice = PREFERRED[device_kind()]["mixed_precision"]
    return cpu_has_native_bfloat16() if choice == "native_bfloat16" else bool(choice)


def mixed_policy_name() -> str:
    """Keras' mixed policy for this device: float16 on GPUs (and torch), else bfloat16."""
    return "mixed_float16" if device_kind() == "gpu" or keras.backend.backend() == "torch" else "mixed_bfloat16"


def current_precision() -> str:
    """``"mixed"`` under Keras' mixed global policy, else ``"float32"`` (as run keys and results record it)."""
    return "mixed" if keras.mixed_precision.global_policy().name.startswith("mixed") else "float32"


def float32_copy(model: keras.Model) -> keras.Model:
    """``model`` rebuilt to compute in float32, with the same weights.

    A model built under a mixed policy predicts in bfloat16 or float16
    (about 3 significant digits). Training gains from that; predictions and
    saved models should not, so fitted models are handed on in float32.

    Args:
        model: A built Keras model (weights are float32 under any policy).

    Returns:
        An uncompiled model of the same class and weights whose layers all
        compute in float32; ``model`` itself if it already does.
    """
    if all(layer.dtype_policy.compute_dtype == "float32" for layer in model._flatten_layers()):
        return model
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        return clone(model, edit_config=lambda config: with_dtype_policy(config, "float32"))
    finally:
        keras.mixed_precision.set_global_policy(previous)
