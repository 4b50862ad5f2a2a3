"""The `pspseg` command line (also `python -m pspseg_utils`).

Each sub-command is a thin layer over the package: it parses arguments, calls one function and
prints what happened. Problems in the user's data, a download that cannot be made, a run folder
another training holds, and operating-system errors (a full disk, no permission) print one line
and exit with status 1; bad arguments, missing and damaged files exit with status 2; Ctrl-C
exits with 130 (for `train`: run the same command to resume). None prints a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pspseg_utils import config, data, recipes
from pspseg_utils.runlock import RunFolderBusy

# evaluation.CLEAN_UP_THRESHOLD and _SCALES, spelled out so that `--help` does not wait for Keras
# to import.
CLEAN_UP_THRESHOLD = 0.3
CLEAN_UP_SCALES = (1.0, 1.5)
MODEL_HELP = "a .keras file or a run folder (best.keras, else last.keras)"

EPILOG = """\
a first session, offline:
  pspseg synth data/synthetic --patients 20               # an LGG-like dataset to learn on
  pspseg check data/synthetic                             # validate it, count what is there
  pspseg train --data data/synthetic --out runs/first     # train (resumes if interrupted)
  pspseg evaluate --model runs/first --data data/synthetic --split test
  pspseg predict --model runs/first data/synthetic/kaggle_3m/SYN_AA_0001_20000101 --out preds
  pspseg export --model runs/first --out exported

other:
  pspseg prepare data/lgg/kaggle_3m data/lgg_png          # Kaggle TIFFs -> the article's PNGs
  pspseg COMMAND --help                                   # every option of a command

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


def _train(args: argparse.Namespace) -> int:
    from pspseg_utils.training import default_config, train

    given = config.from_cli({name: getattr(args, name) for _, name, _ in config.cli_options()})
    settings = (
        default_config(**given)
        if not args.quick
        else config.TrainConfig(**{**recipes.QUICK, **given})
    )
    result = train(args.data, args.out, settings, resume=not args.no_resume)
    how = f", stopped by the {result.stopped_early}" if result.stopped_early else ""
    split = "test" if settings.test_fraction > 0 else "val"
    print(
        f"Trained {result.epochs_done} epoch(s){how}. Run folder: {args.out}\n"
        f"Next: pspseg evaluate --model {args.out} --data {args.data} --split {split}"
    )
    return 0


def _predict(args: argparse.Namespace) -> int:
    from pspseg_utils import inference

    files = []
    for item in args.inputs:
        if item.is_dir():
            files += data.find_images(item)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    if not files:
        raise FileNotFoundError("no images among the inputs (.png, .tif, .jpg; *_mask skipped)")
    _check_writable(args.out / "masks")  # before the model loads and the predictions run
    model = inference.load_model(args.model)
    written = inference.predict_files(
        model,
        files,
        args.out,
        threshold=args.threshold,
        tta=args.tta,
        scales=args.scales,
        keep_largest=args.keep_largest,
    )
    print(f"Wrote {len(written)} masks to {args.out}/masks and overlays to {args.out}/overlays")
    return 0


def _check_writable(path: Path) -> None:
    """Create `path`'s folder and a file there, then delete it: OSError (naming the place and
    the fix, see data.write_failure) if `path` cannot be written."""
    probe = path.with_name(f".{path.name}.probe")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise OSError(error.errno, data.write_failure(error, path)) from error


def _run_folder(model_path: Path) -> Path:
    return model_path if model_path.is_dir() else model_path.parent


