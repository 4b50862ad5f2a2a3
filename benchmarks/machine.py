"""What machine a benchmark ran on, for its JSON lines; the standard library only at import, so
that every benchmark can import it, including the article's baseline in its own TensorFlow 2.15
venv (which calls `host_cpu` alone)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# /proc/cpuinfo flag -> name, widest first: machines sold under one model name ("AMD EPYC")
# differ by these, and bfloat16 units (AMX, AVX-512 BF16) speed the convolutions up severalfold.
VECTOR_UNITS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX-512 BF16"), ("avx512f", "AVX-512"),
                ("avx2", "AVX2"))  # fmt: skip


def host_cpu(cpuinfo: str | None = None) -> str:
    """The CPU's model name, widest vector unit and the cores this process may use, as in
    "AMD EPYC (AVX2), 2 cores": timings depend on all three. `cpuinfo`: the text of
    /proc/cpuinfo, read when not given; without one (not Linux) the name is Python's guess."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    lines = cpuinfo.splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor() or platform.machine())  # fmt: skip
    flags = next((line.split()[2:] for line in lines if line.startswith("flags")), [])
    unit = next((unit for flag, unit in VECTOR_UNITS if flag in flags), None)
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count())
    return f"{name}{f' ({unit})' if unit else ''}, {len(usable)} cores"


def accelerator() -> str:
    """The device Keras 3 computes on: the first GPU's name ("NVIDIA H200") or "cpu", asked of
    the backend in use (JAX or TensorFlow)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return str(device.device_kind) if device.platform == "gpu" else "cpu"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "cpu"
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "gpu")
