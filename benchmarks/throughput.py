"""Training and inference throughput of the PSPNet backbones; one JSON line per measurement.

    python benchmarks/throughput.py                 # the CPU set (under 10 minutes on 2 cores)
    python benchmarks/throughput.py --what train --backbone vgg16 --image-size 384 --batch 2
    KERAS_BACKEND=jax python benchmarks/throughput.py --set gpu   # on a GPU machine

Training is timed in steady state: the first steps (tracing, compilation) are run and dropped,
then `--steps` steps are timed. Input comes through the course's own pipeline
(`data.make_dataset` with augmentation) on random slices when TensorFlow is the backend, or from
NumPy arrays otherwise (the GPU check runs Keras on JAX). Inference reports batch-1 latency
and batched throughput. Peak host memory is the process's maximum resident set so far.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from pspseg_utils.losses import get_loss  # noqa: E402
from pspseg_utils.models import build_pspnet  # noqa: E402

CPU_SET = [
    # (what, backbone, image size, batch): the targets of issue 6, then the other backbones.
    ("train", "vgg16", 384, 2),
    ("train", "mobilenetv2", 128, 16),
    ("train", "resnet50", 128, 8),
    ("train", "vgg16", 128, 8),
    ("infer", "mobilenetv2", 256, 1),
    ("infer", "vgg16", 256, 1),
    ("infer", "resnet50", 256, 1),
]
GPU_SET = [
    ("train", backbone, size, 16)
    for backbone in ("vgg16", "resnet50", "mobilenetv2")
    for size in (128, 256, 384)
] + [("infer", b, 256, 1) for b in ("vgg16", "resnet50", "mobilenetv2")]


def _device() -> str:
    if keras.backend.backend() == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return (
        tf.config.experimental.get_device_details(gpus[0]).get("device_name", "gpu")
        if gpus
        else "cpu"
    )


def _peak_host_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_device_mb() -> float | None:
    if keras.backend.backend() == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats.get("peak_bytes_in_use", 0) / 2**20 or None
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return None
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20


def _model(backbone: str, size: int, precision: str):
    keras.config.set_dtype_policy(precision)
    return build_pspnet((size, size, 3), 1, backbone=backbone, backbone_weights=None,
                        head_channels=256 if backbone != "mobilenetv2" else 128)  # fmt: skip


def _random_slices(count: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    masks = (rng.random((count, size, size)) > 0.97).astype(np.uint8)
    return images, masks


class _StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.ends: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def measure_training(backbone, size, batch, *, precision, jit_compile, warmup, steps) -> dict:
    model = _model(backbone, size, precision)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=get_loss("bce_dice", num_classes=1),
                  jit_compile=jit_compile)  # fmt: skip
    images, masks = _random_slices(max(4 * batch, 32), size)
    if keras.backend.backend() == "tensorflow":
        from pspseg_utils import data

        stream = data.make_dataset(images, masks, batch_size=batch, augment=True, shuffle=True,
                                   repeat=True, drop_remainder=True)  # fmt: skip
        fit_input = dict(x=stream)
    else:
        x = np.resize(images, (batch * (warmup + steps), size, size, 3)).astype("float32")
        y = np.resize(masks, (batch * (warmup + steps), size, size))[..., None].astype("float32")
        fit_input = dict(x=x, y=y, batch_size=batch)
    timer = _StepTimer()
    model.fit(**fit_input, steps_per_epoch=warmup + steps, epochs=1, verbose=0,
              callbacks=[timer])  # fmt: skip
    seconds = timer.ends[-1] - timer.ends[warmup - 1]
    return {"img_per_s": steps * batch / seconds, "ms_per_step": 1000 * seconds / steps}


def measure_inference(backbone, size, batch, *, precision, jit_compile, warmup, steps) -> dict:
    model = _model(backbone, size, precision)
    images = _random_slices(batch, size)[0].astype("float32")
    for _ in range(warmup):
        model.predict_on_batch(images)
    start = time.perf_counter()
    for _ in range(steps):
        model.predict_on_batch(images)
    seconds = (time.perf_counter() - start) / steps
    return {"img_per_s": batch / seconds, "ms_per_step": 1000 * seconds}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--what", choices=["train", "infer"])
    parser.add_argument("--backbone", choices=["vgg16", "resnet50", "mobilenetv2"])
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument(
        "--precision",
        default="auto",
        help="auto (bfloat16 where the CPU/GPU has it), float32, mixed_float16, ...",
    )
    parser.add_argument("--xla", action="store_true", help="jit_compile=True (on GPUs)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    if args.what:
        plan = [(args.what, args.backbone, args.image_size, args.batch)]
    else:
        plan = CPU_SET if args.set == "cpu" else GPU_SET
    precision = args.precision
    if precision == "auto" and keras.backend.backend() == "tensorflow":
        from pspseg_utils.training import choose_precision

        precision = choose_precision("auto")
    elif precision == "auto":  # the GPU check on JAX: Hopper and Ampere have bfloat16
        precision = "mixed_bfloat16"
    device = _device()
    for what, backbone, size, batch in plan:
        measure = measure_training if what == "train" else measure_inference
        result = measure(backbone, size, batch, precision=precision, jit_compile=args.xla,
                         warmup=args.warmup, steps=args.steps)  # fmt: skip
        print(json.dumps({
            "what": what, "backbone": backbone, "image_size": size, "batch": batch,
            "precision": precision, "xla": args.xla, "device": device,
            "backend": keras.backend.backend(),
            **{k: round(v, 2) for k, v in result.items()},
            "peak_host_mem_mb": round(_peak_host_mb()),
            "peak_device_mem_mb": _peak_device_mb(),
        }), flush=True)  # fmt: skip
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
