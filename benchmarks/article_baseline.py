"""The article's `vgg_pspnet` on its own stack, timed on this machine: the baseline of issue 6.

Runs the blog article's code path (`keras_segmentation` 0.3.0 on TensorFlow 2.15, Keras 2):
`vgg_pspnet(n_classes=2, 384, 384)`, `model.train(...)` fed by its Python generator, and
`model.predict_segmentation(inp=path)`, on generated 256 x 256 PNG slices (LGG's size; the
generator resizes them). Prints one JSON line: training img/s and ms per step, prediction ms
per slice, and the machine (`host_cpu`, as `throughput.py` names it).

That stack no longer installs next to Keras 3, so it needs a virtual environment of its own
(keras-segmentation pins an h5py that has no wheel for Python 3.11, hence --no-deps):

    python3 -m venv /tmp/article
    /tmp/article/bin/pip install "tensorflow-cpu==2.15.0" "numpy<2" opencv-python-headless tqdm
    /tmp/article/bin/pip install --no-deps keras-segmentation==0.3.0
    /tmp/article/bin/python benchmarks/article_baseline.py

The encoder's ImageNet weights are not loaded (this machine is offline and timing does not
depend on them). Training speed is the difference between two `model.train` calls of different
lengths, divided by the extra steps: each call compiles and traces again, which cancels out.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from machine import host_cpu  # noqa: E402


def write_slices(folder: Path, count: int, seed: int = 0) -> tuple[Path, Path]:
    """`count` random 256 x 256 slices and 0/1 masks in the article's layout (PNG files)."""
    rng = np.random.default_rng(seed)
    images, masks = folder / "images", folder / "annotations"
    images.mkdir(parents=True)
    masks.mkdir()
    for index in range(count):
        cv2.imwrite(str(images / f"{index}.png"), rng.integers(0, 256, (256, 256, 3), np.uint8))
        cv2.imwrite(str(masks / f"{index}.png"), (rng.random((256, 256)) > 0.97).astype(np.uint8))
    return images, masks


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=384, help="input height and width")
    parser.add_argument("--batch", type=int, default=2, help="the article's batch size")
    parser.add_argument("--steps", type=int, default=10, help="extra steps that are timed")
    parser.add_argument("--predictions", type=int, default=10, help="slices predicted, timed")
    args = parser.parse_args()

    # Its progress bars and import notices go to stderr, so that stdout holds the result alone.
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        from keras_segmentation.models import pspnet
        from keras_segmentation.models.vgg16 import get_vgg_encoder

        # No ImageNet download: same network, random weights.
        pspnet.get_vgg_encoder = functools.partial(get_vgg_encoder, pretrained=None)
        model = pspnet.vgg_pspnet(n_classes=2, input_height=args.size, input_width=args.size)
        images, masks = write_slices(Path(tmp), 16)
        train = functools.partial(
            model.train, train_images=str(images), train_annotations=str(masks), epochs=1,
            batch_size=args.batch, verify_dataset=False,
        )  # fmt: skip
        seconds = []
        for steps in (2, 2 + args.steps):  # the shorter call's time is subtracted
            start = time.perf_counter()
            train(steps_per_epoch=steps)
            seconds.append(time.perf_counter() - start)
        train_seconds = (seconds[1] - seconds[0]) / args.steps
        slice_path = str(images / "0.png")
        model.predict_segmentation(inp=slice_path)  # the first call traces
        start = time.perf_counter()
        for _ in range(args.predictions):
            model.predict_segmentation(inp=slice_path)
        predict_seconds = (time.perf_counter() - start) / args.predictions
    import tensorflow as tf

    print(json.dumps({
        "what": "article_vgg_pspnet", "image_size": args.size, "batch": args.batch,
        "stack": f"tensorflow {tf.__version__}, keras_segmentation 0.3.0",
        "precision": "float32", "device": "cpu", "host_cpu": host_cpu(),
        "python": platform.python_version(),
        "train_img_per_s": round(args.batch / train_seconds, 3),
        "train_ms_per_step": round(1000 * train_seconds, 1),
        "predict_ms_per_slice": round(1000 * predict_seconds, 1),
        "peak_host_mem_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
