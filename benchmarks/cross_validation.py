"""Patient-level k-fold cross-validation of the CPU recipe: every patient tested exactly once.

    python benchmarks/cross_validation.py --data ../shared/data/lgg_dev --out runs/cv --fold 0
    ...                                                                       --fold 4
    python benchmarks/cross_validation.py --summarize benchmarks/results/cross_validation_*.jsonl

--summarize prints one summary per recipe found in the lines (its --set settings and its
schedule, a time budget or a number of epochs), and for each recipe with settings, how it
compares, patient by patient, with the recipe without them on the same schedule (or, with
--against SETTINGS, with the recipe with those settings: for lines trained before and after a
default changed, e.g. --against '{"max_gamma": 2.0}').

To screen an idea at a small cost, train every fold for a fixed number of epochs (no time budget,
so other work on the machine cannot change what is trained) with one setting changed:

    python benchmarks/cross_validation.py --data ../shared/data/lgg_dev --out runs/cv-g2 \
        --fold 0 --epochs 16 --set max_gamma=2.0

A fold trains the recipe (`pspseg train`'s defaults without a GPU: 25 minutes) on the patients
of the other folds, less a validation share that picks best.keras, into OUT/fold-K, then scores
its test fold as `pspseg evaluate` does (mirrored, at scales 1 and 1.5, largest region, cut at
0.3), and prints one
JSON line with every test patient's Dice. Folds (`data.patient_folds`) are stratified by tumour
burden and fixed by --seed, so folds run in different sessions add up. --summarize reads such
lines and prints the mean, median, worst decile and the mean per institution (the TCGA code in
the patient's name) over all patients tested.

Which checkpoint scores the test fold: best.keras (by validation Dice), or with `--checkpoint
last.keras` the last epoch's. A fold already trained is then only scored again (training
resumes and finds nothing left to do), and --summarize compares the two patient by patient:

    python benchmarks/cross_validation.py --data ../shared/data/lgg_dev --out runs/cv \
        --fold 0 --checkpoint last.keras
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from machine import accelerator, host_cpu  # noqa: E402

from pspseg_utils import recipes  # noqa: E402  (light: no TensorFlow)
from pspseg_utils.cli import CLEAN_UP_SCALES  # noqa: E402  (evaluation's, without TensorFlow)

BEST = "best.keras"
RECIPE_MINUTES = recipes.CPU["time_budget_minutes"]  # `pspseg train` without a GPU
RECIPE = (f"--time-budget {RECIPE_MINUTES}", "{}")  # recipe_of the recipe itself


def fold_split(records, fold: int, *, folds: int, val_fraction: float, seed: int) -> dict:
    """{"train", "val", "test"}: test is fold `fold`; val, `val_fraction` of all patients drawn
    from the other folds (stratified, `data.split_patients`); train, the rest."""
    from pspseg_utils import data

    test = data.patient_folds(records, folds=folds, seed=seed)[fold]
    rest = [r for r in records if r.patient_id not in set(test)]
    remaining = len({r.patient_id for r in rest})
    share = val_fraction * (remaining + len(test)) / remaining
    inner = data.split_patients(rest, val_fraction=share, test_fraction=0.0, seed=seed)
    return {"train": inner["train"], "val": inner["val"], "test": test}


def institution(patient: str) -> str:
    """The TCGA institution code of an LGG patient: TCGA_CS_4941_19960909 -> "CS"."""
    parts = patient.split("_")
    return parts[1] if len(parts) > 2 else "?"


def summarize(lines: list[dict]) -> dict:
    """Mean, median and worst-decile mean of the per-patient Dice over every fold's patients,
    and the mean per institution; each patient counted once (a fold run twice: its last line)."""
    dice = _dice(lines)
    scores = sorted(dice.values())
    decile = scores[: max(1, round(len(scores) / 10))]
    by_site: dict[str, list[float]] = {}
    for patient, value in dice.items():
        by_site.setdefault(institution(patient), []).append(value)
    return {
        "what": "cross_validation_summary",
        "folds": sorted({line["fold"] for line in lines}),
        "patients": len(scores),
        "patient_dice_mean": round(statistics.fmean(scores), 4),
        "patient_dice_median": round(statistics.median(scores), 4),
        "worst_decile_mean": round(statistics.fmean(decile), 4),
        "by_institution": {
            site: {"patients": len(v), "mean": round(statistics.fmean(v), 4)}
            for site, v in sorted(by_site.items())
        },
    }


def parse_settings(pairs: list[str]) -> dict:
    """TrainConfig overrides from FIELD=VALUE strings; VALUE is read as JSON (2.0, true, null,
    "vgg16") and else kept as a string: ["max_gamma=2.0", "backbone=vgg16"] ->
    {"max_gamma": 2.0, "backbone": "vgg16"}."""
    settings = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        if not sep or not field:
            raise ValueError(f"--set takes FIELD=VALUE, got {pair!r}")
        try:
            settings[field] = json.loads(value)
        except json.JSONDecodeError:
            settings[field] = value
    return settings


def command_line(args) -> str:
    """The command that runs this fold again, with every option that changes what is trained."""
    schedule = f"--epochs {args.epochs}" if args.epochs else f"--time-budget {args.time_budget}"
    settings = "".join(f" --set {pair}" for pair in args.set)
    if args.checkpoint != BEST:
        settings += f" --checkpoint {args.checkpoint}"
    return (
        f"python benchmarks/cross_validation.py --data {args.data} --out {args.out} "
        f"--fold {args.fold} --folds {args.folds} {schedule} --seed {args.seed}{settings}"
    )


def recipe_of(line: dict) -> tuple[str, str]:
    """(schedule, settings) of a fold line: ("--epochs 16", '{"max_gamma": 2.0}'), or
    ("--time-budget 25.0", "{}") for the recipe itself; a checkpoint other than best.keras
    counts as a setting: '{"checkpoint": "last.keras"}', and so do prediction scales other than
    evaluate's: '{"scales": [1.0]}' for the lines scored before it predicted at two."""
    words = line["command"].split()
    flag = next(w for w in words if w in ("--epochs", "--time-budget"))
    schedule = f"{flag} {words[words.index(flag) + 1]}"
    settings = dict(line.get("settings", {}))
    if line.get("checkpoint", BEST) != BEST:
        settings["checkpoint"] = line["checkpoint"]
    scales = line.get("scales", [1.0])
    if scales != list(CLEAN_UP_SCALES):
        settings["scales"] = scales
    return schedule, json.dumps(settings, sort_keys=True)


