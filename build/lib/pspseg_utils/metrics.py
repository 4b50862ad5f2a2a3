"""Segmentation metrics: NumPy functions for saved predictions, Keras metrics for training.

NumPy functions (evaluation of saved masks), all built on one `confusion_counts`:

- `dice_score`, `iou_score`, `precision_score`, `recall_score`: binary masks of any shape (a
  slice or a whole volume), returning a Python float.
- `hausdorff_distance_95`: 95th-percentile symmetric Hausdorff distance between 2-D masks.

Empty-mask convention (as MONAI's `DiceMetric(ignore_empty=False)`, extended to precision and
recall so that all four agree): when truth and prediction are both empty, every score is
`empty_value` (default 1.0; pass `float("nan")` to leave such cases out of a `np.nanmean`); when
exactly one of them is empty, every score is 0.0. Strictly, precision with no predicted positives
and recall with no true positives are undefined (MONAI's `ConfusionMatrixMetric` returns NaN);
scoring them 0 here penalises a model that misses a whole tumour or paints one on a healthy slice.

Keras metrics (training and `model.evaluate`), for models outputting probabilities `(B, H, W, C)`:
C == 1 is thresholded at `threshold`, C >= 2 is `argmax`-ed; `class_id` picks the foreground class.

- `DiceCoefficient`, `IoUCoefficient`: pooled (global counts) or per-image mean. Written here
  because `keras.metrics.BinaryIoU` / `IoU` only pool, score an empty-empty case 0 (not 1), and
  Keras has no Dice metric for label maps.
- `precision_recall_metrics(num_classes)`: `keras.metrics.Precision` / `Recall` for C == 1 (they
  threshold P(tumour) and count label 1 as positive), `ClassPrecision` / `ClassRecall` (argmax ==
  `class_id`) for C >= 2.
"""

from __future__ import annotations

import math
import warnings

import cv2
import keras
import numpy as np
from keras import ops

__all__ = [
    "ClassPrecision",
    "ClassRecall",
    "DiceCoefficient",
    "IoUCoefficient",
    "confusion_counts",
    "dice_score",
    "hausdorff_distance_95",
    "iou_score",
    "precision_recall_metrics",
    "precision_score",
    "recall_score",
]

_PACKAGE = "pspseg"


# ---------------------------------------------------------------------------------------------
# NumPy metrics
# ---------------------------------------------------------------------------------------------


def _as_binary_mask(name: str, array) -> np.ndarray:
    """`array` as a bool array; raises if it holds values other than 0 / 1 / False / True."""
    array = np.asarray(array)
    if array.dtype == bool:
        return array
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(
            f"`{name}` must be a boolean or numeric array. Received: dtype={array.dtype}"
        )
    if np.any((array != 0) & (array != 1)):
        raise ValueError(
            f"`{name}` must be a binary mask (values 0 and 1 only; threshold probabilities and "
            f"select a class from label maps first). Received values: {np.unique(array)[:10]}"
        )
    return array.astype(bool)


def confusion_counts(y_true, y_pred) -> tuple[int, int, int, int]:
    """Pixel (voxel) counts of the confusion matrix of two binary masks.

    Args:
        y_true: np.ndarray. Ground-truth mask of any shape, bool or numeric with values in {0, 1}.
        y_pred: np.ndarray. Predicted mask, same shape and value rules as `y_true`.

    Returns:
        `(tp, fp, fn, tn)` as Python ints: true positives (`y_true & y_pred`), false positives
        (`~y_true & y_pred`), false negatives (`y_true & ~y_pred`), true negatives.

    Raises:
        ValueError: if the shapes differ, or a mask holds values other than 0 and 1.
    """
    y_true = _as_binary_mask("y_true", y_true)
    y_pred = _as_binary_mask("y_pred", y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            "`y_true` and `y_pred` must have the same shape. "
            f"Received: y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}"
        )
    tp = int(np.count_nonzero(y_true & y_pred))
    fp = int(np.count_nonzero(y_pred)) - tp
    fn = int(np.count_nonzero(y_true)) - tp
    tn = y_true.size - tp - fp - fn
    return tp, fp, fn, tn


def _ratio(numerator: int, denominator: int, tp: int, fp: int, fn: int, empty_value: float):
    """`numerator / denominator`, with the module's empty-mask convention on a zero denominator."""
    if denominator > 0:
        return numerator / denominator
    both_empty = tp + fp + fn == 0
    return float(empty_value) if both_empty else 0.0


