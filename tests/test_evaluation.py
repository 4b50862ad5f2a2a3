"""Tests of pspseg_utils.evaluation: slice and patient (volume) scores, `evaluate`, `write_csv`.

`evaluate` is run with stand-in models whose prediction is known without running them: a
constant-0 model ("no tumour" on every pixel) and a constant-1 model ("tumour" on every pixel).
The expected numbers are computed independently from the masks on disk.
"""

from __future__ import annotations

import csv
import math

import cv2
import keras
import numpy as np
import pytest

from pspseg_utils import data, evaluation, inference
from pspseg_utils.evaluation import score_patient, score_slice
from pspseg_utils.models import build_pspnet

NAN = float("nan")
SLICE_KEYS = {
    "patient",
    "slice",
    "dice",
    "iou",
    "precision",
    "recall",
    "hd95",
    "true_pixels",
    "predicted_pixels",
    "tp",
}
PATIENT_KEYS = {
    "patient",
    "dice",
    "iou",
    "precision",
    "recall",
    "hd95",
    "tumour_pixels",
    "predicted_pixels",
    "slices",
    "tumour_slices",
}
SUMMARY_KEYS = {
    "patients",
    "slices",
    "patient_dice_mean",
    "patient_dice_median",
    "patient_iou_mean",
    "slice_dice_mean",
    "slice_dice_tumour_mean",
    "detection_sensitivity",
    "detection_specificity",
    "detection_accuracy",
}


def _mask(*pixels: tuple[int, int]) -> np.ndarray:
    """A 4 x 4 mask with 1 at the given (row, column) pixels."""
    mask = np.zeros((4, 4), np.uint8)
    for row, column in pixels:
        mask[row, column] = 1
    return mask


EMPTY = _mask()
# Slice A: truth is the 2 x 2 square at columns 0-1, prediction the one at columns 1-2.
A_TRUTH = _mask((0, 0), (0, 1), (1, 0), (1, 1))
A_PRED = _mask((0, 1), (0, 2), (1, 1), (1, 2))
# Slice B: no tumour, 2 pixels predicted.
B_PRED = _mask((3, 2), (3, 3))


def _same(actual: float, expected: float) -> bool:
    return (math.isnan(actual) and math.isnan(expected)) or actual == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------
# score_slice
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("truth", "prediction", "expected"),
    [
        # tp=2, fp=2, fn=2: dice 4/(4+2+2)=0.5, iou 2/6, precision 2/4, recall 2/4.
        # Both squares are all border; each border pixel is 0 or 1 px from the other: hd95 = 1.
        (A_TRUTH, A_PRED, dict(dice=0.5, iou=1 / 3, precision=0.5, recall=0.5, hd95=1.0)),
        # Healthy slice, 2 px predicted: tp=0, fp=2 -> every score 0; no truth border -> NaN.
        (EMPTY, B_PRED, dict(dice=0.0, iou=0.0, precision=0.0, recall=0.0, hd95=NAN)),
        # Tumour missed: tp=0, fn=4 -> 0; no predicted border -> NaN.
        (A_TRUTH, EMPTY, dict(dice=0.0, iou=0.0, precision=0.0, recall=0.0, hd95=NAN)),
        # Both empty: 1 by convention, hd95 NaN.
        (EMPTY, EMPTY, dict(dice=1.0, iou=1.0, precision=1.0, recall=1.0, hd95=NAN)),
        # Identical: all 1, hd95 0.
        (A_TRUTH, A_TRUTH, dict(dice=1.0, iou=1.0, precision=1.0, recall=1.0, hd95=0.0)),
        # One pixel each, 3 columns apart: no overlap, hd95 = 3.
        (
            _mask((0, 0)),
            _mask((0, 3)),
            dict(dice=0.0, iou=0.0, precision=0.0, recall=0.0, hd95=3.0),
        ),
    ],
    ids=["half-overlap", "false-alarm", "missed", "both-empty", "identical", "three-apart"],
)
def test_score_slice(truth, prediction, expected):
    scores = score_slice(truth, prediction)
    for name, value in expected.items():
        assert _same(scores[name], value), (name, scores[name], value)
    assert scores["true_pixels"] == int(truth.sum())
    assert scores["predicted_pixels"] == int(prediction.sum())
    assert scores["tp"] == int((truth & prediction).sum())


