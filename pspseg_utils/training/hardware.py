"""The hardware a run trains on: its precision (mixed bfloat16 or float16 where the chip has
them) and its distribution strategy."""

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


def choose_precision(requested: str = "auto") -> str:
    """Resolve "auto": bfloat16 on Ampere+ GPUs and BF16-capable CPUs, float16 on older GPUs
    (compute capability >= 7), else float32."""
    if requested != "auto":
        return requested
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
        if capability and capability >= (8, 0):
            return "mixed_bfloat16"
        return "mixed_float16" if capability and capability >= (7, 0) else "float32"
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


def distribution_strategy():
    """MirroredStrategy when several GPUs are visible (Kaggle's 2 x T4), else the default."""
    import tensorflow as tf

    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
