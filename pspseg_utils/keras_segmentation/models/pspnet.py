"""keras_segmentation's PSPNet builders on Keras 3: each returns a `pspseg_utils.models.PSPNet`
carrying the article's methods (see `model_utils.with_article_methods`).

keras_segmentation name    backbone here            default input   its weights
`pspnet`                   VGG16                    384 x 576       random (it had a small CNN)
`vgg_pspnet`               VGG16                    384 x 576       ImageNet when reachable
`resnet50_pspnet`          ResNet50                 384 x 576       ImageNet when reachable
`pspnet_50`                ResNet50                 480 x 480       ImageNet when reachable
`pspnet_101`               ResNet101                480 x 480       ImageNet when reachable
`mobilenet_pspnet`         MobileNetV2              224 x 224       ImageNet when reachable

Every backbone is dilated to output stride 8, as in the paper, so a side must be a multiple of 8
(keras_segmentation's pspnet_50 took 473 x 473: here 480). `n_classes=2` gives one sigmoid
channel (tumour vs background), more give a softmax; non-square sizes are fine.
"""

from __future__ import annotations

import warnings

from pspseg_utils.keras_segmentation.models.model_utils import with_article_methods
from pspseg_utils.models import PSPNet, build_pspnet

__all__ = [
    "pspnet",
    "vgg_pspnet",
    "resnet50_pspnet",
    "pspnet_50",
    "pspnet_101",
    "mobilenet_pspnet",
]


def _build(backbone, n_classes, height, width, channels, backbone_weights) -> PSPNet:
    if channels != 3:
        raise ValueError(f"channels must be 3 for these backbones, got {channels!r}")
    if int(n_classes) < 2:
        raise ValueError(f"n_classes counts the background too: >= 2, got {n_classes!r}")
    num_classes = 1 if n_classes == 2 else n_classes  # binary: one sigmoid channel

    def build(weights):
        return build_pspnet(
            (height, width, channels), num_classes, backbone=backbone, backbone_weights=weights
        )

    if backbone_weights != "auto":
        model = build(backbone_weights)
    else:
        try:
            model = build("imagenet")
        except ConnectionError as error:
            warnings.warn(f"{error} Continuing with random initial weights.", stacklevel=3)
            model = build(None)
    return with_article_methods(model)


def pspnet(n_classes, input_height=384, input_width=576, channels=3) -> PSPNet:
    """keras_segmentation's `pspnet`: a PSPNet trained from random weights (VGG16 here)."""
    return _build("vgg16", n_classes, input_height, input_width, channels, None)


def vgg_pspnet(
    n_classes, input_height=384, input_width=576, channels=3, backbone_weights="auto"
) -> PSPNet:
    """keras_segmentation's `vgg_pspnet`: VGG16, ImageNet weights when they can be had (else a
    warning says so); `backbone_weights=None` trains from random weights without asking."""
    return _build("vgg16", n_classes, input_height, input_width, channels,
                  backbone_weights)  # fmt: skip


def resnet50_pspnet(
    n_classes, input_height=384, input_width=576, channels=3, backbone_weights="auto"
) -> PSPNet:
    """keras_segmentation's `resnet50_pspnet`: dilated ResNet50; weights as `vgg_pspnet`."""
    return _build("resnet50", n_classes, input_height, input_width, channels,
                  backbone_weights)  # fmt: skip


def pspnet_50(
    n_classes, input_height=480, input_width=480, channels=3, backbone_weights="auto"
) -> PSPNet:
    """keras_segmentation's `pspnet_50` (the paper's network on ResNet50); weights as
    `vgg_pspnet`. Its pretrained ADE20K weights are `pretrained.pspnet_50_ADE_20K`'s, which
    cannot be had (see there)."""
    return _build("resnet50", n_classes, input_height, input_width, channels,
                  backbone_weights)  # fmt: skip


def pspnet_101(
    n_classes, input_height=480, input_width=480, channels=3, backbone_weights="auto"
) -> PSPNet:
    """keras_segmentation's `pspnet_101` (the paper's network on ResNet101); weights as
    `vgg_pspnet`."""
    return _build("resnet101", n_classes, input_height, input_width, channels,
                  backbone_weights)  # fmt: skip


def mobilenet_pspnet(
    n_classes, input_height=224, input_width=224, channels=3, backbone_weights="auto"
) -> PSPNet:
    """A MobileNetV2 PSPNet (keras_segmentation listed `mobilenet_pspnet` but never shipped it);
    weights as `vgg_pspnet`."""
    return _build("mobilenetv2", n_classes, input_height, input_width,
                  channels, backbone_weights)  # fmt: skip