def dice_score(y_true, y_pred, *, empty_value: float = 1.0) -> float:
    """Dice coefficient of two binary masks: `2 * tp / (2 * tp + fp + fn)`, in [0, 1].

    Args:
        y_true: np.ndarray. Ground-truth mask of any shape (slice or volume), bool or {0, 1}.
        y_pred: np.ndarray. Predicted mask, same shape.
        empty_value: float. Returned when both masks are empty. Defaults to `1.0`; may be NaN.

    Returns:
        The Dice coefficient as a float; 0.0 when exactly one mask is empty.

    Raises:
        ValueError: if the shapes differ or a mask is not binary.
    """
    tp, fp, fn, _ = confusion_counts(y_true, y_pred)
    return _ratio(2 * tp, 2 * tp + fp + fn, tp, fp, fn, empty_value)


def iou_score(y_true, y_pred, *, empty_value: float = 1.0) -> float:
    """Intersection over union (Jaccard) of two binary masks: `tp / (tp + fp + fn)`, in [0, 1].

    Args:
        y_true: np.ndarray. Ground-truth mask of any shape, bool or {0, 1}.
        y_pred: np.ndarray. Predicted mask, same shape.
        empty_value: float. Returned when both masks are empty. Defaults to `1.0`; may be NaN.

    Returns:
        The IoU as a float; 0.0 when exactly one mask is empty.

    Raises:
        ValueError: if the shapes differ or a mask is not binary.
    """
    tp, fp, fn, _ = confusion_counts(y_true, y_pred)
    return _ratio(tp, tp + fp + fn, tp, fp, fn, empty_value)


def precision_score(y_true, y_pred, *, empty_value: float = 1.0) -> float:
    """Precision (positive predictive value) of a binary mask: `tp / (tp + fp)`, in [0, 1].

    With no predicted positives (`tp + fp == 0`): `empty_value` if the truth is empty too, else
    0.0 (the model missed the whole lesion).

    Args:
        y_true: np.ndarray. Ground-truth mask of any shape, bool or {0, 1}.
        y_pred: np.ndarray. Predicted mask, same shape.
        empty_value: float. Returned when both masks are empty. Defaults to `1.0`; may be NaN.

    Returns:
        The precision as a float.

    Raises:
        ValueError: if the shapes differ or a mask is not binary.
    """
    tp, fp, fn, _ = confusion_counts(y_true, y_pred)
    return _ratio(tp, tp + fp, tp, fp, fn, empty_value)


def recall_score(y_true, y_pred, *, empty_value: float = 1.0) -> float:
    """Recall (sensitivity) of a binary mask: `tp / (tp + fn)`, in [0, 1].

    With no true positives in the truth (`tp + fn == 0`): `empty_value` if the prediction is empty
    too, else 0.0 (the model painted a lesion on a healthy slice).

    Args:
        y_true: np.ndarray. Ground-truth mask of any shape, bool or {0, 1}.
        y_pred: np.ndarray. Predicted mask, same shape.
        empty_value: float. Returned when both masks are empty. Defaults to `1.0`; may be NaN.

    Returns:
        The recall as a float.

    Raises:
        ValueError: if the shapes differ or a mask is not binary.
    """
    tp, fp, fn, _ = confusion_counts(y_true, y_pred)
    return _ratio(tp, tp + fn, tp, fp, fn, empty_value)


def scores_from_counts(tp: int, fp: int, fn: int, *, empty_value: float = 1.0) -> dict[str, float]:
    """Dice, IoU, precision and recall from confusion counts, with this module's empty-mask
    convention; for counts summed over many slices, e.g. a patient's whole volume.

    Returns:
        {"dice": ..., "iou": ..., "precision": ..., "recall": ...} as floats.
    """
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, tp, fp, fn, empty_value),
        "iou": _ratio(tp, tp + fp + fn, tp, fp, fn, empty_value),
        "precision": _ratio(tp, tp + fp, tp, fp, fn, empty_value),
        "recall": _ratio(tp, tp + fn, tp, fp, fn, empty_value),
    }