def test_score_slice_treats_255_and_other_labels_as_tumour():
    # A 0/255 truth and a label-2 prediction are the same masks as A's: tp=2, fp=2, fn=2.
    assert score_slice(A_TRUTH * 255, A_PRED * 2)["dice"] == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------
# score_patient: counts summed over the volume, not slice scores averaged
# ---------------------------------------------------------------------------------------------

# Slice C: a 3 x 3 tumour found exactly; slice D: a 1-pixel tumour missed.
C_TRUTH = np.pad(np.ones((3, 3), np.uint8), ((0, 1), (0, 1)))
D_TRUTH = _mask((3, 3))


@pytest.mark.parametrize(
    ("slices", "expected"),
    [
        (
            # A + B: tp=2, fp=2+2=4, fn=2 -> dice 4/(4+4+2)=0.4 (the slice mean would be
            # (0.5+0)/2=0.25), iou 2/(2+4+2)=0.25, precision 2/6, recall 2/4;
            # hd95 from A only (B's is NaN).
            [(A_TRUTH, A_PRED), (EMPTY, B_PRED)],
            dict(
                dice=0.4, iou=0.25, precision=1 / 3, recall=0.5, hd95=1.0,
                tumour_pixels=4, predicted_pixels=6, slices=2, tumour_slices=1,
            ),
        ),
        (
            # C + D: tp=9, fp=0, fn=1 -> dice 18/19 (the slice mean would be (1+0)/2=0.5),
            # iou 9/10, precision 9/9, recall 9/10; hd95 = C's 0 (D's is NaN).
            [(C_TRUTH, C_TRUTH), (D_TRUTH, EMPTY)],
            dict(
                dice=18 / 19, iou=0.9, precision=1.0, recall=0.9, hd95=0.0,
                tumour_pixels=10, predicted_pixels=9, slices=2, tumour_slices=2,
            ),
        ),
        (
            # No tumour anywhere, none predicted: 1 by convention; no hd95 anywhere -> NaN.
            [(EMPTY, EMPTY), (EMPTY, EMPTY), (EMPTY, EMPTY)],
            dict(
                dice=1.0, iou=1.0, precision=1.0, recall=1.0, hd95=NAN,
                tumour_pixels=0, predicted_pixels=0, slices=3, tumour_slices=0,
            ),
        ),
        (
            # Tumour on one slice, nothing predicted: tp=0, fn=4 -> 0.
            [(A_TRUTH, EMPTY), (EMPTY, EMPTY)],
            dict(
                dice=0.0, iou=0.0, precision=0.0, recall=0.0, hd95=NAN,
                tumour_pixels=4, predicted_pixels=0, slices=2, tumour_slices=1,
            ),
        ),
    ],
    ids=["overlap-and-false-alarm", "big-hit-small-miss", "healthy", "all-missed"],
)  # fmt: skip
def test_score_patient(slices, expected):
    scores = score_patient([score_slice(truth, prediction) for truth, prediction in slices])
    for name, value in expected.items():
        assert _same(scores[name], value), (name, scores[name], value)


# ---------------------------------------------------------------------------------------------
# evaluate with stand-in models
# ---------------------------------------------------------------------------------------------


def _constant_model(logit: float, channels: int = 3) -> keras.Model:
    """P(tumour) = sigmoid(logit) on every pixel of a 48 x 48 input (resized back to 64 x 64)."""
    inputs = keras.Input((48, 48, channels))
    outputs = keras.layers.Conv2D(
        1,
        1,
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(logit),
        activation="sigmoid",
    )(inputs)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def records(tiny_records):
    """The slices of the first two patients (a dozen or so, with tumour on about half)."""
    patients = sorted({r.patient_id for r in tiny_records})[:2]
    return data.select_patients(tiny_records, patients)


@pytest.fixture(scope="module")
def truths(records):
    """Per patient, the tumour-pixel count of each slice, read from the masks on disk."""
    counts: dict[str, list[int]] = {}
    for record in records:
        counts.setdefault(record.patient_id, []).append(
            int(np.count_nonzero(data.read_mask(record.mask_path)))
        )
    return counts


