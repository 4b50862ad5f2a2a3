"""Training and inference throughput of the PSPNet backbones; one JSON line per measurement.

    python benchmarks/throughput.py                 # the CPU set (under 10 minutes on 2 cores)
    python benchmarks/throughput.py --what train --backbone vgg16 --image-size 384 --batch 2
    python benchmarks/throughput.py --what train --backbone vgg16 --image-size 256 --batch 16 \
        --cached                                    # one cached batch: is the input the limit?
    KERAS_BACKEND=jax python benchmarks/throughput.py --set gpu   # on a GPU machine

Training is timed in steady state: the first steps (tracing, compilation) are run and dropped,
then up to `--steps` steps are timed, fewer where they take more than `--seconds` in all (each
line says how many: `steps_timed`). Input comes through the course's own pipeline
(`data.make_dataset` with augmentation) on random slices when TensorFlow is the backend. On JAX
(the GPU check: the GPU machine has no TensorFlow) XLA is always on and the input is host NumPy
batches, each copied to the GPU at its step, or with `--cached` one batch kept on the GPU.
The GPU set runs each row in a process of its own, so that its peak device memory is its own.
Inference reports batch-1 latency and batched throughput. Peak host memory is the process's
maximum resident set so far.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from machine import accelerator, host_cpu  # noqa: E402

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
    cached: bool = False  # train on one batch kept in memory, not on streamed input


# Rows of Measurement's fields, the last ones left out where they are 0 or False.
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


# Most telling first, so that a lease that ends early still brings the targets of issue 6 back:
# VGG16 at 256 px (its img/s target, and the 12 GB limit at batch 16), the same on one cached
# batch (is the input the limit?) and at a batch that fills the GPU.
GPU_SET = [
    ("train", "vgg16", 256, 16, 8),
    ("train", "vgg16", 256, 16, 8, 0, True),
    ("train", "vgg16", 256, 64, 8),
    ("train", "resnet50", 256, 16, 8),
    ("train", "mobilenetv2", 256, 16, 8),
    *[("infer", b, 256, n, 8) for b in ("vgg16", "resnet50", "mobilenetv2") for n in (1, 16)],
    *[("train", b, s, 16, 8) for s in (128, 384) for b in ("vgg16", "resnet50", "mobilenetv2")],
]
# Timing defaults of each set: GPU steps take milliseconds, CPU steps seconds.
TIMING_DEFAULTS = {"cpu": {"steps": 8, "seconds": 12.0}, "gpu": {"steps": 200, "seconds": 4.0}}


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


def _jax_batches(images, masks, batch: int, *, cached: bool):
    """Endless (image, mask) float32 batches for Keras on JAX, which has no tf.data: host NumPy
    batches in turn, each copied to the device at its step as a data loader's would be, or one
    batch put on the device once (`cached`), the step time with no input work."""
    x, y = images.astype("float32"), masks[..., None].astype("float32")
    batches = [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x) - batch + 1, batch)]
    if cached:
        import jax

        batches = [jax.device_put(batches[0])]
    while True:  # a generator: Keras takes no other endless iterator
        yield from batches


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
    if keras.backend.backend() == "jax":
        fit_input = dict(x=_jax_batches(images, masks, batch, cached=cached))
    elif cached:
        import tensorflow as tf

        # One batch kept in memory: the step time with no input work, to compare against.
        one = (images[:batch].astype("float32"), masks[:batch, ..., None].astype("float32"))
        fit_input = dict(x=tf.data.Dataset.from_tensors(one).repeat())
    else:
        from pspseg_utils import data

        stream = data.make_dataset(images, masks, batch_size=batch, augment=True, shuffle=True,
                                   repeat=True, drop_remainder=True)  # fmt: skip
        fit_input = dict(x=stream)
    timer = _StepTimer(warmup, seconds)
    model.fit(**fit_input, steps_per_epoch=warmup + steps, epochs=1, verbose=0, shuffle=False,
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


def build_parser() -> argparse.ArgumentParser:
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
    parser.add_argument(
        "--xla",
        action="store_true",
        help="jit_compile=True with TensorFlow (slow on CPUs; the GPU set turns it on); on JAX, "
        "XLA is always on",
    )
    parser.add_argument(
        "--cached",
        action="store_true",
        help="train on one cached batch instead of streamed input: equal step times mean the "
        "input is not the bottleneck",
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="steps run and not timed (the first traces)"
    )
    parser.add_argument(
        "--steps", type=int, help="most steps timed (default: 8 on the CPU set, 200 on the GPU's)"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        help=f"stop timing after this many seconds, once {MIN_TIMED_STEPS} steps are timed "
        "(default: 12 on the CPU set, which keeps it within 10 minutes on slower machines; 4 on "
        "the GPU's)",
    )
    return parser


def requested_row(args: argparse.Namespace) -> Measurement:
    """The one measurement that --what and the options beside it ask for."""
    return Measurement(args.what, args.backbone, args.image_size, args.batch, args.output_stride,
                       args.skip_channels, args.cached)  # fmt: skip


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if args.warmup < 1:
        parser.error(f"--warmup must be at least 1 (the step that traces), got {args.warmup}")
    for name, default in TIMING_DEFAULTS[args.set].items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.what:
        run_measurement(requested_row(args), args)
        return
    rows = [Measurement(*fields) for fields in (GPU_SET if args.set == "gpu" else CPU_SET)]
    rows = [row._replace(cached=row.cached or args.cached) for row in rows]
    if args.set == "cpu":
        for row in rows:
            run_measurement(row, args)
        return
    args.xla = True  # on GPUs XLA pays (with TensorFlow too); JAX always compiles anyway
    # One process a row: JAX's peak device memory is the process's, and a row that fails (out
    # of memory, say) leaves the others standing.
    failed = []
    for row in rows:
        child = subprocess.run([sys.executable, __file__, *_row_arguments(row, args)])
        if child.returncode:
            failed.append(f"{row} (exit status {child.returncode})")
    if failed:
        sys.exit(f"{len(failed)} of {len(rows)} rows failed; their errors are above:\n"
                 + "\n".join(failed))  # fmt: skip


def _row_arguments(row: Measurement, args: argparse.Namespace) -> list[str]:
    """The command-line arguments that measure `row` alone, with this run's other settings."""
    arguments = ["--what", row.what, "--backbone", row.backbone, "--image-size", row.image_size,
                 "--batch", row.batch, "--output-stride", row.output_stride,
                 "--skip-channels", row.skip_channels, "--precision", args.precision,
                 "--warmup", args.warmup, "--steps", args.steps, "--seconds", args.seconds,
                 *(["--cached"] if row.cached else []),
                 *(["--xla"] if args.xla else [])]  # fmt: skip
    return [str(argument) for argument in arguments]


