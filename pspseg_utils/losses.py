"""Segmentation losses for models that output per-pixel probabilities (or logits).

Conventions shared by every loss here:

- `y_pred`: shape `(B, H, W, C)`, float (float16 under mixed precision is cast to float32).
  `C == 1` is binary (the channel is P(tumour), sigmoid); `C >= 2` is multi-class (softmax).
  With `from_logits=True` the sigmoid / softmax is applied inside the loss.
- `y_true`: a label map of shape `(B, H, W)` or `(B, H, W, 1)`, integer or float, with values
  in `{0, ..., C - 1}` (binary: `{0, 1}`).
- `call()` returns one loss per image, shape `(B,)` (the pooled Dice returns a scalar); Keras then
  applies `reduction` (default `"sum_over_batch_size"`: the mean over images) and `sample_weight`
  (one weight per image).

Why not just `keras.losses.Dice` (checked against keras 3.15 source, `keras/src/losses/losses.py`):
it computes `1 - 2 * sum(y_true * y_pred) / (sum(y_true) + sum(y_pred) + epsilon)` over *all*
axes by default (one pooled number for the batch), has no `from_logits`, no smoothing (so an
empty prediction on an empty truth gives loss 1, not 0), and does not one-hot label maps for
multi-class outputs. `SoftDiceLoss(smooth=0.0, per_image=False)` reproduces it in the binary case
(tested).
"""

from __future__ import annotations

import warnings

import keras
from keras import ops

__all__ = ["BCEDiceLoss", "FocalLoss", "SoftDiceLoss", "get_loss"]

_PACKAGE = "pspseg"


# ---------------------------------------------------------------------------------------------
# Utility functions
# ---------------------------------------------------------------------------------------------


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be a bool. Received: {name}={value!r} ({type(value)})")