def compare(lines: list[dict], baseline: list[dict]) -> dict:
    """Patient by patient, a recipe's Dice against a baseline's, over the patients both tested:
    the mean difference, and how many patients gained or lost more than 0.05."""
    ours, theirs = _dice(lines), _dice(baseline)
    differences = [ours[p] - theirs[p] for p in sorted(ours.keys() & theirs.keys())]
    return {
        "patients": len(differences),
        "mean_difference": round(statistics.fmean(differences), 4) if differences else None,
        "gained_over_0.05": sum(d > 0.05 for d in differences),
        "lost_over_0.05": sum(d < -0.05 for d in differences),
    }


def _dice(lines: list[dict]) -> dict[str, float]:
    dice = {}
    for line in lines:
        dice.update(line["patient_dice"])
    return dice


def summarize_recipes(lines: list[dict], *, baseline: str = "{}") -> list[dict]:
    """One summary per recipe in `lines` (see `recipe_of`), with its comparison against the
    recipe with the `baseline` settings (JSON; "{}": none) on the same schedule, and, for
    another schedule, against the 25-minute recipe itself (`RECIPE`), where the lines hold
    them. A baseline other than "{}" serves lines trained after a default changed: the lines
    before it name that setting, the lines after it do not."""
    baseline = json.dumps(json.loads(baseline), sort_keys=True)
    key = "against_no_settings" if baseline == "{}" else "against_baseline"
    groups: dict[tuple[str, str], list[dict]] = {}
    for line in lines:
        groups.setdefault(recipe_of(line), []).append(line)
    summaries = []
    # Per schedule, the recipe without settings first.
    for (schedule, settings), group in sorted(
        groups.items(), key=lambda g: (g[0][0], g[0][1] != "{}", g[0][1])
    ):
        summary = {"schedule": schedule, "settings": json.loads(settings), **summarize(group)}
        baseline_lines = groups.get((schedule, baseline))
        if settings != baseline and baseline_lines:
            summary[key] = compare(group, baseline_lines)
        if schedule != RECIPE[0] and RECIPE in groups:
            summary["against_25_minutes"] = compare(group, groups[RECIPE])
        summaries.append(summary)
    return summaries