def run_measurement(row: Measurement, args: argparse.Namespace) -> None:
    """Measures `row` and prints its JSON line."""
    backend = keras.backend.backend()
    precision = args.precision
    if precision == "auto" and backend == "tensorflow":
        from pspseg_utils.training import choose_precision

        precision = choose_precision("auto")
    elif precision == "auto":  # the GPU check on JAX: Hopper and Ampere have bfloat16
        precision = "mixed_bfloat16"
    xla = args.xla or backend == "jax"  # Keras on JAX without jit runs op by op
    # Only TensorFlow runs the course's tf.data pipeline; JAX is fed NumPy batches.
    streamed = "pipeline" if backend == "tensorflow" else "numpy"
    input_kind = "cached" if row.cached else streamed
    result = MEASURES[row.what](row.backbone, row.image_size, row.batch, precision=precision,
                                jit_compile=xla, output_stride=row.output_stride,
                                skip_channels=row.skip_channels, warmup=args.warmup,
                                steps=args.steps, seconds=args.seconds,
                                cached=row.cached)  # fmt: skip
    print(json.dumps({
        "what": row.what, "backbone": row.backbone, "image_size": row.image_size,
        "batch": row.batch,
        "output_stride": row.output_stride if row.what != "pipeline" else None,
        "skip_channels": row.skip_channels if row.what != "pipeline" else None,
        "input": input_kind,
        "precision": precision, "xla": xla, "device": accelerator(), "host_cpu": host_cpu(),
        "backend": backend,
        **{k: round(v, 2) for k, v in result.items()},
        "peak_host_mem_mb": round(_peak_host_mb()),
        "peak_device_mem_mb": _peak_device_mb(),
    }), flush=True)  # fmt: skip
    keras.backend.clear_session()


if __name__ == "__main__":
    main()