_CROSS_3X3 = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def _mask_edges(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels: the mask minus its erosion by a 3x3 cross (outside counts as background)."""
    eroded = cv2.erode(
        mask.astype(np.uint8), _CROSS_3X3, borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    return mask & ~eroded.astype(bool)


def _distance_to(edges: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance (pixels) from every pixel to the nearest pixel of `edges`."""
    # distanceTransform measures the distance to the nearest zero pixel.
    not_edges = np.where(edges, 0, 1).astype(np.uint8)
    return cv2.distanceTransform(not_edges, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def hausdorff_distance_95(y_true, y_pred, *, spacing: float = 1.0) -> float:
    """95th-percentile symmetric Hausdorff distance (HD95) between two 2-D binary masks.

    As MONAI's `compute_hausdorff_distance(percentile=95)`: the boundary of each mask is the mask
    minus its erosion by a 3x3 cross (pixels on the image border count as boundary); for every
    boundary pixel of one mask, the Euclidean distance to the nearest boundary pixel of the other
    is taken (`cv2.distanceTransform`, exact L2); HD95 is the larger of the two directed 95th
    percentiles (`np.percentile`, linear interpolation), times `spacing`.

    Only 2-D masks are supported: OpenCV's distance transform is 2-D, and stacking per-slice
    results would not give true 3-D surface distances. Score a volume slice by slice and summarise
    (e.g. `np.nanmean`) if needed.

    Args:
        y_true: np.ndarray. Ground-truth mask, shape (H, W), bool or {0, 1}.
        y_pred: np.ndarray. Predicted mask, shape (H, W).
        spacing: float. Pixel size (e.g. in mm), the same along both axes, > 0. Defaults to `1.0`.

    Returns:
        HD95 in units of `spacing` as a float; NaN when either mask is empty (no boundary to
        measure from), 0.0 for identical masks.

    Raises:
        ValueError: if the masks are not 2-D, shapes differ, a mask is not binary, or
            `spacing <= 0`.
    """
    if isinstance(spacing, bool) or not isinstance(spacing, (int, float)) or not spacing > 0:
        raise ValueError(
            f"`spacing` must be a number > 0 (isotropic pixel size). Received: spacing={spacing!r}"
        )
    y_true = _as_binary_mask("y_true", y_true)
    y_pred = _as_binary_mask("y_pred", y_pred)
    if y_true.ndim != 2 or y_true.shape != y_pred.shape:
        raise ValueError(
            "`y_true` and `y_pred` must be 2-D masks of the same shape (H, W); for volumes, "
            f"score slice by slice. Received: y_true.shape={y_true.shape}, "
            f"y_pred.shape={y_pred.shape}"
        )
    if not y_true.any() or not y_pred.any():
        return math.nan
    edges_true = _mask_edges(y_true)
    edges_pred = _mask_edges(y_pred)
    pred_to_true = _distance_to(edges_true)[edges_pred]
    true_to_pred = _distance_to(edges_pred)[edges_true]
    hd95 = max(np.percentile(pred_to_true, 95), np.percentile(true_to_pred, 95))
    return float(hd95) * float(spacing)


# ---------------------------------------------------------------------------------------------
# Keras metrics
# ---------------------------------------------------------------------------------------------


def _check_class_id(class_id: object) -> None:
    if isinstance(class_id, bool) or not isinstance(class_id, int) or class_id < 0:
        raise ValueError(
            f"`class_id` must be an int >= 0. Received: class_id={class_id!r} ({type(class_id)})"
        )


def _check_threshold(threshold: object) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ValueError(
            f"`threshold` must be a number. Received: threshold={threshold!r} ({type(threshold)})"
        )


def _foreground_masks(y_true, y_pred, threshold: float, class_id: int, owner: str):
    """Thresholded / argmax-ed foreground masks of one class, both float32 (B, H, W).

    Args:
        y_true: tensor. Label map, (B, H, W) or (B, H, W, 1), values in {0..C-1}.
        y_pred: tensor. Probabilities, (B, H, W, C).
        threshold: float. Binary (C == 1) cut-off: label 1 where P >= threshold.
        class_id: int. The class counted as foreground.
        owner: str. Metric name for messages.
    """
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    y_true = ops.convert_to_tensor(y_true)
    if len(y_pred.shape) < 3 or y_pred.shape[-1] is None:
        raise ValueError(
            f"{owner}: `y_pred` must have shape (B, H, W, C) with a known C. "
            f"Received: y_pred.shape={y_pred.shape}"
        )
    num_channels = int(y_pred.shape[-1])
    if class_id >= max(num_channels, 2):
        raise ValueError(
            f"{owner}: `class_id` must be < {max(num_channels, 2)} for a model with C="
            f"{num_channels} output channel(s). Received: class_id={class_id}"
        )
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    elif len(y_true.shape) != len(y_pred.shape) - 1:
        raise ValueError(
            f"{owner}: `y_true` must be a label map (B, H, W) or (B, H, W, 1) for `y_pred` "
            f"(B, H, W, C). Received: y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}"
        )
    labels = ops.cast(ops.round(ops.cast(y_true, "float32")), "int32")
    if num_channels == 1:
        predicted = ops.cast(y_pred[..., 0] >= threshold, "int32")
    else:
        if threshold != 0.5:
            warnings.warn(
                f"{owner}: `threshold={threshold}` is ignored for a multi-class model "
                f"(C={num_channels}): the predicted class is the argmax.",
                stacklevel=3,
            )
        predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
    true_mask = ops.cast(ops.equal(labels, class_id), "float32")
    pred_mask = ops.cast(ops.equal(predicted, class_id), "float32")
    return true_mask, pred_mask


class _OverlapMetric(keras.metrics.Metric):
    """Base of `DiceCoefficient` and `IoUCoefficient`: counts tp / fp / fn, pooled or per image.

    Subclasses define `_score(tp, fp, fn)` on tensors (a zero denominator is handled here).
    """

    def __init__(
        self,
        threshold: float = 0.5,
        per_image: bool = False,
        class_id: int = 1,
        name: str | None = None,
        dtype=None,
    ):
        super().__init__(name=name, dtype=dtype)
        _check_threshold(threshold)
        if not isinstance(per_image, bool):
            raise ValueError(
                f"`per_image` must be a bool. Received: per_image={per_image!r} ({type(per_image)})"
            )
        _check_class_id(class_id)
        self.threshold = float(threshold)
        self.per_image = per_image
        self.class_id = class_id
        self._direction = "up"
        # float32 counts: exact up to 2**24 pixels, then relative error ~1e-7 (harmless in ratios).
        self.true_positives = self.add_variable(shape=(), initializer="zeros", name="tp")
        self.false_positives = self.add_variable(shape=(), initializer="zeros", name="fp")
        self.false_negatives = self.add_variable(shape=(), initializer="zeros", name="fn")
        self.score_sum = self.add_variable(shape=(), initializer="zeros", name="score_sum")
        self.image_count = self.add_variable(shape=(), initializer="zeros", name="image_count")

    @staticmethod
    def _score(tp, fp, fn):
        raise NotImplementedError

    def _score_or_one(self, tp, fp, fn):
        """`_score`, and 1.0 where both masks are empty (tp + fp + fn == 0)."""
        empty = ops.equal(tp + fp + fn, 0.0)
        safe = self._score(tp, fp, fn + ops.cast(empty, "float32"))  # no 0 / 0 in either branch
        return ops.where(empty, 1.0, safe)

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulates counts for a batch.

        Args:
            y_true: tensor. Label map (B, H, W) or (B, H, W, 1).
            y_pred: tensor. Probabilities (B, H, W, C).
            sample_weight: tensor or None. Weights broadcastable to (B, H, W), e.g. (B, 1, 1) per
                image or (B, H, W) per pixel (0 masks a pixel). In per-image mode an image whose
                weights are all 0 is not counted.
        """
        true_mask, pred_mask = _foreground_masks(
            y_true, y_pred, self.threshold, self.class_id, self.name
        )
        pixel_axes = tuple(range(1, len(true_mask.shape)))
        image_weight = ops.ones((ops.shape(true_mask)[0],), dtype="float32")
        if sample_weight is not None:
            weight = ops.broadcast_to(ops.cast(sample_weight, "float32"), ops.shape(true_mask))
            true_mask_w, pred_mask_w = true_mask * weight, pred_mask * weight
            image_weight = ops.cast(ops.sum(weight, axis=pixel_axes) > 0, "float32")
        else:
            true_mask_w, pred_mask_w = true_mask, pred_mask
        tp = ops.sum(true_mask_w * pred_mask, axis=pixel_axes)
        fp = ops.sum(pred_mask_w, axis=pixel_axes) - tp
        fn = ops.sum(true_mask_w, axis=pixel_axes) - tp
        scores = self._score_or_one(tp, fp, fn) * image_weight
        for variable, value in (
            (self.true_positives, ops.sum(tp)),
            (self.false_positives, ops.sum(fp)),
            (self.false_negatives, ops.sum(fn)),
            (self.score_sum, ops.sum(scores)),
            (self.image_count, ops.sum(image_weight)),
        ):
            variable.assign_add(ops.cast(value, self.dtype))

    def result(self):
        """Per-image mean, or the score of the pooled counts (0.0 before any update)."""
        if self.per_image:
            return ops.divide_no_nan(self.score_sum, self.image_count)
        pooled = self._score_or_one(self.true_positives, self.false_positives, self.false_negatives)
        return ops.where(self.image_count > 0, pooled, 0.0)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {"threshold": self.threshold, "per_image": self.per_image, "class_id": self.class_id}
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DiceCoefficient(_OverlapMetric):
    """Thresholded Dice coefficient `2 * tp / (2 * tp + fp + fn)` of one class, in [0, 1].

    Inputs: `y_true` label map (B, H, W) or (B, H, W, 1) with values in {0..C-1}; `y_pred`
    probabilities (B, H, W, C). For C == 1, foreground is `P >= threshold`; for C >= 2, the argmax
    (the threshold is then ignored, with a warning if set). `class_id` picks the class scored
    (for C == 1, `class_id=0` scores the background).

    `per_image=False` pools tp / fp / fn over everything seen since the last `reset_state()` (a
    slice without tumour adds only its false positives). `per_image=True` averages one Dice per
    image, an image with empty truth and empty prediction scoring 1.0 (MONAI's
    `ignore_empty=False`). Pooled Dice equals `keras.metrics.F1Score` on flattened masks, but Keras
    has no per-image or label-map version, hence this class.

    Args:
        threshold: float. Probability cut-off for binary models. Defaults to `0.5`.
        per_image: bool. Mean of per-image scores instead of pooled counts. Defaults to `False`.
        class_id: int. Foreground class. Defaults to `1`.
        name: str. Metric name. Defaults to `"dice"`.
        dtype: str or None. Result dtype. Defaults to `None` (float32).

    Raises:
        ValueError: on a bad argument; at update time, if shapes do not follow the conventions or
            `class_id >= max(C, 2)`.
    """

    def __init__(
        self,
        threshold: float = 0.5,
        per_image: bool = False,
        class_id: int = 1,
        name: str = "dice",
        dtype=None,
    ):
        super().__init__(threshold, per_image, class_id, name=name, dtype=dtype)

    @staticmethod
    def _score(tp, fp, fn):
        return 2.0 * tp / (2.0 * tp + fp + fn)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class IoUCoefficient(_OverlapMetric):
    """Thresholded intersection over union `tp / (tp + fp + fn)` of one class, in [0, 1].

    Same inputs, modes and empty-mask convention as `DiceCoefficient`. Pooled IoU of class 1 equals
    `keras.metrics.BinaryIoU(target_class_ids=[1])` whenever the class occurs; Keras returns 0
    where this returns 1 for empty-empty, and has no per-image mean, hence this class.

    Args:
        threshold: float. Probability cut-off for binary models. Defaults to `0.5`.
        per_image: bool. Mean of per-image scores instead of pooled counts. Defaults to `False`.
        class_id: int. Foreground class. Defaults to `1`.
        name: str. Metric name. Defaults to `"iou"`.
        dtype: str or None. Result dtype. Defaults to `None` (float32).

    Raises:
        ValueError: on a bad argument; at update time, if shapes do not follow the conventions or
            `class_id >= max(C, 2)`.
    """

    def __init__(
        self,
        threshold: float = 0.5,
        per_image: bool = False,
        class_id: int = 1,
        name: str = "iou",
        dtype=None,
    ):
        super().__init__(threshold, per_image, class_id, name=name, dtype=dtype)

    @staticmethod
    def _score(tp, fp, fn):
        return tp / (tp + fp + fn)


class _ClassMaskMixin:
    """Turns label maps and probabilities into {0, 1} masks of `class_id` before Keras counts.

    `keras.metrics.Precision(class_id=k)` thresholds channel `k` of `y_pred` and needs one-hot
    labels; segmentation wants argmax == k against a label map, hence this small mixin.
    """

    def _init_class_mask(self, class_id: int, threshold: float) -> None:
        _check_class_id(class_id)
        _check_threshold(threshold)
        # Not `self.class_id`: Keras' Precision / Recall use that attribute to slice channels.
        self.foreground_class_id = class_id
        self.threshold = float(threshold)

    def update_state(self, y_true, y_pred, sample_weight=None):
        true_mask, pred_mask = _foreground_masks(
            y_true, y_pred, self.threshold, self.foreground_class_id, self.name
        )
        return super().update_state(true_mask, pred_mask, sample_weight=sample_weight)

    def get_config(self) -> dict:
        config = keras.metrics.Metric.get_config(self)
        config.update({"class_id": self.foreground_class_id, "threshold": self.threshold})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ClassPrecision(_ClassMaskMixin, keras.metrics.Precision):
    """Pooled precision `tp / (tp + fp)` of one class for probability maps, in [0, 1].

    `keras.metrics.Precision` counting `argmax(y_pred) == class_id` (or `P >= threshold` when
    C == 1) against `y_true == class_id`. Inputs as `DiceCoefficient`. Keras' convention: 0.0
    when nothing has been predicted positive.

    Args:
        class_id: int. Foreground class. Defaults to `1`.
        threshold: float. Probability cut-off for binary models. Defaults to `0.5`.
        name: str. Metric name. Defaults to `"precision"`.
        dtype: str or None. Result dtype. Defaults to `None` (float32).

    Raises:
        ValueError: on a bad argument, or at update time as `DiceCoefficient`.
    """

    def __init__(
        self, class_id: int = 1, threshold: float = 0.5, name: str = "precision", dtype=None
    ):
        super().__init__(thresholds=0.5, name=name, dtype=dtype)  # masks are exactly 0 or 1
        self._init_class_mask(class_id, threshold)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ClassRecall(_ClassMaskMixin, keras.metrics.Recall):
    """Pooled recall `tp / (tp + fn)` of one class for probability maps, in [0, 1].

    `keras.metrics.Recall` counting `argmax(y_pred) == class_id` (or `P >= threshold` when C == 1)
    against `y_true == class_id`. Inputs as `DiceCoefficient`. Keras' convention: 0.0 when the
    class has not occurred in the truth.

    Args:
        class_id: int. Foreground class. Defaults to `1`.
        threshold: float. Probability cut-off for binary models. Defaults to `0.5`.
        name: str. Metric name. Defaults to `"recall"`.
        dtype: str or None. Result dtype. Defaults to `None` (float32).

    Raises:
        ValueError: on a bad argument, or at update time as `DiceCoefficient`.
    """

    def __init__(self, class_id: int = 1, threshold: float = 0.5, name: str = "recall", dtype=None):
        super().__init__(thresholds=0.5, name=name, dtype=dtype)  # masks are exactly 0 or 1
        self._init_class_mask(class_id, threshold)


def precision_recall_metrics(
    num_classes: int, *, class_id: int = 1, threshold: float = 0.5
) -> list[keras.metrics.Metric]:
    """Pooled precision and recall metrics suited to a model with `num_classes` output channels.

    For a binary model (C == 1, `class_id=1`) these are Keras' own `keras.metrics.Precision` and
    `keras.metrics.Recall` with `thresholds=threshold`: they threshold P(tumour) and treat label 1
    as positive, which is exactly right for (B, H, W) or (B, H, W, 1) labels against (B, H, W, 1)
    probabilities. Otherwise (C >= 2, or `class_id=0`) `ClassPrecision` / `ClassRecall`.
    Keras counts `P > threshold` as positive, `DiceCoefficient` / `IoUCoefficient` (like
    `keras.metrics.BinaryIoU`) `P >= threshold`: they differ only for P exactly at the threshold.

    Args:
        num_classes: int. Output channels C of the model: 1 (sigmoid) or >= 2 (softmax).
        class_id: int. Foreground class; must be < max(C, 2). Defaults to `1`.
        threshold: float. Probability cut-off for binary models. Defaults to `0.5`.

    Returns:
        `[precision, recall]`, named "precision" and "recall".

    Raises:
        ValueError: if `num_classes` is not an int >= 1 or `class_id` is out of range.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"`num_classes` must be an int >= 1. Received: num_classes={num_classes!r} "
            f"({type(num_classes)})"
        )
    _check_class_id(class_id)
    _check_threshold(threshold)
    if class_id >= max(num_classes, 2):
        raise ValueError(
            f"`class_id` must be < {max(num_classes, 2)} for num_classes={num_classes}. "
            f"Received: class_id={class_id}"
        )
    if num_classes == 1 and class_id == 1:
        return [
            keras.metrics.Precision(thresholds=threshold, name="precision"),
            keras.metrics.Recall(thresholds=threshold, name="recall"),
        ]
    return [
        ClassPrecision(class_id=class_id, threshold=threshold),
        ClassRecall(class_id=class_id, threshold=threshold),
    ]