def run_fold(args) -> dict:
    import keras

    from pspseg_utils import data, evaluation, inference, training

    records = data.find_slices(args.data, progress=False)
    split = fold_split(records, args.fold, folds=args.folds, val_fraction=0.15, seed=args.seed)
    settings = parse_settings(args.set)
    if args.epochs:
        schedule = {"epochs": args.epochs, "time_budget_minutes": None}
    else:
        schedule = {"time_budget_minutes": args.time_budget}
    config = training.default_config(**schedule, seed=args.seed, **settings)
    run_dir = os.path.join(args.out, f"fold-{args.fold}")
    start = time.monotonic()
    result = training.train(args.data, run_dir, config, progress=False, split=split)
    minutes = (time.monotonic() - start) / 60
    model = inference.load_model(os.path.join(run_dir, args.checkpoint))
    scales = evaluation.CLEAN_UP_SCALES  # evaluate's default for a PSPNet, named to be recorded
    scores = evaluation.evaluate(
        model, data.select_patients(records, split["test"]), scales=scales, progress=False
    )
    return {
        "what": "cross_validation_fold",
        "command": command_line(args),
        "fold": args.fold,
        "folds": args.folds,
        "backbone": config.backbone,
        "image_size": config.image_size,
        "settings": settings,
        "checkpoint": args.checkpoint,
        "scales": list(scales),
        "precision": training.choose_precision(config.precision),
        "host_cpu": host_cpu(),
        "backend": keras.backend.backend(),
        "device": accelerator(),
        "epochs": result.epochs_done,
        "train_minutes": round(minutes, 1) if result.history else None,  # None: only scored
        "split_sizes": {name: len(patients) for name, patients in split.items()},
        "patient_dice_mean": round(scores.summary["patient_dice_mean"], 4),
        "patient_dice_median": round(scores.summary["patient_dice_median"], 4),
        "patient_dice": {row["patient"]: round(row["dice"], 4) for row in scores.patients},
        "peak_host_mem_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="dataset folder (Kaggle or article layout)")
    parser.add_argument("--out", default="runs/cv", help="folder of the folds' run folders")
    parser.add_argument("--fold", type=int, help="which fold to test, 0 .. FOLDS-1")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument(
        "--time-budget", type=float, default=RECIPE_MINUTES, help="minutes of training"
    )
    parser.add_argument("--epochs", type=int, help="train this many epochs, with no time budget")
    parser.add_argument("--seed", type=int, default=0, help="fixes the folds and the training")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change one TrainConfig field from the recipe (repeatable), e.g. max_gamma=2.0",
    )
    parser.add_argument(
        "--checkpoint",
        choices=(BEST, "last.keras"),
        default=BEST,
        help="which checkpoint scores the test fold (a fold already trained is scored again)",
    )
    parser.add_argument("--summarize", nargs="+", metavar="JSONL", help="summarize fold lines")
    parser.add_argument(
        "--against",
        default="{}",
        metavar="SETTINGS",
        help="with --summarize: the settings (JSON) of the recipe the others are compared with "
        "on each schedule, e.g. '{\"max_gamma\": 2.0}' (default {}: the recipe itself)",
    )
    args = parser.parse_args()
    if args.summarize:
        texts = [text for path in args.summarize for text in Path(path).read_text().splitlines()]
        lines = [json.loads(text) for text in texts if text.strip()]
        folds = [line for line in lines if line["what"] == "cross_validation_fold"]
        for summary in summarize_recipes(folds, baseline=args.against):
            print(json.dumps(summary))
        return
    if args.data is None or args.fold is None or not 0 <= args.fold < args.folds:
        parser.error(f"--data and --fold 0..{args.folds - 1} are needed (or --summarize)")
    # Keras' epoch lines go to stderr, so that stdout holds the result line alone.
    with contextlib.redirect_stdout(sys.stderr):
        line = run_fold(args)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
