"""Training and inference throughput of the PSPNet backbones; one JSON line per measurement.

    python benchmarks/throughput.py                 # the CPU set (under 10 minutes on 2 cores)
    python benchmarks/throughput.py --what train --backbone vgg16 --image-size 384 --batch 2
    python benchmarks/throughput.py --what train --backbone vgg16 --image-size 256 --batch 16 \
        --cached                                    # one cached batch: is the input the limit?
    KERAS_BACKEND=jax python benchmarks/throughput.py --set gpu   # on a GPU machine

Training is timed in steady state: the first steps (tracing, compilation) are run and dropped,
then up to `--steps` steps are timed, fewer where they take more than `--seconds` in all (each
line says how many: `steps_timed`). Input comes through the course's own pipeline
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
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from machine import host_cpu  # noqa: E402

from pspseg_utils.losses import get_loss  # noqa: E402
from pspseg_utils.models import BACKBONES, build_pspnet  # noqa: E402


class Measurement(NamedTuple):
    """One measurement of a set; "pipeline" times the tf.data input alone."""

    what: str
    backbone: str | None
    image_size: int
    batch: int
    output_stride: int | None
    skip_channels: int = 0  # of the stride-4 decoder; 0: none


# Rows of Measurement's fields, the last left out where it is 0.
CPU_SET = [
    ("pipeline", None, 128, 16, None),
    # The targets of issue 6 first: VGG16 at the article's size, MobileNetV2 for laptops.
    ("train", "vgg16", 384, 2, 8),
    ("train", "mobilenetv2", 128, 16, 8),
    ("train", "mobilenetv2", 128, 16, 16),
    ("train", "mobilenetv2_050", 128, 16, 8, 32),  # the CPU recipe's model
    ("train", "mobilenetv2_050", 128, 16, 8),
    ("train", "mobilenetv2_035", 128, 16, 8),
    ("train", "vgg16", 128, 8, 8),
    ("train", "vgg16", 256, 4, 8),
    ("train", "resnet50", 128, 8, 8),
    ("train", "resnet50", 256, 4, 8),
    ("train", "mobilenetv2", 256, 8, 8),
    ("train", "mobilenetv2", 384, 4, 8),
    ("infer", "vgg16", 384, 1, 8),
    ("infer", "vgg16", 256, 1, 8),
    ("infer", "resnet50", 256, 1, 8),
    ("infer", "mobilenetv2", 256, 1, 8),
    ("infer", "mobilenetv2", 256, 16, 8),
]
# The fewest timed steps of a measurement, however slow its steps are.
MIN_TIMED_STEPS = 2


def _timed_enough(steps: int, elapsed: float, seconds: float) -> bool:
    """The time box of every measurement: at least MIN_TIMED_STEPS steps and `seconds`."""
    return steps >= MIN_TIMED_STEPS and elapsed >= seconds


GPU_SET = [
    ("train", backbone, size, 16, 8)
    for backbone in ("vgg16", "resnet50", "mobilenetv2")
    for size in (128, 256, 384)
] + [("infer", b, 256, n, 8) for b in ("vgg16", "resnet50", "mobilenetv2") for n in (1, 16)]


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


def _model(backbone: str, size: int, precision: str, output_stride: int, skip_channels: int):
    keras.config.set_dtype_policy(precision)
    head_channels = 128 if backbone.startswith("mobilenetv2") else 256  # as the recipes
    return build_pspnet((size, size, 3), 1, backbone=backbone, backbone_weights=None,
                        head_channels=head_channels, output_stride=output_stride,
                        skip_channels=skip_channels or None)  # fmt: skip


def _random_slices(count: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    masks = (rng.random((count, size, size)) > 0.97).astype(np.uint8)
    return images, masks


class _StepTimer(keras.callbacks.Callback):
    """Records when each step ends; stops training once `seconds` of timed steps are in."""

    def __init__(self, warmup: int, seconds: float):
        super().__init__()
        self.warmup, self.seconds = warmup, seconds
        self.ends: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())
        timed = self.ends[self.warmup - 1 :]  # from the end of the last warm-up step
        if _timed_enough(len(timed) - 1, timed[-1] - timed[0] if timed else 0.0, self.seconds):
            self.model.stop_training = True


def measure_pipeline(backbone, size, batch, *, steps, **_) -> dict:
    """The tf.data input alone (augmentation on), on random slices; no model."""
    from data_pipeline import time_pipeline

    images, masks = _random_slices(8 * batch, size)
    timing = time_pipeline(images, masks, batch_size=batch, batches=10 * steps)
    return {"img_per_s": timing["img_per_s"], "ms_per_step": timing["ms_per_batch"]}


def measure_training(
    backbone,
    size,
    batch,
    *,
    precision,
    output_stride,
    skip_channels,
    jit_compile,
    warmup,
    steps,
    seconds,
    cached=False,
) -> dict:
    model = _model(backbone, size, precision, output_stride, skip_channels)
    loss = get_loss("bce_batch_dice", num_classes=1)  # the recipe's
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=loss, jit_compile=jit_compile)
    images, masks = _random_slices(max(4 * batch, 32), size)
    if cached and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # One batch kept in memory: the step time with no input work, to compare against.
        one = (images[:batch].astype("float32"), masks[:batch, ..., None].astype("float32"))
        fit_input = dict(x=tf.data.Dataset.from_tensors(one).repeat())
    elif keras.backend.backend() == "tensorflow":
        from pspseg_utils import data

        stream = data.make_dataset(images, masks, batch_size=batch, augment=True, shuffle=True,
                                   repeat=True, drop_remainder=True)  # fmt: skip
        fit_input = dict(x=stream)
    else:
        x = np.resize(images, (batch * (warmup + steps), size, size, 3)).astype("float32")
        y = np.resize(masks, (batch * (warmup + steps), size, size))[..., None].astype("float32")
        fit_input = dict(x=x, y=y, batch_size=batch)
    timer = _StepTimer(warmup, seconds)
    model.fit(**fit_input, steps_per_epoch=warmup + steps, epochs=1, verbose=0,
              callbacks=[timer])  # fmt: skip
    timed = len(timer.ends) - warmup
    elapsed = timer.ends[-1] - timer.ends[warmup - 1]
    return {"img_per_s": timed * batch / elapsed, "ms_per_step": 1000 * elapsed / timed,
            "steps_timed": timed}  # fmt: skip


def measure_inference(
    backbone, size, batch, *, precision, output_stride, skip_channels, warmup, steps, seconds, **_
) -> dict:
    model = _model(backbone, size, precision, output_stride, skip_channels)
    images = _random_slices(batch, size)[0].astype("float32")
    for _ in range(warmup):
        model.predict_on_batch(images)
    start = time.perf_counter()
    timed, elapsed = 0, 0.0
    while timed < steps and not _timed_enough(timed, elapsed, seconds):
        model.predict_on_batch(images)
        timed, elapsed = timed + 1, time.perf_counter() - start
    return {"img_per_s": timed * batch / elapsed, "ms_per_step": 1000 * elapsed / timed,
            "steps_timed": timed}  # fmt: skip


MEASURES = {"pipeline": measure_pipeline, "train": measure_training, "infer": measure_inference}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--what", choices=list(MEASURES))
    parser.add_argument("--backbone", choices=list(BACKBONES))
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument(
        "--precision",
        default="auto",
        help="auto (bfloat16 where the CPU/GPU has it), float32, mixed_float16, ...",
    )
    parser.add_argument(
        "--output-stride",
        type=int,
        choices=[8, 16, 32],
        default=8,
        help="output stride of a --what measurement: 8 (the PSPNet paper's dilated features), "
        "16 or 32 (cheaper, coarser); the sets say their own",
    )
    parser.add_argument(
        "--skip-channels",
        type=int,
        default=0,
        help="skip channels of a --what measurement's stride-4 decoder (the CPU recipe's: 32); "
        "0, the default: none; the sets say their own",
    )
    parser.add_argument("--xla", action="store_true", help="jit_compile=True (on GPUs)")
    parser.add_argument(
        "--cached",
        action="store_true",
        help="train on one cached batch instead of the pipeline: equal step times mean the "
        "input is not the bottleneck",
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="steps run and not timed (the first traces)"
    )
    parser.add_argument("--steps", type=int, default=8, help="most steps timed")
    parser.add_argument(
        "--seconds",
        type=float,
        default=12.0,
        help=f"stop timing after this many seconds, once {MIN_TIMED_STEPS} steps are timed: "
        "keeps the CPU set within 10 minutes on slower machines",
    )
    args = parser.parse_args()
    if args.warmup < 1:
        parser.error(f"--warmup must be at least 1 (the step that traces), got {args.warmup}")
    if args.what:
        plan = [(args.what, args.backbone, args.image_size, args.batch, args.output_stride,
                 args.skip_channels)]  # fmt: skip
    else:
        plan = CPU_SET if args.set == "cpu" else GPU_SET
    precision = args.precision
    if precision == "auto" and keras.backend.backend() == "tensorflow":
        from pspseg_utils.training import choose_precision

        precision = choose_precision("auto")
    elif precision == "auto":  # the GPU check on JAX: Hopper and Ampere have bfloat16
        precision = "mixed_bfloat16"
    device, cpu = _device(), host_cpu()
    # What training was fed: only TensorFlow runs the tf.data pipeline or the cached batch.
    if keras.backend.backend() != "tensorflow":
        input_kind = "numpy"
    else:
        input_kind = "cached" if args.cached else "pipeline"
    for what, backbone, size, batch, output_stride, skip_channels in (
        Measurement(*row) for row in plan
    ):
        result = MEASURES[what](backbone, size, batch, precision=precision, jit_compile=args.xla,
                                output_stride=output_stride,
                                skip_channels=skip_channels, warmup=args.warmup,
                                steps=args.steps, seconds=args.seconds,
                                cached=args.cached)  # fmt: skip
        print(json.dumps({
            "what": what, "backbone": backbone, "image_size": size, "batch": batch,
            "output_stride": output_stride if what != "pipeline" else None,
            "skip_channels": skip_channels if what != "pipeline" else None,
            "input": input_kind,
            "precision": precision, "xla": args.xla, "device": device, "host_cpu": cpu,
            "backend": keras.backend.backend(),
            **{k: round(v, 2) for k, v in result.items()},
            "peak_host_mem_mb": round(_peak_host_mb()),
            "peak_device_mem_mb": _peak_device_mb(),
        }), flush=True)  # fmt: skip
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