def test_evaluate_no_tumour_model(records, truths):
    result = evaluation.evaluate(_constant_model(-20.0), records, batch_size=4, progress=False)

    all_counts = [t for counts in truths.values() for t in counts]
    empty_share = sum(t == 0 for t in all_counts) / len(all_counts)
    assert 0 < empty_share < 1  # the case needs slices of both kinds
    # Nothing predicted: Dice 1 on empty slices, 0 on tumour slices; 0 for patients with tumour.
    expected_patient_dice = [1.0 if sum(c) == 0 else 0.0 for c in truths.values()]
    summary = result.summary
    assert set(summary) == SUMMARY_KEYS
    assert summary["patients"] == 2
    assert summary["slices"] == len(records)
    assert summary["patient_dice_mean"] == pytest.approx(np.mean(expected_patient_dice))
    assert summary["slice_dice_mean"] == pytest.approx(empty_share)
    assert summary["slice_dice_tumour_mean"] == 0.0
    assert summary["detection_sensitivity"] == 0.0
    assert summary["detection_specificity"] == 1.0
    assert summary["detection_accuracy"] == pytest.approx(empty_share)
    assert [r["dice"] for r in result.slices] == [float(t == 0) for t in all_counts]
    assert all(r["predicted_pixels"] == 0 and math.isnan(r["hd95"]) for r in result.slices)
    # A patient's Dice is the volume Dice (tp = 0 -> 0), not the mean of its slice Dice, which
    # the empty slices (Dice 1 each) would lift to their share, e.g. 4 of 7 slices -> 0.57.
    for patient, counts in zip(result.patients, truths.values(), strict=True):
        assert patient["dice"] == 0.0
        assert np.mean([float(t == 0) for t in counts]) > 0.0  # so the two would differ


def test_evaluate_all_tumour_model(records, truths):
    result = evaluation.evaluate(_constant_model(20.0), records, batch_size=4, progress=False)

    full = 64 * 64  # every pixel of a 64 x 64 slice predicted
    for patient, counts in zip(result.patients, truths.values(), strict=True):
        # Volume Dice: 2 * sum(T) / (sum(T) + 4096 * slices); precision sum(T) / (4096 * slices).
        assert patient["dice"] == pytest.approx(
            2 * sum(counts) / (sum(counts) + full * len(counts))
        )
        assert patient["precision"] == pytest.approx(sum(counts) / (full * len(counts)))
        assert patient["recall"] == 1.0
        assert patient["tumour_pixels"] == sum(counts)
        assert patient["predicted_pixels"] == full * len(counts)
        assert patient["slices"] == len(counts)
        assert patient["tumour_slices"] == sum(t > 0 for t in counts)

    all_counts = [t for counts in truths.values() for t in counts]
    slice_dice = [2 * t / (t + full) for t in all_counts]
    summary = result.summary
    assert summary["slice_dice_mean"] == pytest.approx(np.mean(slice_dice))
    assert summary["slice_dice_tumour_mean"] == pytest.approx(
        np.mean([d for d, t in zip(slice_dice, all_counts, strict=True) if t > 0])
    )
    patient_dice = [p["dice"] for p in result.patients]
    assert summary["patient_dice_mean"] == pytest.approx(np.mean(patient_dice))
    assert summary["patient_dice_median"] == pytest.approx(np.median(patient_dice))
    assert summary["detection_sensitivity"] == 1.0
    assert summary["detection_specificity"] == 0.0
    assert summary["detection_accuracy"] == pytest.approx(
        sum(t > 0 for t in all_counts) / len(all_counts)
    )


def test_evaluate_a_model_that_takes_neighbouring_slices(records):
    # Its slices are read with their neighbours (9 channels), and scored as any model's.
    with_neighbours = evaluation.evaluate(
        _constant_model(20.0, channels=9), records, batch_size=4, progress=False
    )
    alone = evaluation.evaluate(_constant_model(20.0), records, batch_size=4, progress=False)

    def scored(result):
        return [(r["patient"], r["slice"], r["predicted_pixels"], r["dice"]) for r in result.slices]

    assert scored(with_neighbours) == scored(alone)
    assert with_neighbours.summary == pytest.approx(alone.summary, nan_ok=True)


