"""Tests of pspseg_utils.metrics: NumPy scores, HD95, and the Keras metrics."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from pspseg_utils.losses import get_loss
from pspseg_utils.metrics import (
    ClassPrecision,
    ClassRecall,
    DiceCoefficient,
    IoUCoefficient,
    confusion_counts,
    dice_score,
    hausdorff_distance_95,
    iou_score,
    precision_recall_metrics,
    precision_score,
    recall_score,
)

TRUTH = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
PRED = np.array([[1, 1, 1], [0, 0, 0], [0, 0, 0]])  # tp=2, fp=1, fn=1, tn=5
EMPTY = np.zeros((3, 3), dtype=int)
NAN = float("nan")

# ---------------------------------------------------------------------------------------------
# NumPy scores
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y_true", "y_pred", "expected"),
    [
        (TRUTH, PRED, (2, 1, 1, 5)),
        (TRUTH.astype(bool), PRED.astype(bool), (2, 1, 1, 5)),
        (EMPTY, EMPTY, (0, 0, 0, 9)),
        (EMPTY, PRED, (0, 3, 0, 6)),
        (TRUTH, EMPTY, (0, 0, 3, 6)),
        # a 2x2x2 "volume": truth first slice, prediction first row of both slices
        (
            np.array([[[1, 1], [1, 1]], [[0, 0], [0, 0]]]),
            np.array([[[1, 1], [0, 0]]] * 2),
            (2, 2, 2, 2),
        ),
    ],
)
def test_confusion_counts(y_true, y_pred, expected):
    assert confusion_counts(y_true, y_pred) == expected


@pytest.mark.parametrize(
    ("y_true", "y_pred", "dice", "iou", "precision", "recall"),
    [
        # partial: tp=2, fp=1, fn=1 -> dice = 2*2/(2*2+1+1) = 0.6667, iou = 2/(2+1+1) = 0.5,
        # precision = 2/(2+1) = 0.6667, recall = 2/(2+1) = 0.6667
        (TRUTH, PRED, 4 / 6, 2 / 4, 2 / 3, 2 / 3),
        # perfect: tp=3 -> all 1
        (TRUTH, TRUTH, 1.0, 1.0, 1.0, 1.0),
        # both empty -> empty_value (1.0) for all
        (EMPTY, EMPTY, 1.0, 1.0, 1.0, 1.0),
        # empty truth, 3 predicted: tp=0, fp=3 -> dice 0, iou 0, precision 0/3 = 0, recall 0 (rule)
        (EMPTY, PRED, 0.0, 0.0, 0.0, 0.0),
        # truth 3 px, nothing predicted: dice 0, iou 0, precision 0 (rule), recall 0/3 = 0
        (TRUTH, EMPTY, 0.0, 0.0, 0.0, 0.0),
        # disjoint: tp=0, fp=1, fn=1 -> all 0
        (np.eye(2, dtype=int), np.fliplr(np.eye(2, dtype=int)), 0.0, 0.0, 0.0, 0.0),
        # subset: truth 3 px, prediction 1 of them -> dice 2/4, iou 1/3, precision 1, recall 1/3
        (TRUTH, np.array([[1, 0, 0], [0, 0, 0], [0, 0, 0]]), 0.5, 1 / 3, 1.0, 1 / 3),
    ],
)
def test_numpy_scores_table(y_true, y_pred, dice, iou, precision, recall):
    assert dice_score(y_true, y_pred) == pytest.approx(dice)
    assert iou_score(y_true, y_pred) == pytest.approx(iou)
    assert precision_score(y_true, y_pred) == pytest.approx(precision)
    assert recall_score(y_true, y_pred) == pytest.approx(recall)


@pytest.mark.parametrize("score", [dice_score, iou_score, precision_score, recall_score])
def test_empty_value(score):
    assert math.isnan(score(EMPTY, EMPTY, empty_value=NAN))
    assert score(EMPTY, EMPTY, empty_value=0.0) == 0.0
    # empty_value only applies when both masks are empty
    assert score(TRUTH, TRUTH, empty_value=NAN) == 1.0


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        (TRUTH, PRED[:2], "same shape"),
        (TRUTH * 2, PRED, "binary mask"),
        (TRUTH, PRED * 0.7, "binary mask"),
        (np.array(["a"]), np.array(["b"]), "numeric"),
    ],
)
def test_numpy_bad_inputs_raise(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        dice_score(y_true, y_pred)


def _square(top: int, left: int, size: int = 5, shape: tuple[int, int] = (12, 12)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


@pytest.mark.parametrize(
    ("y_true", "y_pred", "spacing", "expected"),
    [
        # 5x5 squares, the second shifted 2 px right. Boundary distances of square A to B's:
        # left column 5 x 2.0, top/bottom rows 2 x 1.0 + 6 x 0.0, right column 1, 2, 1 ->
        # sorted: six 0s, four 1s, six 2s; 95th percentile (index 0.95*15 = 14.25) = 2; same B->A.
        (_square(2, 2), _square(2, 4), 1.0, 2.0),
        # same with 0.5 mm pixels -> 1.0 mm
        (_square(2, 2), _square(2, 4), 0.5, 1.0),
        # identical masks -> 0
        (_square(2, 2), _square(2, 2), 1.0, 0.0),
        # single pixels at (0, 0) and (3, 4): sqrt(3^2 + 4^2) = 5
        (_square(0, 0, 1, (5, 5)), _square(3, 4, 1, (5, 5)), 1.0, 5.0),
        # square + an outlier pixel at (19, 19), 13 px diagonally from the corner (6, 6): 16
        # boundary distances 0 and one sqrt(13^2 + 13^2) = 18.385; 95th percentile of 17 values
        # (index 0.95*16 = 15.2) = 0 + 0.2 * 18.385 = 3.677 (the plain Hausdorff would be 18.4)
        (
            _square(2, 2, 5, (20, 20)),
            _square(2, 2, 5, (20, 20)) | _square(19, 19, 1, (20, 20)),
            1.0,
            0.2 * math.sqrt(338),
        ),
        # whole 3x3 image vs its centre: pixels on the image border are boundary (ring of 8);
        # ring -> centre: four 1s, four sqrt(2); 95th percentile (index 6.65) = sqrt(2)
        (np.ones((3, 3)), _square(1, 1, 1, (3, 3)), 1.0, math.sqrt(2)),
    ],
)
def test_hausdorff_distance_95(y_true, y_pred, spacing, expected):
    result = hausdorff_distance_95(y_true, y_pred, spacing=spacing)
    assert result == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(("y_true", "y_pred"), [(EMPTY, PRED), (TRUTH, EMPTY), (EMPTY, EMPTY)])
def test_hausdorff_distance_95_empty_is_nan(y_true, y_pred):
    assert math.isnan(hausdorff_distance_95(y_true, y_pred))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"y_true": np.ones((2, 2, 2)), "y_pred": np.ones((2, 2, 2))}, "2-D"),
        ({"y_true": TRUTH, "y_pred": PRED, "spacing": 0.0}, "spacing=0.0"),
    ],
)
def test_hausdorff_distance_95_bad_inputs_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        hausdorff_distance_95(**kwargs)


# ---------------------------------------------------------------------------------------------
# Keras metrics
# ---------------------------------------------------------------------------------------------


def _binary_probabilities(*masks: np.ndarray) -> np.ndarray:
    """(H, W) masks -> probabilities (B, H, W, 1): 0.9 where the mask is 1, 0.1 elsewhere."""
    return np.where(np.stack(masks)[..., None] > 0, 0.9, 0.1).astype("float32")


def _result(metric) -> float:
    return float(keras.ops.convert_to_numpy(metric.result()))


@pytest.mark.parametrize(
    ("metric_class", "per_image", "expected"),
    [
        # image 1 perfect (dice 1, iou 1); image 2: truth 3 px, nothing predicted (0, 0).
        # per image: mean(1, 0) = 0.5 for both.
        # pooled: tp=3, fp=0, fn=3 -> dice = 6/(6+3) = 0.6667, iou = 3/6 = 0.5
        (DiceCoefficient, True, 0.5),
        (DiceCoefficient, False, 6 / 9),
        (IoUCoefficient, True, 0.5),
        (IoUCoefficient, False, 0.5),
    ],
)
def test_keras_per_image_vs_pooled(metric_class, per_image, expected):
    metric = metric_class(per_image=per_image)
    metric.update_state(np.stack([TRUTH, TRUTH]), _binary_probabilities(TRUTH, EMPTY))
    assert _result(metric) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("truths", "predictions", "per_image", "expected"),
    [
        # empty-empty image counts 1.0 per image: mean(1, 1) = 1
        ([EMPTY, TRUTH], [EMPTY, TRUTH], True, 1.0),
        ([EMPTY, TRUTH], [EMPTY, TRUTH], False, 1.0),
        # batch of empty images only: 1.0 both ways
        ([EMPTY], [EMPTY], True, 1.0),
        ([EMPTY], [EMPTY], False, 1.0),
        # empty truth with a prediction: 0 per image; pooled fp=3 -> 0
        ([EMPTY], [PRED], True, 0.0),
        ([EMPTY], [PRED], False, 0.0),
        # empty-empty then a miss: per image mean(1, 0) = 0.5; pooled tp=0, fn=3 -> 0
        ([EMPTY, TRUTH], [EMPTY, EMPTY], True, 0.5),
        ([EMPTY, TRUTH], [EMPTY, EMPTY], False, 0.0),
        # partial overlap: tp=2, fp=1, fn=1 -> 0.6667
        ([TRUTH], [PRED], True, 4 / 6),
    ],
)
def test_keras_dice_table(truths, predictions, per_image, expected):
    metric = DiceCoefficient(per_image=per_image)
    metric.update_state(np.stack(truths), _binary_probabilities(*predictions))
    assert _result(metric) == pytest.approx(expected, abs=1e-6)


def test_keras_threshold_and_label_shapes():
    # probabilities 0.6 on PRED's pixels: counted at threshold 0.5 (dice 0.6667), not at 0.7.
    y_pred = np.where(PRED > 0, 0.6, 0.1)[None, ..., None].astype("float32")
    for labels in (TRUTH[None], TRUTH[None, ..., None], TRUTH[None].astype("float32")):
        metric = DiceCoefficient()
        metric.update_state(labels, y_pred)
        assert _result(metric) == pytest.approx(4 / 6)
    strict = DiceCoefficient(threshold=0.7)
    strict.update_state(TRUTH[None], y_pred)
    assert _result(strict) == 0.0  # tp=0, fn=3
    # P exactly at the threshold is foreground (P >= threshold, as keras.metrics.BinaryIoU)
    at_threshold = DiceCoefficient()
    at_threshold.update_state(TRUTH[None], np.where(TRUTH > 0, 0.5, 0.0)[None, ..., None])
    assert _result(at_threshold) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("class_id", "dice", "iou"),
    [
        # labels [[0, 1], [2, 2]], argmax prediction [[0, 1], [2, 1]]
        # class 1: tp=1, fp=1, fn=0 -> dice 2/3, iou 1/2
        (1, 2 / 3, 1 / 2),
        # class 2: tp=1, fp=0, fn=1 -> dice 2/3, iou 1/2
        (2, 2 / 3, 1 / 2),
        # class 0: tp=1 -> 1, 1
        (0, 1.0, 1.0),
    ],
)
def test_keras_multiclass_class_id(class_id, dice, iou):
    labels = np.array([[[0, 1], [2, 2]]])
    probabilities = np.array(
        [[[[0.8, 0.1, 0.1], [0.2, 0.5, 0.3]], [[0.1, 0.2, 0.7], [0.3, 0.4, 0.3]]]], dtype="float32"
    )
    for metric_class, expected in ((DiceCoefficient, dice), (IoUCoefficient, iou)):
        metric = metric_class(class_id=class_id)
        metric.update_state(labels, probabilities)
        assert _result(metric) == pytest.approx(expected, abs=1e-6)


def test_keras_pooled_iou_matches_keras_binary_iou_and_numpy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(3, 6, 6))
    probabilities = rng.uniform(size=(3, 6, 6, 1)).astype("float32")
    ours = IoUCoefficient()
    ours.update_state(labels, probabilities)
    theirs = keras.metrics.BinaryIoU(target_class_ids=[1], threshold=0.5)
    theirs.update_state(labels, probabilities[..., 0])
    assert _result(ours) == pytest.approx(_result(theirs), abs=1e-6)
    assert _result(ours) == pytest.approx(iou_score(labels, probabilities[..., 0] >= 0.5))
    dice = DiceCoefficient(per_image=True)
    dice.update_state(labels, probabilities)
    per_image = [
        dice_score(y, p[..., 0] >= 0.5) for y, p in zip(labels, probabilities, strict=True)
    ]
    assert _result(dice) == pytest.approx(np.mean(per_image), abs=1e-6)


@pytest.mark.parametrize("per_image", [True, False])
def test_keras_reset_state(per_image):
    metric = DiceCoefficient(per_image=per_image)
    metric.update_state(TRUTH[None], _binary_probabilities(EMPTY))  # dice 0
    assert _result(metric) == 0.0
    metric.reset_state()
    assert _result(metric) == 0.0  # nothing seen
    metric.update_state(TRUTH[None], _binary_probabilities(TRUTH))  # dice 1 if reset worked
    assert _result(metric) == pytest.approx(1.0)


def test_keras_accumulates_across_batches():
    # pooled, batch 1: tp=2, fp=1, fn=1; batch 2: tp=3 -> dice = 2*5/(2*5+1+1) = 0.8333
    metric = DiceCoefficient()
    metric.update_state(TRUTH[None], _binary_probabilities(PRED))
    metric.update_state(TRUTH[None], _binary_probabilities(TRUTH))
    assert _result(metric) == pytest.approx(10 / 12)
    per_image = DiceCoefficient(per_image=True)
    per_image.update_state(TRUTH[None], _binary_probabilities(PRED))  # 0.6667
    per_image.update_state(TRUTH[None], _binary_probabilities(EMPTY))  # 0
    assert _result(per_image) == pytest.approx((4 / 6 + 0) / 2)


@pytest.mark.parametrize("num_classes", [1, 3])
def test_keras_metrics_in_compiled_evaluate(num_classes):
    # Graph mode with an unknown batch size: evaluate() must agree with eager updates.
    rng = np.random.default_rng(4)
    images = rng.normal(size=(4, 6, 6, 2)).astype("float32")
    labels = rng.integers(0, max(num_classes, 2), size=(4, 6, 6))
    activation = "sigmoid" if num_classes == 1 else "softmax"
    inputs = keras.Input((6, 6, 2))
    outputs = keras.layers.Conv2D(num_classes, 1, activation=activation)(inputs)
    model = keras.Model(inputs, outputs)

    def build_metrics():
        return [DiceCoefficient(), IoUCoefficient(per_image=True, name="iou_image")]

    loss = get_loss("bce_dice", num_classes=num_classes)  # per-image losses: batch mean = mean
    model.compile(loss=loss, metrics=build_metrics())
    evaluated = model.evaluate(images, labels, batch_size=2, verbose=0, return_dict=True)
    probabilities = model.predict(images, batch_size=2, verbose=0)
    for metric in build_metrics():
        metric.update_state(labels[:2], probabilities[:2])
        metric.update_state(labels[2:], probabilities[2:])
        assert evaluated[metric.name] == pytest.approx(_result(metric), abs=1e-5)
    eager_loss = float(keras.ops.convert_to_numpy(loss(labels, probabilities)))
    assert evaluated["loss"] == pytest.approx(eager_loss, rel=1e-4)


def test_keras_sample_weight_masks_images():
    # image 1 partial (tp=2, fp=1, fn=1: dice 0.6667), image 2 (a miss) weighted 0.
    # per image: only image 1 counts -> 0.6667 (counting the all-masked image as empty-empty
    # would give (0.6667 + 1) / 2 = 0.8333); pooled: tp=2, fp=1, fn=1 -> 0.6667
    for per_image in (True, False):
        metric = DiceCoefficient(per_image=per_image)
        metric.update_state(
            np.stack([TRUTH, TRUTH]),
            _binary_probabilities(PRED, EMPTY),
            sample_weight=np.array([1.0, 0.0]).reshape(2, 1, 1),
        )
        assert _result(metric) == pytest.approx(4 / 6)
    # per-pixel weights: masking PRED's false-positive pixel (0, 2) -> tp=2, fn=1 -> 4/5
    weights = np.ones((1, 3, 3))
    weights[0, 0, 2] = 0.0
    metric = DiceCoefficient()
    metric.update_state(TRUTH[None], _binary_probabilities(PRED), sample_weight=weights)
    assert _result(metric) == pytest.approx(4 / 5)


def test_keras_mixed_precision_input():
    metric = IoUCoefficient()
    metric.update_state(TRUTH[None], keras.ops.cast(_binary_probabilities(PRED), "float16"))
    assert _result(metric) == pytest.approx(0.5)  # tp=2, fp=1, fn=1 -> 2/4


@pytest.mark.parametrize(
    "metric",
    [
        DiceCoefficient(threshold=0.3, per_image=True, class_id=2, name="dice_enh"),
        IoUCoefficient(),
        ClassPrecision(class_id=2, name="precision_2"),
        ClassRecall(class_id=0, threshold=0.4),
    ],
    ids=lambda metric: metric.name,
)
def test_keras_serialization_round_trip(metric):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(restored) is type(metric)
    assert restored.get_config() == metric.get_config()
    assert restored.name == metric.name


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: DiceCoefficient(class_id=-1), "class_id=-1"),
        (lambda: IoUCoefficient(per_image=1), "per_image=1"),
        (lambda: DiceCoefficient(threshold="0.5"), "threshold='0.5'"),
        (lambda: precision_recall_metrics(0), "num_classes=0"),
        (lambda: precision_recall_metrics(3, class_id=3), "class_id=3"),
    ],
)
def test_keras_bad_arguments_raise(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_keras_class_id_out_of_range_at_update_raises():
    metric = DiceCoefficient(class_id=2)
    with pytest.raises(ValueError, match="class_id"):
        metric.update_state(TRUTH[None], _binary_probabilities(PRED))  # C == 1: classes 0, 1


def test_keras_threshold_warns_for_multiclass():
    metric = DiceCoefficient(threshold=0.3)
    with pytest.warns(UserWarning, match="ignored"):
        metric.update_state(np.zeros((1, 2, 2)), np.full((1, 2, 2, 3), 1 / 3, dtype="float32"))


@pytest.mark.parametrize(
    ("num_classes", "class_id", "expected_types"),
    [
        (1, 1, (keras.metrics.Precision, keras.metrics.Recall)),
        (1, 0, (ClassPrecision, ClassRecall)),
        (3, 1, (ClassPrecision, ClassRecall)),
    ],
)
def test_precision_recall_metrics_types(num_classes, class_id, expected_types):
    metrics = precision_recall_metrics(num_classes, class_id=class_id)
    assert tuple(type(metric) for metric in metrics) == expected_types
    assert [metric.name for metric in metrics] == ["precision", "recall"]


@pytest.mark.parametrize(
    ("num_classes", "labels", "probabilities", "precision", "recall"),
    [
        # binary: tp=2, fp=1, fn=1 -> precision 2/3, recall 2/3
        (1, TRUTH[None], _binary_probabilities(PRED), 2 / 3, 2 / 3),
        # 3 classes, class 1: labels [[0, 1], [2, 1]], argmax [[0, 1], [1, 1]]:
        # tp=2, fp=1, fn=0 -> precision 2/3, recall 1
        (
            3,
            np.array([[[0, 1], [2, 1]]]),
            np.eye(3, dtype="float32")[[[[0, 1], [1, 1]]]],
            2 / 3,
            1.0,
        ),
    ],
)
def test_precision_recall_metrics_values(num_classes, labels, probabilities, precision, recall):
    precision_metric, recall_metric = precision_recall_metrics(num_classes)
    for metric, expected in ((precision_metric, precision), (recall_metric, recall)):
        metric.update_state(labels, probabilities)
        assert _result(metric) == pytest.approx(expected, abs=1e-6)
        metric.reset_state()
        assert _result(metric) == 0.0