def _evaluate(args: argparse.Namespace) -> int:
    from pspseg_utils import evaluation, inference
    from pspseg_utils.training import load_split

    patients = None  # every patient in --data
    if args.split != "all":
        run_dir = _run_folder(args.model)
        if not (run_dir / "split.json").exists():
            raise FileNotFoundError(
                f"{run_dir}/split.json not found: --split {args.split} needs the run folder "
                "that trained the model; use --split all to evaluate every patient in --data"
            )
        patients = load_split(run_dir)[args.split]
        if not patients:
            raise ValueError(
                f"{run_dir} held out no {args.split} patients (it was trained with "
                f"--{args.split}-fraction 0, as the recipe does); use --split val, or --split "
                "all on a dataset it never saw"
            )
    if args.out:  # find out now, not after scoring every slice, that the tables cannot be written
        _check_writable(args.out)
    model = inference.load_model(args.model)
    records = data.find_slices(
        args.data, num_classes=inference.mask_labels_of(model), progress=not args.json
    )
    if patients is not None:
        records = data.select_patients(records, patients)
        if not records:
            raise ValueError(
                f"none of the run's {args.split} patients are in {args.data}; is it the data "
                "the model was trained on? Use --split all for another dataset."
            )
    result = evaluation.evaluate(
        model,
        records,
        threshold=args.threshold,
        tta=args.tta,
        scales=args.scales,
        keep_largest=args.keep_largest,
        progress=not args.json,
    )
    if args.out:
        evaluation.write_csv(result.slices, args.out)
        patients = args.out.with_name(f"{args.out.stem}_patients.csv")
        evaluation.write_csv(result.patients, patients)
    if args.json:  # strict JSON: an undefined score (NaN) is null
        summary = {
            k: None if isinstance(v, float) and v != v else v for k, v in result.summary.items()
        }
        print(json.dumps(summary))
    else:
        s = result.summary
        print(
            f"{s['patients']} patients, {s['slices']} slices ({args.split})\n"
            f"  Dice per patient: mean {s['patient_dice_mean']:.3f}, "
            f"median {s['patient_dice_median']:.3f}\n"
            f"  Dice per slice:   mean {s['slice_dice_mean']:.3f} "
            f"(slices with tumour: {s['slice_dice_tumour_mean']:.3f})\n"
            f"  Tumour detected on slices: sensitivity {s['detection_sensitivity']:.3f}, "
            f"specificity {s['detection_specificity']:.3f}"
        )
        if args.out:
            print(f"  Tables: {args.out}, {patients}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from pspseg_utils.export import export

    sizes = export(args.model, args.out)
    for name, size in sizes.items():
        print(f"{args.out / name}: {size / 1e6:.1f} MB")
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
    check.add_argument(
        "data_dir",
        type=Path,
        metavar="DATA_DIR",
        help="a dataset folder: kaggle_3m/ (or a folder above it) or images/ + masks/",
    )
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
    prepare.add_argument(
        "kaggle_dir", type=Path, metavar="KAGGLE_DIR", help="kaggle_3m/ or a folder above it"
    )
    prepare.add_argument(
        "out_dir", type=Path, metavar="OUT_DIR", help="a new or empty folder to write into"
    )
    prepare.set_defaults(run=_prepare)

    train = commands.add_parser(
        "train",
        help="train a PSPNet with a patient-level split, resuming if interrupted",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Train on DATA (either layout), split by patient, checkpointing every epoch into OUT:
last.keras, best.keras (best validation Dice), log.csv, config.json, split.json and, with a
time budget, schedule.json (the epochs that fit in it).
Running the same command again resumes after the last finished epoch.

Unset options keep the recipe's defaults:
  without a GPU (the CPU recipe): mobilenetv2_050, 128 px, batch 16, lr 0.002, bfloat16
      where the CPU has it, a 25-minute budget: as many epochs as fit in it (at most 100,
      which take 22-24 minutes for 40 patients on a 2-core AMD EPYC with AVX-512 BF16),
      the learning rate decaying over them;
  with a GPU: vgg16 with ImageNet weights, 256 px, batch 16, mixed precision (float16 on
      a T4), a 20-minute budget: at most 60 epochs, as many as fit (an estimated 35 on a
      T4; all 60 in minutes on an H100).
Always: AdamW, poly learning-rate decay (power 0.9), BCE + Dice loss (the Dice pooled over
the batch) plus 0.4 x the loss of an auxiliary head (training only), augmentation (flip,
rotation, scale, intensity, and FLAIR in place of a missing sequence in 15% of slices), seed 0.
15% of patients pick the best epoch (validation); all the others train: none is held out, since
the model learns more from every patient, and its score on unseen patients is measured by
cross-validation (README, Results). --test-fraction 0.15 holds some out to score yourself.""",
        epilog="example:\n  pspseg train --data data/synthetic --out runs/first --time-budget 10",
    )
    train.add_argument("--data", type=Path, required=True, help="dataset folder")
    train.add_argument("--out", type=Path, required=True, help="run folder to write")
    for flag, _, keywords in config.cli_options():  # one flag per TrainConfig setting
        train.add_argument(flag, **keywords)
    train.add_argument(
        "--no-resume", action="store_true", help="start afresh even if OUT has a checkpoint"
    )
    train.add_argument(
        "--quick",
        action="store_true",
        help="tiny settings (64 px, 2 short epochs) for a smoke test",
    )
    train.set_defaults(run=_train)

    predict = commands.add_parser(
        "predict",
        help="predict masks for images or folders, writing masks and overlays",
        description="Write OUT/masks/<name>.png (labels 0/1, at each image's own size) and "
        "OUT/overlays/<name>.png for every input image (folders are searched; masks are skipped: "
        "*_mask files, and the masks/ folder beside images/). "
        "A model trained with --context-slices also reads each image's neighbours, found by "
        "name (<patient>_<n-1>.tif, <patient>_<n+1>.tif beside <patient>_<n>.tif).",
    )
    predict.add_argument(
        "--model",
        type=Path,
        required=True,
        help=MODEL_HELP,
    )
    predict.add_argument(
        "inputs",
        type=Path,
        nargs="+",
        metavar="INPUT",
        help="image files (.tif, .png, .jpg) or folders of them",
    )
    predict.add_argument("--out", type=Path, required=True, help="folder for masks/ and overlays/")
    _add_prediction_options(predict, largest_of="of each image", clean_up=False)
    predict.set_defaults(run=_predict)

    evaluate = commands.add_parser(
        "evaluate",
        help="Dice, IoU, precision, recall, HD95 per slice and per patient",
        description="Score a model on DATA. --split test|val uses the run folder's split.json "
        "(the patients the model never trained on); --split all scores every patient in DATA. "
        "Per-patient Dice is computed over the whole volume, as in Buda et al. 2019. The "
        "prediction is averaged with that of the mirrored slice and with those of the slice at "
        "1.5 times the model's input size, cut at P(tumour) "
        f"{CLEAN_UP_THRESHOLD}, and only the largest region of each patient's volume is kept "
        "(--no-tta --scales 1 --no-keep-largest score the raw prediction, cut at 0.5).",
    )
    evaluate.add_argument(
        "--model", type=Path, required=True, help="a run folder, or a .keras file inside one"
    )
    evaluate.add_argument(
        "--data", type=Path, required=True, help="the dataset folder the model was trained on"
    )
    evaluate.add_argument(
        "--split",
        choices=["test", "val", "all"],
        default="test",
        help="the run's held-out test patients (default), its validation patients, or every "
        "patient in --data",
    )
    evaluate.add_argument(
        "--out",
        type=Path,
        metavar="CSV",
        help="per-slice table; per-patient goes to CSV_patients.csv beside it",
    )
    evaluate.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_prediction_options(
        evaluate,
        largest_of="of each patient's volume, as Buda et al. 2019 evaluate",
        clean_up=True,
    )
    evaluate.set_defaults(run=_evaluate)

    export = commands.add_parser(
        "export",
        help="write model.keras and a TensorFlow SavedModel, with their sizes",
        description="Export a trained model to OUT/model.keras (no optimizer state) and "
        "OUT/saved_model/. The SavedModel's serving signature takes float32 images "
        "(B, H, W, 3) in 0..255 at the size the model was trained at (resize them first; 9 "
        "channels for a model trained with --context-slices 1) and returns P(tumour) "
        "(B, H, W, 1).",
    )
    export.add_argument(
        "--model",
        type=Path,
        required=True,
        help=MODEL_HELP,
    )
    export.add_argument("--out", type=Path, required=True, help="folder to write into")
    export.set_defaults(run=_export)
    return parser


def _probability(text: str) -> float:
    """argparse type of --threshold: a number strictly between 0 and 1, checked before any
    model is loaded."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number between 0 and 1, got {text!r}"
        ) from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def _positive(text: str) -> float:
    """argparse type of --scales: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _add_prediction_options(
    parser: argparse.ArgumentParser, *, largest_of: str, clean_up: bool
) -> None:
    default_threshold = (
        f"{CLEAN_UP_THRESHOLD} with both clean-up steps, chosen on validation patients; 0.5 "
        "without them"
        if clean_up
        else "0.5"
    )
    parser.add_argument(
        "--threshold",
        type=_probability,
        default=None if clean_up else 0.5,
        help=f"cut-off on P(tumour) (default {default_threshold})",
    )
    parser.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=clean_up,
        help="average with the prediction of the mirrored image "
        f"({'on' if clean_up else 'off'} by default)",
    )
    parser.add_argument(
        "--scales",
        type=_positive,
        nargs="+",
        default=None if clean_up else (1.0,),
        metavar="S",
        help="average the predictions at these multiples of the model's input size, where a "
        "small tumour covers more pixels (multi-scale testing; a PSPNet's only; default "
        + (f"{' '.join(f'{s:g}' for s in CLEAN_UP_SCALES)} for a PSPNet" if clean_up else "1")
        + ")",
    )
    parser.add_argument(
        "--keep-largest",
        action=argparse.BooleanOptionalAction,
        default=None if clean_up else False,
        help=f"keep only the largest connected region {largest_of} "
        f"({'on by default for a tumour/background model' if clean_up else 'off by default'})",
    )


def _os_error_message(error: OSError) -> str:
    """One line for an operating-system error: what failed, on which file, and the fix."""
    if error.filename is None:  # the package's own messages already name the file
        return error.strerror or str(error)
    if isinstance(error, (FileNotFoundError, NotADirectoryError)) and error.errno in (
        errno.ENOENT,
        errno.ENOTDIR,
    ):
        return f"{error.filename}: {error.strerror}; check the path"
    return data.write_failure(error, error.filename)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # TensorFlow is imported later, by the commands that need it; keep its C++ start-up log quiet.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        status = args.run(args)
    except (data.DatasetError, ConnectionError, RunFolderBusy) as error:
        print(f"error: {error}", file=sys.stderr)
        status = 1
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        status = 2
    except (FileExistsError, FileNotFoundError) as error:
        print(f"error: {_os_error_message(error)}", file=sys.stderr)
        status = 2
    except OSError as error:  # a full disk, no permission, a file where a folder should be
        print(f"error: {_os_error_message(error)}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        resume = " Run the same command to resume." if args.command == "train" else ""
        print(f"\nInterrupted.{resume}", file=sys.stderr)
        status = 130
    if argv is None:
        sys.exit(status)
    return status
