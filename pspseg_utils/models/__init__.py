"""Segmentation models: PSPNet on dilated VGG16, ResNet50, ResNet101 or MobileNetV2."""

from pspseg_utils.models import pspnet
from pspseg_utils.models.backbones import BACKBONES, build_backbone
from pspseg_utils.models.layers import (
    AdaptiveAveragePooling,
    FusedBatchNormalization,
    SliceStandardization,
)
from pspseg_utils.models.pspnet import (
    PSPNet,
    build_pspnet,
    pyramid_pooling_module,
)

__all__ = [
    "BACKBONES",
    "AdaptiveAveragePooling",
    "FusedBatchNormalization",
    "PSPNet",
    "SliceStandardization",
    "build_backbone",
    "build_pspnet",
    "pspnet",
    "pyramid_pooling_module",
]