def test_evaluate_rows_come_by_patient_then_slice(records):
    shuffled = list(reversed(records))
    result = evaluation.evaluate(_constant_model(-20.0), shuffled, batch_size=5, progress=False)
    assert [(r["patient"], r["slice"]) for r in result.slices] == sorted(
        (r.patient_id, r.slice_index) for r in records
    )
    assert all(set(row) == SLICE_KEYS for row in result.slices)
    assert [p["patient"] for p in result.patients] == sorted({r.patient_id for r in records})
    assert all(set(row) == PATIENT_KEYS for row in result.patients)


def _bright_pixel_model(size: int) -> keras.Model:
    """P(tumour) near 1 where a pixel is bright (255 in every channel), near 0 where black."""
    inputs = keras.Input((size, size, 3))
    outputs = keras.layers.Conv2D(
        1,
        1,
        kernel_initializer=keras.initializers.Constant(0.1),
        bias_initializer=keras.initializers.Constant(-20.0),
        activation="sigmoid",
    )(inputs)
    return keras.Model(inputs, outputs)


def _write_patient(
    folder, bright: np.ndarray, truth: np.ndarray, mask_scale: int = 255
) -> list[data.SliceRecord]:
    """One patient's slices as PNG files: images bright where `bright` is set, masks `truth`
    (x 255, the Kaggle convention; `mask_scale=1` writes the labels themselves)."""
    records = []
    for index, (where, mask) in enumerate(zip(bright, truth, strict=True)):
        image_path, mask_path = folder / f"P_{index + 1}.png", folder / f"P_{index + 1}_mask.png"
        cv2.imwrite(str(image_path), np.repeat(where[..., None] * 255, 3, axis=2))
        cv2.imwrite(str(mask_path), mask * mask_scale)
        records.append(
            data.SliceRecord("P", index + 1, image_path, mask_path, int(np.count_nonzero(mask)))
        )
    return records


def test_evaluate_keeps_the_largest_region_of_each_volume(tmp_path):
    # The tumour is a 2 x 2 column through three 8 x 8 slices (12 voxels); the "model" also
    # marks a 3 x 3 blob on the last slice (9 pixels): the largest region of that slice alone.
    truth = np.zeros((3, 8, 8), np.uint8)
    truth[:, :2, :2] = 1
    bright = truth.copy()
    bright[2, 5:, 5:] = 1
    records = _write_patient(tmp_path, bright, truth)
    model = _bright_pixel_model(8)

    plain = evaluation.evaluate(model, records, keep_largest=False, progress=False)
    cleaned = evaluation.evaluate(model, records, progress=False)  # keep_largest by default

    assert plain.patients[0]["dice"] == pytest.approx(2 * 12 / (12 + 21))
    assert cleaned.patients[0]["dice"] == 1.0
    assert [r["predicted_pixels"] for r in cleaned.slices] == [4, 4, 4]


def test_the_cleaned_up_prediction_is_cut_lower_than_the_raw_one(records):
    # P(tumour) = 0.4 everywhere: over CLEAN_UP_THRESHOLD (0.3), under 0.5.
    model = _constant_model(float(np.log(0.4 / 0.6)))
    every_pixel = 64 * 64 * len(records)

    def predicted(**options) -> int:
        result = evaluation.evaluate(model, records, batch_size=4, progress=False, **options)
        return sum(row["predicted_pixels"] for row in result.slices)

    assert evaluation.CLEAN_UP_THRESHOLD < 0.4
    assert predicted() == every_pixel  # the mirrored average and the largest region: 0.3
    assert predicted(tta=False) == 0  # one clean-up step only: 0.5
    assert predicted(keep_largest=False) == 0
    assert predicted(threshold=0.5) == 0  # asked for
    assert predicted(tta=False, threshold=0.35) == every_pixel


