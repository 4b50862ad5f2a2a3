"""The README's seven random splits: the `pspseg train` defaults without a GPU, from scratch,
within a wall-clock budget, but holding out 15% of the patients, then the per-patient Dice on
those held-out test patients. (The recipe itself holds none out; cross_validation.py measures it.)

    python benchmarks/cpu_recipe.py --data ../shared/data/lgg_dev --out runs/cpu-recipe

It runs exactly what these two commands run, and prints one JSON line with the result:

    pspseg train --data DATA --out OUT --time-budget 25 --test-fraction 0.15
    pspseg evaluate --model OUT --data DATA --split test --json

and also the Dice of the raw prediction (`--no-tta --no-keep-largest`, cut at 0.5 where the
cleaned-up one is cut at 0.3) as patient_dice_mean_raw.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from machine import host_cpu  # noqa: E402

from pspseg_utils import data, evaluation, inference, training  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="dataset folder (Kaggle or article layout)")
    parser.add_argument("--out", default="runs/cpu-recipe", help="run folder")
    parser.add_argument("--time-budget", type=float, default=25.0, help="minutes of training")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = training.default_config(
        time_budget_minutes=args.time_budget, seed=args.seed, test_fraction=0.15
    )
    # Keras' epoch lines go to stderr, so that stdout holds the result line alone.
    with contextlib.redirect_stdout(sys.stderr):
        start = time.monotonic()
        result = training.train(args.data, args.out, config, progress=False)
        minutes = (time.monotonic() - start) / 60
        records = data.find_slices(args.data, progress=False)
        test = data.select_patients(records, training.load_split(args.out)["test"])
        model = inference.load_model(args.out)
        scores = evaluation.evaluate(model, test, progress=False)  # cleaned up, at 0.3
        raw = evaluation.evaluate(model, test, tta=False, keep_largest=False, progress=False)
    evaluation.write_csv(scores.patients, os.path.join(args.out, "test_patients.csv"))
    command = (
        f"pspseg train --data {args.data} --out {args.out} --time-budget {args.time_budget} "
        f"--seed {args.seed}"  # the seed picks the patient split
    )
    print(json.dumps({
        "what": "cpu_recipe",
        "command": command,
        "backbone": config.backbone, "image_size": config.image_size,
        "precision": training.choose_precision(config.precision),
        "host_cpu": host_cpu(),
        "epochs": result.epochs_done, "train_minutes": round(minutes, 1),
        "stopped": result.stopped_early,
        "test_patients": scores.summary["patients"],
        "patient_dice_mean": round(scores.summary["patient_dice_mean"], 4),
        "patient_dice_median": round(scores.summary["patient_dice_median"], 4),
        "slice_dice_mean": round(scores.summary["slice_dice_mean"], 4),
        "patient_dice_mean_raw": round(raw.summary["patient_dice_mean"], 4),
        "peak_host_mem_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
