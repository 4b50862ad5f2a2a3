"""Which cut-off on P(tumour) suits the cleaned-up prediction? The mean per-patient Dice of trained
runs on their own validation and test patients at several thresholds.

    python benchmarks/threshold_sweep.py --data ../shared/data/lgg_dev runs/z5skip32-seed0 ...

Each run folder's `best.keras` predicts its patients once, cleaned up as `pspseg evaluate` does
by default (averaged with the mirrored slice; only the largest region of each volume kept), and
every threshold is scored on those probabilities. Prints one JSON line per run, split and
threshold; then one per split and threshold over all the runs' patients together; then the
choice: the threshold with the highest mean on the validation patients, and what the test
patients score with it. The test patients take no part in the choice.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from pspseg_utils import data, inference, metrics
from pspseg_utils.training import load_split

SPLITS = ("val", "test")


def volume_dice(probabilities: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    """Dice of one patient's volume: P(tumour) float (S, H, W) cut at `threshold`, only the
    largest connected region kept, against the bool (S, H, W) truth (1.0 if both are empty)."""
    mask = inference.largest_component((probabilities >= threshold).astype(np.uint8)) > 0
    tp, fp, fn, _ = metrics.confusion_counts(truth, mask)
    return metrics.scores_from_counts(int(tp), int(fp), int(fn))["dice"]


def patient_volumes(model, records: Sequence[data.SliceRecord]) -> Iterator[tuple]:
    """(patient, P(tumour) (S, H, W), truth (S, H, W)) per patient, slices in order, the
    probability averaged with that of the mirrored slice."""
    records = sorted(records, key=lambda r: (r.patient_id, r.slice_index))
    for patient, group in itertools.groupby(records, key=lambda r: r.patient_id):
        group = list(group)
        images = [data.read_slice(r.image_path) for r in group]
        probabilities = inference.predict_probabilities(model, images, tta=True, batch_size=16)
        truth = np.stack([data.read_mask(r.mask_path) > 0 for r in group])
        yield patient, np.stack([p[..., 0] for p in probabilities]), truth


def sweep(run_dir: Path, records, thresholds: Sequence[float]) -> dict[str, dict[float, list]]:
    """{split: {threshold: [per-patient Dice]}} of the run's best.keras on its own split."""
    model = inference.load_model(run_dir / "best.keras")
    if model.outputs[0].shape[-1] != 1:
        raise ValueError(f"{run_dir}: a threshold applies to a 1-channel (sigmoid) model only")
    split = load_split(run_dir)
    scores = {which: {t: [] for t in thresholds} for which in SPLITS}
    for which in SPLITS:
        for _, probabilities, truth in patient_volumes(
            model, data.select_patients(records, split[which])
        ):
            for t in thresholds:
                scores[which][t].append(volume_dice(probabilities, truth, t))
    return scores


def _line(what: str, split: str, threshold: float, dice: list, **more) -> str:
    return json.dumps({
        "what": what,
        **more,
        "split": split,
        "threshold": threshold,
        "patients": len(dice),
        "patient_dice_mean": round(float(np.mean(dice)), 4),
    })  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="the dataset folder the runs trained on")
    parser.add_argument("runs", type=Path, nargs="+", help="run folders of `pspseg train`")
    parser.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=[round(0.2 + 0.05 * i, 2) for i in range(11)],
        help="cut-offs to score (default 0.2 0.25 ... 0.7)",
    )
    args = parser.parse_args()
    records = data.find_slices(args.data, progress=False)
    pooled = {which: {t: [] for t in args.thresholds} for which in SPLITS}
    for run_dir in args.runs:
        for which, by_threshold in sweep(run_dir, records, args.thresholds).items():
            for t, dice in by_threshold.items():
                print(_line("threshold_run", which, t, dice, run=str(run_dir)), flush=True)
                pooled[which][t] += dice
    for which in SPLITS:
        for t, dice in pooled[which].items():
            print(_line("threshold_pooled", which, t, dice, runs=len(args.runs)))
    chosen = max(args.thresholds, key=lambda t: np.mean(pooled["val"][t]))
    val_mean = round(float(np.mean(pooled["val"][chosen])), 4)
    print(
        _line("threshold_chosen_on_val", "test", chosen, pooled["test"][chosen], val_mean=val_mean)
    )


if __name__ == "__main__":
    main()
