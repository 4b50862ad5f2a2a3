"""How many training images per second the tf.data pipeline delivers, on the CPU.

What it measures: the input pipeline as training uses it, after decoding. The slices are decoded
once with `data.load_arrays` (not timed), then `data.make_dataset(..., augment=True,
shuffle=True, repeat=True)` is iterated: a few warm-up batches, then `--batches` timed batches.
No model runs, so this is the ceiling the pipeline puts on training speed.

    python benchmarks/data_pipeline.py                                   # 8 synthetic patients
    python benchmarks/data_pipeline.py --data /work/shared/data/lgg_dev  # real data

Prints one JSON line:
    {"what": "pipeline", "image_size": 256, "batch": 16, "augment": true, "device": "cpu",
     "img_per_s": ..., "ms_per_batch": ..., "peak_host_mem_mb": ...}
peak_host_mem_mb is this process's peak resident memory (ru_maxrss), arrays included.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the pipeline runs on the CPU

WARMUP_BATCHES = 5


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, help="dataset folder (default: 8 synthetic patients in a temp dir)"
    )
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=100, help="timed batches (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def time_pipeline(images, masks, *, batch_size: int, batches: int, seed: int = 0) -> dict:
    """Batches per second out of `data.make_dataset` with augmentation, after a warm-up."""
    from pspseg_utils import data

    dataset = data.make_dataset(
        images, masks, batch_size=batch_size, augment=True, shuffle=True, repeat=True, seed=seed
    )
    stream = iter(dataset)
    for _ in range(WARMUP_BATCHES):
        next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    seconds = time.perf_counter() - start
    return {
        "img_per_s": round(batches * batch_size / seconds, 1),
        "ms_per_batch": round(1000 * seconds / batches, 2),
    }


def measure(data_dir: Path, args: argparse.Namespace) -> dict:
    import tensorflow as tf  # noqa: F401 - imported before timing anything

    from pspseg_utils import data

    records = data.find_slices(data_dir, progress=False)
    images, masks = data.load_arrays(records, image_size=args.image_size, progress=False)
    timing = time_pipeline(
        images, masks, batch_size=args.batch_size, batches=args.batches, seed=args.seed
    )
    return {
        "what": "pipeline",
        "image_size": args.image_size,
        "batch": args.batch_size,
        "augment": True,
        "device": "cpu",
        **timing,
        "peak_host_mem_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.data is not None:
        result = measure(args.data, args)
    else:
        from pspseg_utils.synthetic import generate_dataset

        with tempfile.TemporaryDirectory() as temp:
            generate_dataset(temp, num_patients=8, seed=0, image_size=256, progress=False)
            result = measure(Path(temp), args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
