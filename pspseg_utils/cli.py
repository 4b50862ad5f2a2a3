"""The `pspseg` command line (also `python -m pspseg_utils`).

Each sub-command is a thin layer over the package: it parses arguments, calls one function and
prints what happened. Errors in the user's data or arguments print a message and exit with
status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pspseg_utils import data

EPILOG = """\
examples:
  pspseg synth data/synthetic --patients 20        # an offline LGG-like dataset
  pspseg check data/synthetic                      # validate it and count what is there
  pspseg prepare data/lgg/kaggle_3m data/lgg_png   # Kaggle TIFFs -> the article's PNG layout

Real data: https://www.kaggle.com/datasets/mateuszbuda/lgg-mri-segmentation (see data/README.md).
"""


def _synth(args: argparse.Namespace) -> int:
    from pspseg_utils.synthetic import generate_dataset

    root = generate_dataset(
        args.out_dir, num_patients=args.patients, seed=args.seed, image_size=args.image_size
    )
    summary = data.summarize(data.find_slices(root, progress=False), layout="kaggle")
    print(
        f"Wrote {summary.patients} synthetic patients, {summary.slices} slices "
        f"({summary.tumour_slices} with tumour) to {root}"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    layout, _ = data.detect_layout(args.data_dir)
    records = data.find_slices(args.data_dir, num_classes=args.num_classes, progress=not args.json)
    summary = data.summarize(records, layout=layout)
    if args.json:
        print(json.dumps(summary.as_dict()))
    else:
        share = summary.tumour_slices / summary.slices
        print(
            f"OK: {args.data_dir} ({layout} layout)\n"
            f"  patients:      {summary.patients}\n"
            f"  slices:        {summary.slices}\n"
            f"  tumour slices: {summary.tumour_slices} ({share:.0%})\n"
            f"  image shape:   {'x'.join(map(str, summary.image_shape))}"
        )
    return 0


def _prepare(args: argparse.Namespace) -> int:
    records = data.prepare(args.kaggle_dir, args.out_dir)
    print(f"Wrote {len(records)} image/mask PNG pairs to {Path(args.out_dir)}/images and /masks")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pspseg",
        description="Brain-tumour segmentation on MRI with PSPNet (Keras 3): data, training, "
        "inference and evaluation.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser(
        "synth",
        help="generate a synthetic LGG-like dataset (Kaggle layout)",
        description="Write an LGG-like dataset in the Kaggle layout: 3-channel 256x256 slices with "
        "skull, brain, ventricles and tumours that are bright on FLAIR. Deterministic per seed.",
    )
    synth.add_argument(
        "out_dir",
        type=Path,
        metavar="OUT_DIR",
        help="folder to create (kaggle_3m/ is written inside it)",
    )
    synth.add_argument("--patients", type=int, default=20, help="number of patients (default 20)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--image-size", type=int, default=256, help="slice size (default 256)")
    synth.set_defaults(run=_synth)

    check = commands.add_parser(
        "check",
        help="validate a dataset and count patients, slices, tumour slices",
        description="Read every image and mask of a dataset in the Kaggle layout "
        "(kaggle_3m/<patient>/*.tif) or the article layout (images/ + masks/) and report what "
        "is there, or every problem found with the file and the fix (exit status 1).",
    )
    check.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    check.add_argument(
        "--num-classes",
        type=int,
        default=2,
        help="labels allowed in masks are 0..N-1 (default 2: binary, 0/1 or 0/255)",
    )
    check.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    check.set_defaults(run=_check)

    prepare = commands.add_parser(
        "prepare",
        help="convert the Kaggle TIFF layout to the article's PNG layout",
        description="Write images/<patient>_<n>.png and masks/<patient>_<n>.png (labels 0/1) "
        "from a Kaggle-layout dataset, keeping patient ids in the names.",
    )
    prepare.add_argument("kaggle_dir", type=Path, metavar="KAGGLE_DIR")
    prepare.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    prepare.set_defaults(run=_prepare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.run(args)
    except data.DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        status = 1
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        status = 2
    if argv is None:
        sys.exit(status)
    return status
