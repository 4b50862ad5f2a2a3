"""keras_segmentation's pretrained PSPNets, which cannot be revived: their weights were Caffe
conversions for keras_segmentation's own layer names, served from Dropbox and GitHub release
links, and fit no Keras 3 PSPNet. Each raises `NotImplementedError` saying what to do instead.
"""

from __future__ import annotations

__all__ = [
    "pspnet_101_cityscapes",
    "pspnet_101_voc12",
    "pspnet_50_ADE_20K",
    "resnet_pspnet_VOC12_v0_1",
]


def _not_revived(name: str, dataset: str):
    raise NotImplementedError(
        f"pretrained.{name}() downloaded keras_segmentation's {dataset} weights, which fit no "
        "Keras 3 model and are not offered by pspseg. Build the network with ImageNet weights "
        "instead (models.pspnet.pspnet_50 or pspnet_101) and train it on your data with "
        "model.train(...)."
    )


def pspnet_50_ADE_20K():
    _not_revived("pspnet_50_ADE_20K", "ADE20K")


def pspnet_101_cityscapes():
    _not_revived("pspnet_101_cityscapes", "Cityscapes")


def pspnet_101_voc12():
    _not_revived("pspnet_101_voc12", "Pascal VOC 2012")


def resnet_pspnet_VOC12_v0_1():
    _not_revived("resnet_pspnet_VOC12_v0_1", "Pascal VOC 2012")
