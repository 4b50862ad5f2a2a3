"""Evaluation per slice and per patient, as the dataset's paper reports it.

Buda et al. (2019) report the mean Dice per *volume*: a patient's Dice is computed once over all
of their slices together (2 |T & P| / (|T| + |P|) summed over the volume), not averaged over
slices, so empty slices neither inflate nor sink it. Slice-level numbers come alongside.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from pspseg_utils import data, inference, models
from pspseg_utils.metrics import confusion_counts, hausdorff_distance_95, scores_from_counts

__all__ = [
    "CLEAN_UP_THRESHOLD",
    "EvaluationResult",
    "evaluate",
    "score_slice",
    "score_patient",
    "write_csv",
]

# The cut-off on P(tumour) of the cleaned-up prediction: lower than 0.5 finds more of a faint
# tumour, and the false alarms it adds away from the tumour are what the largest region drops.
# Chosen on validation patients (benchmarks/threshold_sweep.py, benchmarks/EXPERIMENTS.md).
CLEAN_UP_THRESHOLD = 0.3
# Multi-scale testing (the PSPNet paper's): the prediction at the input size averaged with that
# at 1.5 times it, where a small tumour covers more pixels. It raised the cross-validated mean
# per-patient Dice of the 25-minute recipe from 0.778 to 0.810, picked among other scales on
# validation patients (benchmarks/EXPERIMENTS.md).
CLEAN_UP_SCALES = (1.0, 1.5)


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
    threshold: float | None = None,
    tta: bool = True,
    scales: Sequence[float] | None = None,
    keep_largest: bool | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> EvaluationResult:
    """Predict every slice at its original resolution and score it, then each patient's volume.

    By default the model's prediction is cleaned up as the recipe does: `tta` averages it with
    the prediction of the mirrored slice, `scales` with those of the slice at other multiples of
    the model's input size (None: CLEAN_UP_SCALES for a PSPNet, none for another model), and
    `keep_largest` keeps only the largest connected region of each patient's predicted volume
    (its slices stacked in order; all of one size), as Buda et al. (2019) evaluate: a stray
    region on a slice far from the tumour is dropped. Mirroring and the largest region raised
    the validation Dice of every patient split; the second scale, the cross-validated Dice
    (benchmarks/EXPERIMENTS.md).
    `keep_largest=None` means yes for a model with one foreground class (tumour), no for a
    multi-class one, whose classes are separate regions. `threshold=None` cuts P(tumour) at
    CLEAN_UP_THRESHOLD (0.3) with both clean-up steps, else at 0.5 (softmax models: argmax).
    A multi-class model's masks may hold labels up to its last class; it is scored on
    foreground (any label above 0) against background.

    Returns:
        EvaluationResult with `slices` (one dict per slice, by patient then slice index),
        `patients` (one per patient, volume Dice etc.) and `summary`: patients, slices,
        patient_dice_mean / _median, slice_dice_mean (over all slices) and
        slice_dice_tumour_mean (over slices with tumour), and detection.
    """
    if not records:
        raise ValueError("evaluate got no slices; check the data folder and the split")
    records = sorted(records, key=lambda r: (r.patient_id, r.slice_index))
    num_classes = inference.mask_labels_of(model)
    if keep_largest is None:
        keep_largest = num_classes == 2
    if threshold is None:
        threshold = CLEAN_UP_THRESHOLD if tta and keep_largest else 0.5
    if scales is None:
        scales = CLEAN_UP_SCALES if isinstance(model, models.PSPNet) else (1.0,)
    predictions = inference.iter_predictions(
        model,
        [r.image_path for r in records],
        threshold=threshold,
        tta=tta,
        scales=scales,
        batch_size=batch_size,
        progress=progress,
        desc="Evaluating",
    )
    rows, patients = [], []
    by_patient = itertools.groupby(
        zip(records, (mask for _, _, mask in predictions), strict=True),
        key=lambda pair: pair[0].patient_id,
    )
    for patient, pairs in by_patient:
        patient_records, masks = zip(*pairs, strict=True)
        if keep_largest:
            masks = inference.largest_component(_volume(patient, masks))
        slices = [
            {
                "patient": patient,
                "slice": record.slice_index,
                **score_slice(data.read_mask(record.mask_path, num_classes=num_classes), mask),
            }
            for record, mask in zip(patient_records, masks, strict=True)
        ]
        rows += slices
        patients.append({"patient": patient, **score_patient(slices)})

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


def _volume(patient: str, masks: Sequence[np.ndarray]) -> np.ndarray:
    """Stack one patient's slice masks into (S, H, W), refusing slices of different sizes."""
    sizes = sorted({mask.shape for mask in masks})
    if len(sizes) > 1:
        raise ValueError(
            f"patient {patient} has slices of different sizes {sizes}; the largest region of a "
            "volume needs one size: evaluate with keep_largest=False (--no-keep-largest)"
        )
    return np.stack(masks)


def write_csv(rows: Sequence[dict], path: str | Path) -> Path:
    """Write a list of same-keyed dicts as CSV, creating the folder; whole or not at all
    (`data.write_file`)."""
    if not rows:
        raise ValueError(f"nothing to write to {path}: no rows")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return data.write_file(path, text.getvalue().encode())
