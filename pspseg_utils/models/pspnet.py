"""PSPNet (Zhao et al. 2017, arXiv:1612.01105) on dilated VGG16, ResNet50 or MobileNetV2.

Reads top to bottom: the argument check, the blocks (conv-BN-ReLU, the pyramid pooling module),
the model class, then its builder. The article's builders (`vgg_pspnet`, ...) are in
`pspseg_utils.keras_segmentation`.

    image (H, W, 3) -> standardise -> dilated backbone (H/8, W/8, C)
      -> pyramid pooling: average-pool to 1x1, 2x2, 3x3, 6x6 bins, 1x1 conv to C/4 channels,
         upsample bilinearly, concatenate with the features
      -> 3x3 conv-BN-ReLU -> dropout -> 1x1 conv to classes -> bilinear upsampling to (H, W)
      -> sigmoid (1 class: tumour probability) or softmax (>= 2 classes)

With `skip_channels`, a decoder (DeepLabV3+'s, Chen et al. 2018) refines the head at stride 4:
the head's features, upsampled 2x, meet the backbone's stride-4 features reduced to
`skip_channels`, and a 3x3 conv-BN-ReLU and the classifier run there. At stride 8 a 128 px
slice is a 16x16 grid, too coarse for a tumour a dozen pixels wide; stride 4 gives 32x32.

With `aux_loss_weight`, a smaller head on the backbone's second-to-last stage also predicts the
mask while training, and its loss, weighted, joins the main one (the paper's deep supervision);
at inference the model returns the main output only.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers, ops

from pspseg_utils import rules
from pspseg_utils.models.backbones import BACKBONES, BATCH_NORM_MOMENTUM, build_backbone
from pspseg_utils.models.layers import (
    AdaptiveAveragePooling,
    FusedBatchNormalization,
    SliceStandardization,
)

__all__ = [
    "PSPNet",
    "build_pspnet",
    "pyramid_pooling_module",
]


def check_input_shape(input_shape: Sequence[int], *, output_stride: int, bins: Sequence[int]):
    """Raise ValueError, saying what to pass instead, unless the input suits the network.

    Height and width must be multiples of the output stride (so features align with pixels),
    and the feature map must be at least as large as the largest bin.
    """
    if len(input_shape) != 3 or rules.context_slices_for(input_shape[2]) is None:
        raise ValueError(
            f"input_shape must be (height, width, 3), or 9, 15, ... channels for a slice with "
            f"its neighbours, got {tuple(input_shape)!r}; MRI slices here have 3 channels "
            "(pre-contrast, FLAIR, post-contrast)"
        )
    height, width = int(input_shape[0]), int(input_shape[1])
    smallest = output_stride * max(bins, default=1)
    for side, size in (("height", height), ("width", width)):
        if size % output_stride:
            fixed = max(smallest, round(size / output_stride) * output_stride)
            raise ValueError(
                f"input {side} must be a multiple of {output_stride} (the output stride), "
                f"got {size}; use {fixed}"
            )
        if size < smallest:
            raise ValueError(
                f"input {side} must be at least {smallest} (output stride {output_stride} x "
                f"largest bin {max(bins, default=1)}), got {size}"
            )


def conv_bn_relu(x, filters: int, kernel_size: int, *, name: str):
    """Conv (no bias: BN follows) -> BatchNorm -> ReLU, each layer named `{name}_...`."""
    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = FusedBatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def segmentation_head(
    x,
    num_classes: int,
    *,
    channels: int,
    dropout_rate: float,
    size,
    name: str,
    skip=None,
    skip_channels: int = 0,
):
    """3x3 conv-BN-ReLU -> dropout -> 1x1 conv to classes -> bilinear resize to `size` -> float32
    sigmoid (1 class) or softmax: (B, h, w, C) -> (B, *size, num_classes) probabilities.

    With `skip` (B, h', w', C') features at a finer stride, the decoder runs before the
    classifier: x upsampled to (h', w'), concatenated with skip reduced by a 1x1 conv-BN-ReLU
    to `skip_channels`, then a 3x3 conv-BN-ReLU to channels / 2."""
    x = conv_bn_relu(x, channels, 3, name=name)
    x = layers.Dropout(dropout_rate, name=f"{name}_dropout")(x)
    if skip is not None:
        x = layers.Resizing(
            skip.shape[1], skip.shape[2], interpolation="bilinear", name=f"{name}_to_skip"
        )(x)
        reduced_skip = conv_bn_relu(skip, skip_channels, 1, name=f"{name}_skip")
        x = layers.Concatenate(name=f"{name}_skip_concat")([x, reduced_skip])
        x = conv_bn_relu(x, max(1, channels // 2), 3, name=f"{name}_decoder")
    x = layers.Conv2D(num_classes, 1, name=f"{name}_classifier")(x)
    x = layers.Resizing(*size, interpolation="bilinear", name=f"{name}_upsample")(x)
    activation = "sigmoid" if num_classes == 1 else "softmax"
    return layers.Activation(activation, dtype="float32", name=f"{name}_probabilities")(x)


def pyramid_pooling_module(
    features,
    *,
    bins: Sequence[int] = (1, 2, 3, 6),
    reduced_channels: int | None = None,
    name: str = "ppm",
):
    """PSPNet's pyramid pooling module on a (B, h, w, C) feature map.

    Each bin size b pools the map into b x b adaptive bins (any h, w >= b), reduces it to
    `reduced_channels` (default C / len(bins)) with a 1x1 conv-BN-ReLU and upsamples it back to
    h x w bilinearly; the result concatenates the features and every branch:
    (B, h, w, C + len(bins) * reduced_channels). With no bins, the features pass unchanged: the
    network without its pyramid, for measuring what the pyramid adds.
    """
    if not bins:
        return features
    height, width, channels = features.shape[1], features.shape[2], features.shape[3]
    reduced = reduced_channels or max(1, channels // len(bins))
    branches = [features]
    for size in bins:
        x = AdaptiveAveragePooling(size, name=f"{name}_pool{size}")(features)
        x = conv_bn_relu(x, reduced, 1, name=f"{name}_pool{size}")
        x = layers.Resizing(
            height, width, interpolation="bilinear", name=f"{name}_pool{size}_upsample"
        )(x)
        branches.append(x)
    return layers.Concatenate(name=f"{name}_concat")(branches)


@keras.saving.register_keras_serializable(package="pspseg")
class PSPNet(keras.Model):
    """A PSPNet segmenter whose output has the input's resolution.

    Args:
        input_shape: tuple. (height, width, 3), or (height, width, 3 (1 + 2c)) for a slice with
            its c neighbours on each side (`data.load_arrays`' context_slices); height and width
            multiples of `output_stride`.
        num_classes: int. 1 for a binary mask (sigmoid output, P(tumour)); >= 2 for a softmax
            over label indices 0..num_classes-1.
        backbone: str. "vgg16" (the article's), "resnet50", "resnet101" (the paper's) or
            "mobilenetv2" (fast).
        output_stride: int. 8 (the paper), 16 or 32.
        bins: tuple of int. Pyramid bin sizes; () drops the pyramid pooling module.
        backbone_weights: None or "imagenet". Only used to initialise; never saved in the config.
        head_channels: int. Channels of the 3x3 conv after the pyramid.
        dropout_rate: float. Dropout before the classifier.
        aux_loss_weight: None (or 0) or float > 0. Adds the auxiliary head, trained with this weight
            times the compiled loss (the paper uses 0.4); it never changes predictions.
        skip_channels: None (or 0) or int > 0. Adds the stride-4 decoder, its skip reduced to this
            many channels (DeepLabV3+ uses 48); None: the paper's PSPNet.
        standardize: "slice" or "foreground": which pixels' mean and standard deviation
            standardise each image (see `SliceStandardization`).

    Outputs float32 probabilities (B, H, W, num_classes), also under mixed precision; called
    with `training=True` and an auxiliary head, a tuple (main, auxiliary) of two such. The
    article's attributes (`n_classes`, `input_height`, ...) are kept; its methods are bound by
    `pspseg_utils.keras_segmentation`.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (256, 256, 3),
        num_classes: int = 1,
        backbone: str = "vgg16",
        output_stride: int = 8,
        bins: Sequence[int] = (1, 2, 3, 6),
        backbone_weights: str | None = None,
        head_channels: int = 256,
        dropout_rate: float = 0.1,
        aux_loss_weight: float | None = None,
        skip_channels: int | None = None,
        standardize: str = "slice",
        **kwargs,
    ):
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {backbone!r}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
        if aux_loss_weight is not None and not aux_loss_weight >= 0:
            raise ValueError(f"aux_loss_weight must be None or >= 0, got {aux_loss_weight!r}")
        if skip_channels is not None and not (
            isinstance(skip_channels, int) and skip_channels >= 0
        ):
            raise ValueError(f"skip_channels must be None or an int >= 0, got {skip_channels!r}")
        # 0 and None both mean "off" (TrainConfig says 0); the saved config says None.
        aux_loss_weight, skip_channels = aux_loss_weight or None, skip_channels or None
        bins = tuple(int(b) for b in bins)
        input_shape = tuple(int(n) for n in input_shape)
        check_input_shape(input_shape, output_stride=output_stride, bins=bins)
        if backbone_weights == "imagenet" and input_shape[2] != 3:
            raise ValueError(
                f"ImageNet weights take 3 channels, got {input_shape[2]} (a slice with its "
                "neighbours); pass backbone_weights=None (`pspseg train --weights none`), or train "
                "without context slices"
            )

        # === Layers and functional graph ===
        inputs = keras.Input(input_shape, name="image")
        x = SliceStandardization(region=standardize, name="standardize")(inputs)
        features = build_backbone(
            backbone,
            input_shape=input_shape,
            output_stride=output_stride,
            weights=backbone_weights,
            auxiliary=aux_loss_weight is not None,
            skip=skip_channels is not None,
        )(x)
        features = list(features) if isinstance(features, (list, tuple)) else [features]
        skip = features.pop(0) if skip_channels is not None else None
        auxiliary_features = features.pop(0) if aux_loss_weight is not None else None
        x = pyramid_pooling_module(features[0], bins=bins)
        head = dict(dropout_rate=dropout_rate, size=input_shape[:2])
        outputs = segmentation_head(
            x,
            num_classes,
            channels=head_channels,
            name="head",
            skip=skip,
            skip_channels=skip_channels or 0,
            **head,
        )
        if aux_loss_weight is not None:
            auxiliary = segmentation_head(
                auxiliary_features, num_classes, channels=head_channels // 2, name="aux", **head
            )
            outputs = [outputs, auxiliary]
        kwargs.setdefault("name", f"{backbone}_pspnet")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # What `compile` reads: the main output alone. The auxiliary one joins the loss only
        # through `compute_loss`; listed, Keras 3.13 and older build metrics for it too.
        self.output_names = self.output_names[:1]

        # === Config ===
        self.image_shape = input_shape
        self.num_classes = num_classes
        self.backbone_name = backbone
        self.output_stride = output_stride
        self.bins = bins
        self.head_channels = head_channels
        self.dropout_rate = dropout_rate
        self.aux_loss_weight = aux_loss_weight
        self.skip_channels = skip_channels
        self.standardize = standardize

    # === The auxiliary head: an extra output and loss while training, nothing otherwise ===
    def _outputs_for(self, outputs, training):
        if self.aux_loss_weight is None:
            return outputs
        return tuple(outputs) if training else outputs[0]

    def call(self, inputs, training=None, mask=None):
        return self._outputs_for(super().call(inputs, training=training, mask=mask), training)

    def compute_output_spec(self, inputs, training=None, mask=None):
        return self._outputs_for(super().compute_output_spec(inputs), training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, tuple):
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        main, auxiliary = y_pred
        loss = super().compute_loss(x, y, main, sample_weight, training=training)
        # The compiled loss, applied to the auxiliary output too (mean: a loss given as a
        # function returns one value per image).
        auxiliary_loss = ops.mean(keras.losses.get(self.loss)(y, auxiliary))
        return loss + self.aux_loss_weight * auxiliary_loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        main = y_pred[0] if isinstance(y_pred, tuple) else y_pred
        return super().compute_metrics(x, y, main, sample_weight)

    def resized(self, height: int, width: int) -> PSPNet:
        """The same network, weights and all, taking (height, width) inputs (multiples of the
        output stride): to predict at several scales (`inference.at_scales`). No weight
        depends on the size; the pyramid's pooling matrices are built for each."""
        config = {**self.get_config(), "input_shape": (height, width, self.image_shape[2])}
        copy = type(self).from_config(config)
        copy.set_weights(self.get_weights())
        return copy

    # The article's attribute names.
    @property
    def n_classes(self) -> int:
        return rules.mask_labels(self.num_classes)

    @property
    def input_height(self) -> int:
        return self.image_shape[0]

    @property
    def input_width(self) -> int:
        return self.image_shape[1]

    output_height = input_height
    output_width = input_width

    @property
    def model_name(self) -> str:
        return f"{self.backbone_name}_pspnet"

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "input_shape": self.image_shape,
            "num_classes": self.num_classes,
            "backbone": self.backbone_name,
            "output_stride": self.output_stride,
            "bins": self.bins,
            "backbone_weights": None,  # the weights travel in the saved file
            "head_channels": self.head_channels,
            "dropout_rate": self.dropout_rate,
            "aux_loss_weight": self.aux_loss_weight,
            "skip_channels": self.skip_channels,
            "standardize": self.standardize,
        }


def build_pspnet(
    input_shape: Sequence[int] = (256, 256, 3),
    num_classes: int = 1,
    *,
    backbone: str = "vgg16",
    output_stride: int = 8,
    bins: Sequence[int] = (1, 2, 3, 6),
    backbone_weights: str | None = "imagenet",
    head_channels: int = 256,
    dropout_rate: float = 0.1,
    aux_loss_weight: float | None = 0.4,
    skip_channels: int | None = None,
    standardize: str = "slice",
) -> PSPNet:
    """Build a PSPNet; see `PSPNet` for the arguments.

    Raises:
        ValueError: unknown backbone, bad num_classes, or an input size the network cannot take
            (the message names the divisor and a size that works).
        ConnectionError: backbone_weights="imagenet" on a machine that cannot download them;
            pass backbone_weights=None to train from scratch.
    """
    return PSPNet(
        input_shape=input_shape,
        num_classes=num_classes,
        backbone=backbone,
        output_stride=output_stride,
        bins=bins,
        backbone_weights=backbone_weights,
        head_channels=head_channels,
        dropout_rate=dropout_rate,
        aux_loss_weight=aux_loss_weight,
        skip_channels=skip_channels,
        standardize=standardize,
    )
