"""How fine must a network's output be? The per-patient Dice that the true masks themselves reach
when they must pass through a coarse grid, as a network's logits do before their last upsampling.

    python benchmarks/resolution_ceiling.py --data ../shared/data/lgg_dev

Each mask is area-averaged to G x G cells, upsampled back bilinearly and thresholded at 0.5.
G is the image size over the output stride: a 128 px input at stride 8 gives 16, at stride 4
(the decoder, `skip_channels`) 32. No network is involved, so this is not a strict bound (logits
can be sharper than averaged masks) but it shows what a grid cannot hold: a small tumour.
Prints one JSON line per grid: the mean, median and minimum per-patient volume Dice.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import cv2
import numpy as np

from pspseg_utils import data, metrics


def through_grid(mask: np.ndarray, grid: int) -> np.ndarray:
    """A binary (H, W) mask, area-averaged to (grid, grid), bilinearly upsampled to (H, W) and
    thresholded at 0.5: bool (H, W). An empty mask stays empty."""
    height, width = mask.shape
    coarse = cv2.resize(mask.astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR) > 0.5


def patient_dice(records, grid: int) -> dict[str, float]:
    """Per-patient volume Dice of each patient's masks against themselves through the grid
    (1.0 for a patient without tumour, whose masks stay empty)."""
    counts = defaultdict(lambda: np.zeros(3, np.int64))  # tp, fp, fn
    for record in records:
        truth = data.read_mask(record.mask_path) > 0
        tp, fp, fn, _ = metrics.confusion_counts(truth, through_grid(truth, grid))
        counts[record.patient_id] += (tp, fp, fn)
    return {
        patient: metrics.scores_from_counts(*map(int, c))["dice"] for patient, c in counts.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="dataset folder (Kaggle or article layout)")
    parser.add_argument(
        "--grids", type=int, nargs="+", default=[16, 20, 32], help="grid sizes G (default 16 20 32)"
    )
    args = parser.parse_args()
    records = data.find_slices(args.data, progress=False)
    for grid in args.grids:
        dice = list(patient_dice(records, grid).values())
        print(json.dumps({
            "what": "resolution_ceiling",
            "grid": grid,
            "patients": len(dice),
            "patient_dice_mean": round(float(np.mean(dice)), 4),
            "patient_dice_median": round(float(np.median(dice)), 4),
            "patient_dice_min": round(float(np.min(dice)), 4),
        }))  # fmt: skip


if __name__ == "__main__":
    main()
