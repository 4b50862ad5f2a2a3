"""The hardware a run trains on: whether there is a GPU, its precision (mixed bfloat16 or
float16 where the chip has them) and, on TensorFlow, its distribution strategy. Asked of the
Keras backend in use, so that JAX and PyTorch runs need no TensorFlow."""

from __future__ import annotations

import contextlib
from pathlib import Path

import keras


def _cpu_has_bfloat16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def gpu_capability() -> tuple[int, int] | None:
    """The first GPU's CUDA compute capability, e.g. (9, 0) on an H100; (0, 0) for a GPU that
    does not say; None without a GPU. Asked of the Keras backend in use."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        return tuple(tf.config.experimental.get_device_details(gpus[0]).get(
            "compute_capability") or (0, 0))  # fmt: skip
    if backend == "jax":
        import jax

        gpus = [device for device in jax.devices() if device.platform == "gpu"]
        if not gpus:
            return None
        major, _, minor = str(getattr(gpus[0], "compute_capability", "0.0")).partition(".")
        return int(major), int(minor or 0)
    if backend == "torch":
        import torch

        return tuple(torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else None
    return None


def has_gpu() -> bool:
    return gpu_capability() is not None


def choose_precision(requested: str = "auto") -> str:
    """Resolve "auto": bfloat16 on Ampere+ GPUs and BF16-capable CPUs, float16 on older GPUs
    (compute capability >= 7), else float32."""
    if requested != "auto":
        return requested
    capability = gpu_capability()
    if capability is not None:
        if capability >= (8, 0):
            return "mixed_bfloat16"
        return "mixed_float16" if capability >= (7, 0) else "float32"
    return "mixed_bfloat16" if _cpu_has_bfloat16() else "float32"


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras' policy is process-global; set it while building, then put the old one back."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def distribution_scope():
    """On TensorFlow, the scope of a MirroredStrategy when several GPUs are visible (Kaggle's
    2 x T4), else of the default strategy; on other backends, an empty context."""
    if keras.backend.backend() != "tensorflow":
        return contextlib.nullcontext()
    import tensorflow as tf

    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy().scope()
    return tf.distribute.get_strategy().scope()