def _check_non_negative(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(
            f"`{name}` must be a number >= 0. Received: {name}={value!r} ({type(value)})"
        )


def _check_fraction(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(
            f"`{name}` must be a number in [0, 1]. Received: {name}={value!r} ({type(value)})"
        )


def _num_channels(y_pred) -> int:
    """The static channel count `C` of `y_pred` (B, H, W, C); raises if it is unknown."""
    if len(y_pred.shape) < 3 or y_pred.shape[-1] is None:
        raise ValueError(
            "`y_pred` must have shape (B, H, W, C) with a known channel count C. "
            f"Received: y_pred.shape={y_pred.shape}"
        )
    return int(y_pred.shape[-1])


def _label_map(y_true, y_pred):
    """Returns `y_true` as an int32 label map of shape `y_pred.shape[:-1]` (B, H, W)."""
    rank_pred = len(y_pred.shape)
    rank_true = len(y_true.shape)
    if rank_true == rank_pred and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    elif rank_true != rank_pred - 1:
        raise ValueError(
            "`y_true` must be a label map of shape (B, H, W) or (B, H, W, 1) for `y_pred` of "
            f"shape (B, H, W, C). Received: y_true.shape={y_true.shape}, "
            f"y_pred.shape={y_pred.shape}"
        )
    # Float labels such as 1.0 or 0.9999999 (after resizing) map to the nearest integer.
    return ops.cast(ops.round(ops.cast(y_true, "float32")), "int32")


def _targets_and_probabilities(y_true, y_pred, from_logits: bool):
    """Label map -> one-hot targets, and logits -> probabilities; all float32.

    Args:
        y_true: tensor. Label map, shape (B, H, W) or (B, H, W, 1).
        y_pred: tensor. Probabilities or logits, shape (B, H, W, C).
        from_logits: bool. Whether `y_pred` holds logits.

    Returns:
        `(labels, targets, probabilities)`: int32 labels (B, H, W), float32 targets and
        probabilities (B, H, W, C). Binary (C == 1) targets are the labels themselves.
    """
    y_pred = ops.cast(y_pred, "float32")
    num_channels = _num_channels(y_pred)
    labels = _label_map(y_true, y_pred)
    if num_channels == 1:
        targets = ops.expand_dims(ops.cast(labels, "float32"), axis=-1)
        probabilities = ops.sigmoid(y_pred) if from_logits else y_pred
    else:
        targets = ops.one_hot(labels, num_channels, dtype="float32")
        probabilities = ops.softmax(y_pred, axis=-1) if from_logits else y_pred
    return labels, targets, probabilities


def _soft_dice_loss(
    targets, probabilities, smooth, per_image, include_background, false_negative_weight=0.5
):
    """`1 - mean over classes of (2 * I + smooth) / (2 * I + 2a * FP + 2b * FN + smooth)`, with
    I = sum(t * p), FP = sum(p) - I, FN = sum(t) - I, b = `false_negative_weight`, a = 1 - b:
    the Tversky index (Salehi et al. 2017), which is the Dice at b = 0.5.

    Returns shape (B,) when `per_image`, else a scalar pooled over the batch.
    """
    rank = len(probabilities.shape)
    axes = tuple(range(1, rank - 1)) if per_image else tuple(range(rank - 1))
    intersection = ops.sum(targets * probabilities, axis=axes)
    false_positives = ops.sum(probabilities, axis=axes) - intersection
    false_negatives = ops.sum(targets, axis=axes) - intersection
    denominator = 2.0 * (
        intersection
        + (1.0 - false_negative_weight) * false_positives
        + false_negative_weight * false_negatives
    )
    # epsilon only guards smooth == 0 with both masks empty (then dice = 0, as keras.losses.Dice).
    dice = (2.0 * intersection + smooth) / (denominator + smooth + keras.config.epsilon())
    if probabilities.shape[-1] > 1 and not include_background:
        dice = dice[..., 1:]
    return 1.0 - ops.mean(dice, axis=-1)


def _mean_over_pixels(values):
    """Mean of a (B, H, W) tensor over everything but the batch axis -> (B,)."""
    return ops.mean(values, axis=tuple(range(1, len(values.shape))))


def _cross_entropy(labels, targets, y_pred, from_logits):
    """Per-image mean binary / sparse categorical cross-entropy, shape (B,)."""
    y_pred = ops.cast(y_pred, "float32")
    if y_pred.shape[-1] == 1:
        pixel_losses = ops.binary_crossentropy(targets, y_pred, from_logits=from_logits)
        pixel_losses = ops.squeeze(pixel_losses, axis=-1)
    else:
        pixel_losses = ops.sparse_categorical_crossentropy(labels, y_pred, from_logits=from_logits)
    return _mean_over_pixels(pixel_losses)


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SoftDiceLoss(keras.losses.Loss):
    """Soft Dice loss, `1 - Dice`, for binary and multi-class probability maps.

    Formula, per class `c` (sums over the pixels of one image, or of the whole batch when
    `per_image=False`; `t` the one-hot target, `p` the probability):

    ```
    dice_c = (2 * sum(t_c * p_c) + smooth) / (sum(t_c) + sum(p_c) + smooth)
    loss = 1 - mean_c(dice_c)
    ```

    Binary models (C == 1) have the single class "tumour". Multi-class models (C >= 2) average over
    classes `1..C-1` by default (background excluded), over `0..C-1` with
    `include_background=True`.

    Empty masks: with `smooth > 0`, an empty prediction on an empty truth gives dice 1, loss 0. With
    `smooth=0` the same case gives loss 1 (as `keras.losses.Dice` does).

    Why not `keras.losses.Dice`: it has no `from_logits`, no smoothing, no one-hot of label maps and
    pools over the whole batch; see the module docstring.

    Args:
        smooth: float. Added to numerator and denominator, >= 0. Defaults to `1.0`.
        per_image: bool. `True`: one Dice per image (shape (B,) before reduction, so
            `sample_weight` weights images); `False`: one Dice pooled over the batch. Defaults to
            `True`.
        include_background: bool. Whether class 0 counts in the multi-class mean. Has no effect
            when C == 1 (the one channel is the foreground). Defaults to `False`.
        false_negative_weight: float in [0, 1]. Above 0.5 a missed tumour pixel costs more than
            a false alarm (the Tversky loss, `b` in `_soft_dice_loss`); 0.5 is the Dice.
            Defaults to `0.5`.
        from_logits: bool. Whether `y_pred` holds logits rather than probabilities. Defaults to
            `False`.
        reduction: str or None. Keras loss reduction. Defaults to `"sum_over_batch_size"`.
        name: str. Name of the loss. Defaults to `"soft_dice"`.
        **kwargs: Other arguments of `keras.losses.Loss` (e.g. `dtype`).

    Raises:
        ValueError: if `smooth < 0` or a flag is not a bool; at call time, if the shapes of
            `y_true` and `y_pred` do not match the conventions above.

    Example:

    >>> loss = SoftDiceLoss()
    >>> y_true = np.array([[[1, 0], [0, 0]]])  # (B, H, W)
    >>> y_pred = np.array([[[[0.9], [0.1]], [[0.0], [0.0]]]])  # (B, H, W, 1)
    >>> float(loss(y_true, y_pred))  # 1 - (2 * 0.9 + 1) / (1 + 1.0 + 1)
    0.0666...
    """

    def __init__(
        self,
        smooth: float = 1.0,
        per_image: bool = True,
        include_background: bool = False,
        false_negative_weight: float = 0.5,
        from_logits: bool = False,
        reduction: str | None = "sum_over_batch_size",
        name: str = "soft_dice",
        **kwargs,
    ):
        super().__init__(name=name, reduction=reduction, **kwargs)
        _check_non_negative("smooth", smooth)
        _check_bool("per_image", per_image)
        _check_bool("include_background", include_background)
        _check_fraction("false_negative_weight", false_negative_weight)
        _check_bool("from_logits", from_logits)
        self.smooth = float(smooth)
        self.per_image = per_image
        self.include_background = include_background
        self.false_negative_weight = float(false_negative_weight)
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        if self.include_background and _num_channels(y_pred) == 1:
            warnings.warn(
                "SoftDiceLoss: `include_background=True` is ignored for a binary model "
                "(C == 1): its single channel is the foreground.",
                stacklevel=2,
            )
        _, targets, probabilities = _targets_and_probabilities(y_true, y_pred, self.from_logits)
        return self.dice_term(targets, probabilities)

    def dice_term(self, targets, probabilities):
        """`1 - Dice` (or Tversky) of one-hot `targets` and `probabilities` (B, H, W, C) with
        this loss's settings: shape (B,) per image, else a scalar."""
        return _soft_dice_loss(
            targets,
            probabilities,
            self.smooth,
            self.per_image,
            self.include_background,
            self.false_negative_weight,
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "smooth": self.smooth,
                "per_image": self.per_image,
                "include_background": self.include_background,
                "false_negative_weight": self.false_negative_weight,
                "from_logits": self.from_logits,
            }
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BCEDiceLoss(SoftDiceLoss):
    """Cross-entropy plus soft Dice: `bce_weight * CE + dice_weight * (1 - Dice)`.

    CE is binary cross-entropy for C == 1 and sparse categorical cross-entropy (on the label map)
    for C >= 2, averaged over the pixels of each image. The Dice term is `SoftDiceLoss` with the
    same arguments. With `from_logits=True` the CE is computed from the logits directly (stable),
    the Dice from their sigmoid / softmax.

    Args:
        bce_weight: float. Weight of the cross-entropy term, >= 0. Defaults to `1.0`.
        dice_weight: float. Weight of the Dice term, >= 0. Defaults to `1.0`.
        smooth: float. Dice smoothing, >= 0. Defaults to `1.0`.
        per_image: bool. Dice per image (`True`) or pooled over the batch. Defaults to `True`.
        include_background: bool. Whether class 0 counts in the multi-class Dice. Defaults to
            `False`.
        false_negative_weight: float in [0, 1]. The Dice term's weight of missed pixels
            against false alarms (as in `SoftDiceLoss`; 0.5 is the Dice). Defaults to `0.5`.
        from_logits: bool. Whether `y_pred` holds logits. Defaults to `False`.
        reduction: str or None. Keras loss reduction. Defaults to `"sum_over_batch_size"`.
        name: str. Name of the loss. Defaults to `"bce_dice"`.
        **kwargs: Other arguments of `keras.losses.Loss` (e.g. `dtype`).

    Raises:
        ValueError: if a weight or `smooth` is negative, both weights are 0, or a flag is not a
            bool; at call time, if the shapes do not match the module's conventions.
    """

    def __init__(
        self,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
        per_image: bool = True,
        include_background: bool = False,
        false_negative_weight: float = 0.5,
        from_logits: bool = False,
        reduction: str | None = "sum_over_batch_size",
        name: str = "bce_dice",
        **kwargs,
    ):
        super().__init__(
            smooth=smooth,
            per_image=per_image,
            include_background=include_background,
            false_negative_weight=false_negative_weight,
            from_logits=from_logits,
            reduction=reduction,
            name=name,
            **kwargs,
        )
        _check_non_negative("bce_weight", bce_weight)
        _check_non_negative("dice_weight", dice_weight)
        if bce_weight == 0 and dice_weight == 0:
            raise ValueError(
                "At least one of `bce_weight` and `dice_weight` must be > 0. "
                f"Received: bce_weight={bce_weight}, dice_weight={dice_weight}"
            )
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)

    def call(self, y_true, y_pred):
        labels, targets, probabilities = _targets_and_probabilities(
            y_true, y_pred, self.from_logits
        )
        cross_entropy = _cross_entropy(labels, targets, y_pred, self.from_logits)
        dice = self.dice_term(targets, probabilities)
        # A pooled (scalar) Dice broadcasts onto the (B,) cross-entropy.
        return self.bce_weight * cross_entropy + self.dice_weight * dice

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "bce_weight": self.bce_weight,
            "dice_weight": self.dice_weight,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FocalLoss(keras.losses.Loss):
    """Focal loss (Lin et al., 2017), binary or multi-class, averaged over the pixels of an image.

    Formula per pixel, with `p_t` the probability given to the true class:

    ```
    focal = alpha_t * (1 - p_t) ** gamma * (-log(p_t))
    alpha_t = alpha for foreground pixels (label >= 1), 1 - alpha for background (label 0)
    ```

    Binary models (C == 1) use `keras.losses.BinaryFocalCrossentropy` (with
    `apply_class_balancing=True` unless `alpha` is None). Keras has no sparse multi-class focal
    loss, so for C >= 2 it is computed here from the label map and the softmax. `gamma=0` and
    `alpha=None` give plain cross-entropy.

    Args:
        gamma: float. Focusing parameter, >= 0. Defaults to `2.0`.
        alpha: float or None. Weight of foreground pixels in `[0, 1]` (background gets
            `1 - alpha`); `None` weights every pixel 1. Defaults to `0.25` (RetinaNet's value).
        from_logits: bool. Whether `y_pred` holds logits. Defaults to `False`.
        reduction: str or None. Keras loss reduction. Defaults to `"sum_over_batch_size"`.
        name: str. Name of the loss. Defaults to `"focal"`.
        **kwargs: Other arguments of `keras.losses.Loss` (e.g. `dtype`).

    Raises:
        ValueError: if `gamma < 0`, `alpha` is outside `[0, 1]` or `from_logits` is not a bool;
            at call time, if the shapes do not match the module's conventions.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | None = 0.25,
        from_logits: bool = False,
        reduction: str | None = "sum_over_batch_size",
        name: str = "focal",
        **kwargs,
    ):
        super().__init__(name=name, reduction=reduction, **kwargs)
        _check_non_negative("gamma", gamma)
        if alpha is not None and (
            isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1
        ):
            raise ValueError(
                f"`alpha` must be None or a number in [0, 1]. Received: alpha={alpha!r} "
                f"({type(alpha)})"
            )
        _check_bool("from_logits", from_logits)
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)
        self.from_logits = from_logits
        self._binary_focal = keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=self.alpha is not None,
            alpha=0.25 if self.alpha is None else self.alpha,
            gamma=self.gamma,
            from_logits=from_logits,
            reduction=None,
        )

    def call(self, y_true, y_pred):
        labels, targets, probabilities = _targets_and_probabilities(
            y_true, y_pred, self.from_logits
        )
        if y_pred.shape[-1] == 1:
            # (B, H, W, 1) -> (B, H, W): Keras averages over the last (channel) axis.
            pixel_losses = self._binary_focal(targets, ops.cast(y_pred, "float32"))
            return _mean_over_pixels(pixel_losses)
        if self.from_logits:
            log_probabilities = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        else:
            epsilon = keras.config.epsilon()
            log_probabilities = ops.log(ops.clip(probabilities, epsilon, 1.0 - epsilon))
        log_p_true = ops.sum(targets * log_probabilities, axis=-1)
        p_true = ops.exp(log_p_true)
        pixel_losses = -ops.power(1.0 - p_true, self.gamma) * log_p_true
        if self.alpha is not None:
            is_foreground = ops.cast(labels > 0, "float32")
            pixel_losses *= is_foreground * self.alpha + (1.0 - is_foreground) * (1 - self.alpha)
        return _mean_over_pixels(pixel_losses)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"gamma": self.gamma, "alpha": self.alpha, "from_logits": self.from_logits})
        return config


# ---------------------------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------------------------

LOSS_NAMES = ("dice", "bce_dice", "bce_batch_dice", "bce_batch_tversky", "focal", "crossentropy")

# Missed pixels weigh 0.7 against 0.3 for false alarms (Salehi et al. 2017 found 0.7 best for
# small lesions): the recipe's misses are small tumours found in part, at high precision.
# Not the recipe's: it scored lower by 5-fold cross-validation (benchmarks/EXPERIMENTS.md).
TVERSKY_FALSE_NEGATIVE_WEIGHT = 0.7


def get_loss(name: str, *, num_classes: int, from_logits: bool = False) -> keras.losses.Loss:
    """Returns a loss by name, for a model with `num_classes` output channels.

    Args:
        name: str. One of `"dice"` (`SoftDiceLoss`), `"bce_dice"` (`BCEDiceLoss`),
            `"bce_batch_dice"` (`BCEDiceLoss(per_image=False)`, Dice pooled over the batch),
            `"bce_batch_tversky"` (the same with `false_negative_weight=0.7`),
            `"focal"` (`FocalLoss`) or `"crossentropy"` (`keras.losses.BinaryCrossentropy` when
            `num_classes == 1`, `keras.losses.SparseCategoricalCrossentropy` otherwise).
        num_classes: int. Channels C of the model output: 1 for a binary sigmoid model, >= 2 for
            a softmax model (the custom losses also read C from `y_pred`).
        from_logits: bool. Whether the model outputs logits. Defaults to `False`.

    Returns:
        A `keras.losses.Loss` instance.

    Raises:
        ValueError: if `name` is unknown (the message lists the valid names) or `num_classes` is
            not an int >= 1.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"`num_classes` must be an int >= 1. Received: num_classes={num_classes!r} "
            f"({type(num_classes)})"
        )
    _check_bool("from_logits", from_logits)
    if name == "dice":
        return SoftDiceLoss(from_logits=from_logits)
    if name == "bce_dice":
        return BCEDiceLoss(from_logits=from_logits)
    if name == "bce_batch_dice":
        return BCEDiceLoss(from_logits=from_logits, per_image=False)
    if name == "bce_batch_tversky":
        return BCEDiceLoss(
            from_logits=from_logits,
            per_image=False,
            false_negative_weight=TVERSKY_FALSE_NEGATIVE_WEIGHT,
        )
    if name == "focal":
        return FocalLoss(from_logits=from_logits)
    if name == "crossentropy":
        if num_classes == 1:
            return keras.losses.BinaryCrossentropy(from_logits=from_logits)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    raise ValueError(f"Unknown loss name. Valid names: {LOSS_NAMES}. Received: name={name!r}")
