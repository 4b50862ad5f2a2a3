"""Evaluation per slice and per patient, as the dataset's paper reports it.

Buda et al. (2019) report the mean Dice per *volume*: a patient's Dice is computed once over all
of their slices together (2 |T & P| / (|T| + |P|) summed over the volume), not averaged over
slices, so empty slices neither inflate nor sink it. Slice-level numbers come alongside.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from pspseg_utils import data, inference
from pspseg_utils.metrics import confusion_counts, hausdorff_distance_95, scores_from_counts

__all__ = ["EvaluationResult", "evaluate", "score_slice", "score_patient", "write_csv"]


def score_slice(truth: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """Scores of one 2-D slice: dice, iou, precision, recall, hd95 (NaN if a mask is empty),
    true and predicted tumour pixels, and tp (the overlap, which `score_patient` sums)."""
    tp, fp, fn, _ = confusion_counts(truth > 0, prediction > 0)
    return {
        **scores_from_counts(tp, fp, fn),
        "hd95": hausdorff_distance_95(truth > 0, prediction > 0),
        "true_pixels": int(tp + fn),
        "predicted_pixels": int(tp + fp),
        "tp": int(tp),
    }


def score_patient(slices: Sequence[dict]) -> dict[str, float]:
    """Volume scores of one patient from its slice rows (counts summed over the volume); hd95 is
    the mean of the slices where both masks have tumour (NaN if none)."""
    true = sum(s["true_pixels"] for s in slices)
    predicted = sum(s["predicted_pixels"] for s in slices)
    tp = sum(s["tp"] for s in slices)
    hd95 = [s["hd95"] for s in slices if not np.isnan(s["hd95"])]
    return {
        **scores_from_counts(tp, predicted - tp, true - tp),
        "hd95": float(np.mean(hd95)) if hd95 else float("nan"),
        "tumour_pixels": true,
        "predicted_pixels": predicted,
        "slices": len(slices),
        "tumour_slices": sum(s["true_pixels"] > 0 for s in slices),
    }


@dataclasses.dataclass
class EvaluationResult:
    slices: list[dict]
    patients: list[dict]
    summary: dict


def _detection(slices: Sequence[dict]) -> dict[str, float]:
    """Slice-level detection: is there tumour on the slice, truth against prediction."""
    truth = np.array([s["true_pixels"] > 0 for s in slices])
    said = np.array([s["predicted_pixels"] > 0 for s in slices])
    with np.errstate(invalid="ignore"):  # no tumour slices (or none without): NaN, not 1
        return {
            "detection_sensitivity": float(np.sum(truth & said) / np.sum(truth)),
            "detection_specificity": float(np.sum(~truth & ~said) / np.sum(~truth)),
            "detection_accuracy": float(np.mean(truth == said)),
        }


def evaluate(
    model: keras.Model,
    records: Sequence[data.SliceRecord],
    *,
    threshold: float = 0.5,
    tta: bool = False,
    keep_largest: bool = False,
    batch_size: int = 16,
    progress: bool = True,
) -> EvaluationResult:
    """Predict every slice at its original resolution and score it, then each patient's volume.

    Returns:
        EvaluationResult with `slices` (one dict per slice), `patients` (one per patient, volume
        Dice etc.) and `summary`: patients, slices, patient_dice_mean / _median, slice_dice_mean
        (over all slices) and slice_dice_tumour_mean (over slices with tumour), and detection.
    """
    if not records:
        raise ValueError("evaluate got no slices; check the data folder and the split")
    predictions = inference.iter_predictions(
        model,
        [r.image_path for r in records],
        threshold=threshold,
        tta=tta,
        keep_largest=keep_largest,
        batch_size=batch_size,
        progress=progress,
        desc="Evaluating",
    )
    rows = [
        {
            "patient": record.patient_id,
            "slice": record.slice_index,
            **score_slice(data.read_mask(record.mask_path), prediction),
        }
        for record, (_, _, prediction) in zip(records, predictions, strict=True)
    ]

    by_patient: dict[str, list[dict]] = {}
    for row in rows:
        by_patient.setdefault(row["patient"], []).append(row)
    patients = [{"patient": p, **score_patient(s)} for p, s in sorted(by_patient.items())]
    patient_dice = np.array([p["dice"] for p in patients])
    tumour_slices = [r["dice"] for r in rows if r["true_pixels"] > 0]
    summary = {
        "patients": len(patients),
        "slices": len(rows),
        "patient_dice_mean": float(patient_dice.mean()),
        "patient_dice_median": float(np.median(patient_dice)),
        "patient_iou_mean": float(np.mean([p["iou"] for p in patients])),
        "slice_dice_mean": float(np.mean([r["dice"] for r in rows])),
        "slice_dice_tumour_mean": float(np.mean(tumour_slices)) if tumour_slices else float("nan"),
        **_detection(rows),
    }
    return EvaluationResult(rows, patients, summary)


def write_csv(rows: Sequence[dict], path: str | Path) -> Path:
    """Write a list of same-keyed dicts as CSV, creating the folder."""
    if not rows:
        raise ValueError(f"nothing to write to {path}: no rows")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