def test_evaluate_predicts_a_pspnet_at_the_clean_up_scales(records, monkeypatch):
    keras.utils.set_random_seed(0)
    pspnet = build_pspnet(
        (64, 64, 3), 1, backbone="mobilenetv2_035", head_channels=8, backbone_weights=None
    )
    asked = []
    at_scales = inference.at_scales
    monkeypatch.setattr(
        inference,
        "at_scales",
        lambda model, scales: asked.append(scales) or at_scales(model, scales),
    )
    evaluation.evaluate(pspnet, records[:2], progress=False)
    evaluation.evaluate(pspnet, records[:2], scales=(1,), progress=False)
    evaluation.evaluate(_constant_model(0.0), records[:2], progress=False)  # not resizable
    assert asked == [evaluation.CLEAN_UP_SCALES, (1,), (1.0,)]
    assert evaluation.CLEAN_UP_SCALES == (1.0, 1.5)


def test_keep_largest_is_off_by_default_for_a_multi_class_model(tmp_path):
    # Classes are separate regions: a 3-class model marking class 1 on bright pixels keeps both
    # regions unless asked (here the stand-in marks one class, so asking drops the 3 x 3 blob).
    bright = np.zeros((3, 8, 8), np.uint8)
    bright[:, :2, :2] = 1
    bright[2, 5:, 5:] = 1
    records = _write_patient(tmp_path, bright, bright, mask_scale=1)
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Conv2D(3, 1, activation="softmax")(inputs)
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    kernel[..., 1] = 0.1  # class 1 where bright; class 0 (zero logit) elsewhere; class 2 never
    model.layers[-1].set_weights([kernel, np.array([0.0, -20.0, -100.0], np.float32)])

    default = evaluation.evaluate(model, records, tta=False, progress=False)
    asked = evaluation.evaluate(model, records, tta=False, keep_largest=True, progress=False)

    assert [r["predicted_pixels"] for r in default.slices] == [4, 4, 13]
    assert [r["predicted_pixels"] for r in asked.slices] == [4, 4, 4]


def test_a_multi_class_model_is_scored_on_masks_with_all_its_labels(tmp_path):
    # Masks hold label 2 (a binary read would refuse them); the foreground is scored as one.
    truth = np.zeros((2, 8, 8), np.uint8)
    truth[:, :2, :2] = 2
    records = _write_patient(tmp_path, truth > 0, truth, mask_scale=1)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, activation="softmax")(inputs))
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    kernel[..., 1] = 0.1  # class 1 where bright, class 0 elsewhere
    model.layers[-1].set_weights([kernel, np.array([0.0, -20.0, -100.0], np.float32)])

    result = evaluation.evaluate(model, records, tta=False, progress=False)

    assert [r["dice"] for r in result.slices] == [1.0, 1.0]
    assert result.summary["patient_dice_mean"] == 1.0


def test_keep_largest_refuses_a_volume_of_mixed_sizes(tmp_path):
    records = _write_patient(tmp_path, np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8), np.uint8))
    cv2.imwrite(str(records[1].image_path), np.zeros((10, 10, 3), np.uint8))
    cv2.imwrite(str(records[1].mask_path), np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match=r"patient P has slices of different sizes"):
        evaluation.evaluate(_bright_pixel_model(8), records, progress=False)


def test_evaluate_without_records_is_refused():
    with pytest.raises(ValueError, match="no slices"):
        evaluation.evaluate(_constant_model(-20.0), [], progress=False)


# ---------------------------------------------------------------------------------------------
# write_csv
# ---------------------------------------------------------------------------------------------


def test_write_csv_refuses_no_rows(tmp_path):
    with pytest.raises(ValueError, match="nothing to write to .*slices.csv: no rows"):
        evaluation.write_csv([], tmp_path / "slices.csv")
    assert not (tmp_path / "slices.csv").exists()


def test_write_csv_round_trip(tmp_path):
    rows = [
        {"patient": "P1", "slice": 3, **score_slice(A_TRUTH, A_PRED)},
        {"patient": "P1", "slice": 4, **score_slice(EMPTY, B_PRED)},  # hd95 NaN
    ]
    path = evaluation.write_csv(rows, tmp_path / "new" / "slices.csv")  # the folder is created

    assert path == tmp_path / "new" / "slices.csv"
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == list(rows[0])
        read = list(reader)
    assert len(read) == 2
    for original, back in zip(rows, read, strict=True):
        assert back["patient"] == original["patient"]
        for name, value in original.items():
            if name != "patient":
                assert _same(float(back[name]), float(value)), name
