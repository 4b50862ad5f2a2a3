"""Tests of pspseg_utils.losses: hand-computed tables, logits, serialization, monotonicity."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from pspseg_utils.losses import BCEDiceLoss, FocalLoss, SoftDiceLoss, get_loss

# 3x3 binary masks used across the table (one image each).
TRUTH_3X3 = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
PRED_3X3 = np.array([[1, 1, 1], [0, 0, 0], [0, 0, 0]])  # tp=2, fp=1, fn=1
EMPTY_3X3 = np.zeros((3, 3), dtype=int)


def _binary_batch(truth: np.ndarray, prediction: np.ndarray):
    """(H, W) masks -> y_true (1, H, W) and y_pred probabilities (1, H, W, 1)."""
    return truth[None], prediction[None, ..., None].astype("float32")


def _value(loss, y_true, y_pred) -> float:
    return float(keras.ops.convert_to_numpy(loss(y_true, y_pred)))


@pytest.mark.parametrize(
    ("truth", "prediction", "smooth", "expected"),
    [
        # perfect: I=3, |t|+|p|=6 -> dice (6+1)/(6+1) = 1 -> loss 0
        (TRUTH_3X3, TRUTH_3X3, 1.0, 0.0),
        # partial: tp=2, fp=1, fn=1 -> dice = 2*2/(3+3) = 0.6667 -> loss 0.3333
        (TRUTH_3X3, PRED_3X3, 0.0, 1 - 4 / 6),
        # same with smooth=1 -> dice = (4+1)/(6+1) = 0.7143 -> loss 0.2857
        (TRUTH_3X3, PRED_3X3, 1.0, 1 - 5 / 7),
        # empty truth, empty prediction, smooth=1 -> dice = (0+1)/(0+1) = 1 -> loss 0
        (EMPTY_3X3, EMPTY_3X3, 1.0, 0.0),
        # empty-empty with smooth=0 -> dice = 0/eps = 0 -> loss 1 (keras.losses.Dice behaviour)
        (EMPTY_3X3, EMPTY_3X3, 0.0, 1.0),
        # empty truth, 3 predicted pixels -> dice = (0+1)/(3+1) = 0.25 -> loss 0.75
        (EMPTY_3X3, PRED_3X3, 1.0, 0.75),
        # truth 3 pixels, empty prediction -> dice = 1/(3+1) -> loss 0.75
        (TRUTH_3X3, EMPTY_3X3, 1.0, 0.75),
    ],
)
def test_soft_dice_binary_table(truth, prediction, smooth, expected):
    y_true, y_pred = _binary_batch(truth, prediction)
    assert _value(SoftDiceLoss(smooth=smooth), y_true, y_pred) == pytest.approx(expected, abs=1e-5)


# One 2x2 image, 3 classes: labels [[0, 1], [2, 2]], prediction one-hot of [[0, 1], [2, 1]].
MULTI_LABELS = np.array([[[0, 1], [2, 2]]])
MULTI_PROBS = np.eye(3, dtype="float32")[np.array([[[0, 1], [2, 1]]])]


@pytest.mark.parametrize(
    ("smooth", "include_background", "expected"),
    [
        # class 1: t=1 px, p=2 px, I=1 -> (2+1)/(3+1) = 0.75; class 2: t=2, p=1, I=1 -> 0.75
        # mean(0.75, 0.75) = 0.75 -> loss 0.25
        (1.0, False, 0.25),
        # smooth 0: class 1 = 2/3, class 2 = 2/3 -> loss 1/3
        (0.0, False, 1 / 3),
        # with background: class 0: t=1, p=1, I=1 -> 3/3 = 1 -> mean(1, .75, .75) = 0.8333
        (1.0, True, 1 - 2.5 / 3),
    ],
)
def test_soft_dice_multiclass_table(smooth, include_background, expected):
    loss = SoftDiceLoss(smooth=smooth, include_background=include_background)
    assert _value(loss, MULTI_LABELS, MULTI_PROBS) == pytest.approx(expected, abs=1e-5)


def test_soft_dice_label_shapes_agree():
    # (B, H, W) and (B, H, W, 1) labels, int and float (also slightly off after resizing, 0.9999
    # -> 1), give the same loss.
    y_true, y_pred = _binary_batch(TRUTH_3X3, PRED_3X3)
    all_labels = (y_true, y_true[..., None], y_true.astype("float32"), y_true * 0.9999)
    losses = [_value(SoftDiceLoss(), labels, y_pred) for labels in all_labels]
    assert losses == pytest.approx([1 - 5 / 7] * 4, abs=1e-6)


def test_soft_dice_pooled_equals_keras_dice():
    # smooth=0, pooled over the batch: the formula of keras.losses.Dice (axis=None).
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, size=(2, 4, 4))
    y_pred = rng.uniform(size=(2, 4, 4, 1)).astype("float32")
    ours = _value(SoftDiceLoss(smooth=0.0, per_image=False), y_true, y_pred)
    theirs = _value(keras.losses.Dice(), y_true[..., None].astype("float32"), y_pred)
    assert ours == pytest.approx(theirs, abs=1e-6)


def test_soft_dice_per_image_differs_from_pooled():
    # image 1 perfect (dice 1), image 2: truth 3 px, prediction empty (dice 1/4 with smooth 1).
    # per image: 1 - mean(1, 0.25) = 0.375; pooled: I=3, |t|+|p|=6+3=9 -> 1 - 7/10 = 0.3
    y_true = np.stack([TRUTH_3X3, TRUTH_3X3])
    y_pred = np.stack([TRUTH_3X3, EMPTY_3X3])[..., None].astype("float32")
    assert _value(SoftDiceLoss(per_image=True), y_true, y_pred) == pytest.approx(0.375)
    assert _value(SoftDiceLoss(per_image=False), y_true, y_pred) == pytest.approx(0.3)
    per_image = SoftDiceLoss(reduction=None)(y_true, y_pred)
    assert keras.ops.convert_to_numpy(per_image) == pytest.approx([0.0, 0.75])


def test_bce_dice_binary_by_hand():
    # y = [[1, 0], [0, 0]], p = 0.5 everywhere: BCE = ln 2 = 0.6931 per pixel;
    # Dice: I=0.5, |t|=1, |p|=2 -> (1+1)/(3+1) = 0.5 -> 0.5. Total 1.1931.
    y_true = np.array([[[1, 0], [0, 0]]])
    y_pred = np.full((1, 2, 2, 1), 0.5, dtype="float32")
    assert _value(BCEDiceLoss(), y_true, y_pred) == pytest.approx(math.log(2) + 0.5, abs=1e-5)
    # weights 2 and 0.5: 2 * 0.6931 + 0.5 * 0.5 = 1.6363
    weighted = BCEDiceLoss(bce_weight=2.0, dice_weight=0.5)
    assert _value(weighted, y_true, y_pred) == pytest.approx(2 * math.log(2) + 0.25, abs=1e-5)


def test_bce_dice_multiclass_by_hand():
    # One pixel, probs [0.7, 0.2, 0.1], label 1: CE = -ln 0.2 = 1.6094;
    # Dice (no background): class 1: I=0.2, |t|=1, |p|=0.2 -> (0.4+1)/(1.2+1) = 0.6364;
    # class 2: I=0, |t|=0, |p|=0.1 -> 1/1.1 = 0.9091; loss = 1 - mean = 0.2273.
    y_true = np.array([[[1]]])
    y_pred = np.array([[[[0.7, 0.2, 0.1]]]], dtype="float32")
    expected = -math.log(0.2) + 1 - (1.4 / 2.2 + 1 / 1.1) / 2
    assert _value(BCEDiceLoss(), y_true, y_pred) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    ("label", "probabilities", "expected"),
    [
        # binary, y=1, p=0.9: alpha * (1-p)^2 * -ln p = 0.25 * 0.01 * 0.10536 = 0.00026340
        (1, [0.9], 0.25 * 0.1**2 * -math.log(0.9)),
        # binary, y=0, p=0.9: (1-alpha) * p^2 * -ln(1-p) = 0.75 * 0.81 * 2.302585 = 1.39882
        (0, [0.9], 0.75 * 0.9**2 * -math.log(0.1)),
        # 3 classes, label 0 (background, weight 0.75): 0.75 * 0.3^2 * -ln 0.7 = 0.024076
        (0, [0.7, 0.2, 0.1], 0.75 * 0.3**2 * -math.log(0.7)),
        # 3 classes, label 1 (foreground, weight 0.25): 0.25 * 0.8^2 * -ln 0.2 = 0.25751
        (1, [0.7, 0.2, 0.1], 0.25 * 0.8**2 * -math.log(0.2)),
    ],
)
def test_focal_by_hand(label, probabilities, expected):
    y_true = np.array([[[label]]])
    y_pred = np.array([[[probabilities]]], dtype="float32")
    assert _value(FocalLoss(), y_true, y_pred) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("num_channels", [1, 3])
def test_focal_without_focusing_is_cross_entropy(num_channels):
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, max(num_channels, 2), size=(2, 3, 3))
    logits = rng.normal(size=(2, 3, 3, num_channels)).astype("float32")
    focal = _value(FocalLoss(gamma=0.0, alpha=None, from_logits=True), y_true, logits)
    cross_entropy = get_loss("crossentropy", num_classes=num_channels, from_logits=True)
    assert focal == pytest.approx(_value(cross_entropy, y_true, logits), rel=1e-4)


LOSS_CLASSES = [SoftDiceLoss, BCEDiceLoss, FocalLoss]


@pytest.mark.parametrize("loss_class", LOSS_CLASSES)
@pytest.mark.parametrize("num_channels", [1, 3])
def test_from_logits_equals_activated_probabilities(loss_class, num_channels):
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, max(num_channels, 2), size=(2, 4, 4))
    logits = rng.normal(scale=2.0, size=(2, 4, 4, num_channels)).astype("float32")
    if num_channels == 1:
        probabilities = keras.ops.sigmoid(logits)
    else:
        probabilities = keras.ops.softmax(logits, axis=-1)
    from_logits = _value(loss_class(from_logits=True), y_true, logits)
    from_probabilities = _value(loss_class(), y_true, probabilities)
    assert from_logits == pytest.approx(from_probabilities, rel=1e-4)
    # and treating logits as probabilities would give something else
    assert from_logits != pytest.approx(_value(loss_class(), y_true, np.clip(logits, 0, 1)))


@pytest.mark.parametrize("loss_class", LOSS_CLASSES)
@pytest.mark.parametrize("num_channels", [1, 3])
def test_loss_decreases_towards_truth(loss_class, num_channels):
    # Prediction = (1 - s) * uniform + s * one-hot(truth), for s = 0, 0.3, 0.6, 0.9.
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, max(num_channels, 2), size=(2, 4, 4))
    if num_channels == 1:
        target = y_true[..., None].astype("float32")
        uniform = np.full_like(target, 0.5)
    else:
        target = np.eye(num_channels, dtype="float32")[y_true]
        uniform = np.full_like(target, 1 / num_channels)
    values = [
        _value(loss_class(), y_true, (1 - s) * uniform + s * target) for s in (0, 0.3, 0.6, 0.9)
    ]
    assert np.all(np.diff(values) < 0), values


@pytest.mark.parametrize(
    "loss",
    [
        SoftDiceLoss(smooth=0.5, per_image=False, include_background=True, from_logits=True),
        BCEDiceLoss(bce_weight=0.3, dice_weight=2.0, from_logits=True, name="mixed"),
        BCEDiceLoss(false_negative_weight=0.7, from_logits=True, name="tversky"),
        FocalLoss(gamma=1.5, alpha=None, reduction="sum"),
        FocalLoss(gamma=3.0, alpha=0.6),
    ],
    ids=lambda loss: loss.name,
)
def test_serialization_round_trip(loss):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    y_true = np.array([[[0, 1], [2, 1]]])
    y_pred = np.array([[[[0.2, 1.0, -1.0], [0.5, 0.1, 0.3]], [[2.0, 0.0, 1.0], [0.0, 3.0, 0.0]]]])
    if isinstance(loss, FocalLoss):  # probabilities for the non-logit losses
        y_pred = keras.ops.softmax(y_pred, axis=-1)
    assert _value(restored, y_true, y_pred) == pytest.approx(_value(loss, y_true, y_pred))


def test_mixed_precision_input_gives_float32():
    y_true, y_pred = _binary_batch(TRUTH_3X3, PRED_3X3)
    for loss in (SoftDiceLoss(), BCEDiceLoss(), FocalLoss()):
        value = loss(y_true, keras.ops.cast(y_pred, "float16"))
        assert keras.backend.standardize_dtype(value.dtype) == "float32"
        assert np.isfinite(keras.ops.convert_to_numpy(value))
    assert _value(SoftDiceLoss(), y_true, keras.ops.cast(y_pred, "float16")) == pytest.approx(
        1 - 5 / 7, abs=1e-5
    )


@pytest.mark.parametrize(
    ("name", "num_classes", "expected_type"),
    [
        ("dice", 1, SoftDiceLoss),
        ("bce_dice", 4, BCEDiceLoss),
        ("bce_batch_dice", 1, BCEDiceLoss),
        ("bce_batch_tversky", 1, BCEDiceLoss),
        ("focal", 1, FocalLoss),
        ("crossentropy", 1, keras.losses.BinaryCrossentropy),
        ("crossentropy", 4, keras.losses.SparseCategoricalCrossentropy),
    ],
)
def test_get_loss(name, num_classes, expected_type):
    loss = get_loss(name, num_classes=num_classes, from_logits=True)
    assert type(loss) is expected_type
    assert loss.get_config()["from_logits"] is True


def test_bce_batch_dice_pools_the_dice_over_the_batch():
    # Image 1 has no tumour and one false-alarm pixel at p = 1; image 2 (3 tumour pixels) is
    # predicted perfectly. Per image: Dice (0 + 1) / (1 + 1) = 0.5 and 1, loss 1 - 0.75 = 0.25.
    # Pooled: (2 * 3 + 1) / (3 + 4 + 1) = 0.875, loss 0.125. The BCE part, the same in both,
    # cancels in the difference.
    false_alarm = EMPTY_3X3.copy()
    false_alarm[0, 0] = 1
    y_true = np.stack([EMPTY_3X3, TRUTH_3X3])
    y_pred = np.stack([false_alarm, TRUTH_3X3])[..., None].astype("float32")
    assert get_loss("bce_batch_dice", num_classes=1).get_config()["per_image"] is False
    per_image = _value(get_loss("bce_dice", num_classes=1), y_true, y_pred)
    pooled = _value(get_loss("bce_batch_dice", num_classes=1), y_true, y_pred)
    assert per_image - pooled == pytest.approx(0.25 - 0.125, abs=1e-5)


@pytest.mark.parametrize(
    ("false_negative_weight", "expected"),
    [
        # tp=2, fp=1, fn=1, smooth=0: b = 0.5 is the Dice, 1 - 4 / (4 + 1 + 1)
        (0.5, 1 - 4 / 6),
        # b = 0.7: 1 - 4 / (4 + 2 * 0.3 * 1 + 2 * 0.7 * 1) = 1 - 4 / 6, the same: fp = fn
        (0.7, 1 - 4 / 6),
        # b = 1: false alarms are free, 1 - 4 / (4 + 0 + 2)
        (1.0, 1 - 4 / 6),
    ],
)
def test_tversky_with_as_many_misses_as_false_alarms_is_the_dice(false_negative_weight, expected):
    loss = SoftDiceLoss(smooth=0.0, false_negative_weight=false_negative_weight)
    assert _value(loss, *_binary_batch(TRUTH_3X3, PRED_3X3)) == pytest.approx(expected, abs=1e-6)


def test_tversky_weighs_a_missed_pixel_above_a_false_alarm():
    # Truth 3 pixels. Prediction A finds 2 of them (tp=2, fn=1); B finds all 3 plus one false
    # alarm (tp=3, fp=1). Dice (b=0.5): A 4/5 = 0.8, B 6/7 = 0.857. Tversky b=0.7:
    # A 4 / (4 + 1.4) = 0.7407, B 6 / (6 + 0.6) = 0.9091: the loss gap widens against the miss.
    missed = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 0]])
    false_alarm = np.array([[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    tversky = SoftDiceLoss(smooth=0.0, false_negative_weight=0.7)
    assert _value(tversky, *_binary_batch(TRUTH_3X3, missed)) == pytest.approx(1 - 4 / 5.4)
    assert _value(tversky, *_binary_batch(TRUTH_3X3, false_alarm)) == pytest.approx(1 - 6 / 6.6)
    assert get_loss("bce_batch_tversky", num_classes=1).get_config() == pytest.approx(
        {**get_loss("bce_batch_dice", num_classes=1).get_config(), "false_negative_weight": 0.7}
    )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: get_loss("tversky", num_classes=1), "Valid names"),
        (lambda: get_loss("dice", num_classes=0), "num_classes=0"),
        (lambda: SoftDiceLoss(smooth=-1.0), "smooth=-1.0"),
        (lambda: SoftDiceLoss(per_image="yes"), "per_image='yes'"),
        (lambda: SoftDiceLoss(false_negative_weight=1.5), "false_negative_weight=1.5"),
        (lambda: BCEDiceLoss(bce_weight=0.0, dice_weight=0.0), "At least one"),
        (lambda: FocalLoss(alpha=1.5), "alpha=1.5"),
        (lambda: FocalLoss(gamma=-2), "gamma=-2"),
    ],
)
def test_bad_arguments_raise(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_label_shape_raises():
    with pytest.raises(ValueError, match="label map"):
        SoftDiceLoss()(np.zeros((1, 3, 3, 2)), np.zeros((1, 3, 3, 2), dtype="float32"))


def test_include_background_warns_for_binary():
    y_true, y_pred = _binary_batch(TRUTH_3X3, PRED_3X3)
    with pytest.warns(UserWarning, match="ignored"):
        SoftDiceLoss(include_background=True)(y_true, y_pred)
