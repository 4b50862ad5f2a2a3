"""Dilated backbones: Keras Applications' VGG16, ResNet50/101 and MobileNetV2 at stride 8/16/32.

PSPNet keeps a fine feature map by replacing the last strides with dilation (Zhao et al. 2017;
Chen et al., DeepLab). Rather than re-implementing each network, we take the Keras Applications
model, edit its layer config (stride 1, dilated kernels) and copy its weights across: the weight
shapes do not change, so ImageNet weights still fit.
"""

from __future__ import annotations

import copy
import functools
import os
import socket
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import keras

from pspseg_utils.models.layers import FusedBatchNormalization

__all__ = ["BACKBONES", "build_backbone"]

WEIGHTS_HOST = ("storage.googleapis.com", 443)
BATCH_NORM_MOMENTUM = 0.9
# How a layer config names FusedBatchNormalization, which replaces the backbones' own.
FUSED_BATCH_NORM_CLASS = {
    "module": FusedBatchNormalization.__module__,
    "class_name": FusedBatchNormalization.__name__,
    "registered_name": keras.saving.get_registered_name(FusedBatchNormalization),
}


def _layer(config: dict, name: str) -> dict:
    for layer in config["layers"]:
        if layer["config"]["name"] == name:
            return layer["config"]
    raise KeyError(f"no layer {name!r} in the backbone config")


def _dilate_vgg16(config: dict, output_stride: int) -> None:
    # DeepLab-v1's recipe: pools become 3x3 stride-1 smoothing, the convs after them dilate.
    stride_one_pools = {8: ("block4_pool", "block5_pool"), 16: ("block5_pool",), 32: ()}
    for name in stride_one_pools[output_stride]:
        _layer(config, name).update(pool_size=(3, 3), strides=(1, 1), padding="same")
    if output_stride == 8:
        for index in (1, 2, 3):
            _layer(config, f"block5_conv{index}")["dilation_rate"] = (2, 2)


def _dilate_resnet(config: dict, output_stride: int, *, stage_4_blocks: int) -> None:
    # (stage, blocks in it, dilation) for each stage whose first block stops striding.
    plan = {8: ((4, stage_4_blocks, 2), (5, 3, 4)), 16: ((5, 3, 2),), 32: ()}[output_stride]
    for stage, blocks, dilation in plan:
        for suffix in ("_1_conv", "_0_conv"):
            _layer(config, f"conv{stage}_block1{suffix}")["strides"] = (1, 1)
        for block in range(1, blocks + 1):
            _layer(config, f"conv{stage}_block{block}_2_conv")["dilation_rate"] = (dilation,) * 2


def _dilate_mobilenetv2(config: dict, output_stride: int) -> None:
    # (stride-2 block made stride 1, the blocks that then dilate, dilation).
    plan = {
        8: ((6, range(6, 13), 2), (13, range(13, 17), 4)),
        16: ((13, range(13, 17), 2),),
        32: (),
    }[output_stride]
    for stride_block, blocks, dilation in plan:
        _layer(config, f"block_{stride_block}_pad")["padding"] = ((0, 0), (0, 0))
        _layer(config, f"block_{stride_block}_depthwise").update(strides=(1, 1), padding="same")
        for block in blocks:
            _layer(config, f"block_{block}_depthwise")["dilation_rate"] = (dilation, dilation)


class BackboneSpec(NamedTuple):
    factory: Callable[..., keras.Model]  # the Keras Applications constructor
    dilate: Callable[[dict, int], None]  # edits the config for an output stride
    weights_prefix: str  # name of the cached ImageNet weights file
    feature_layer: str | None  # the layer feeding the pyramid; None for the last one
    auxiliary_layer: str  # the stage before the last, where PSPNet's auxiliary head sits
    skip_layer: str  # the last layer at stride 4, which the decoder fuses with the head


BACKBONES: dict[str, BackboneSpec] = {
    "vgg16": BackboneSpec(
        keras.applications.VGG16,
        _dilate_vgg16,
        "vgg16_weights_tf_dim_ordering",
        None,
        "block4_conv3",
        "block3_conv3",
    ),
    "resnet50": BackboneSpec(
        keras.applications.ResNet50,
        functools.partial(_dilate_resnet, stage_4_blocks=6),
        "resnet50_weights_tf_dim_ordering",
        None,
        "conv4_block6_out",  # the paper's res4b22 in ResNet101 terms
        "conv2_block3_out",
    ),
    "resnet101": BackboneSpec(  # the paper's backbone: stage 4 has 23 blocks, not 6
        keras.applications.ResNet101,
        functools.partial(_dilate_resnet, stage_4_blocks=23),
        "resnet101_weights_tf_dim_ordering",
        None,
        "conv4_block23_out",
        "conv2_block3_out",
    ),
    # MobileNetV2's last 1x1 conv (320 -> 1280 channels) serves the ImageNet classifier; like
    # DeepLabV3's MobileNetV2, we stop before it: the pyramid on 1280 channels would cost 4x more.
    # The _050 / _035 variants (timm's names) are the width multipliers 0.5 / 0.35: 2x / 2.6x
    # faster to train on a CPU at output stride 8.
    **{
        f"mobilenetv2{suffix}": BackboneSpec(
            functools.partial(keras.applications.MobileNetV2, alpha=alpha),
            _dilate_mobilenetv2,
            f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_",
            "block_16_project_BN",
            "block_12_add",
            "block_2_add",
        )
        for suffix, alpha in (("", 1.0), ("_050", 0.5), ("_035", 0.35))
    },
}


def _weights_cache() -> Path:
    """Where keras.utils.get_file caches downloaded weights."""
    return Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "models"


def _check_weights_reachable(backbone: str, prefix: str, timeout: float = 3.0) -> None:
    """Fail fast, with the fix, when ImageNet weights are neither cached nor downloadable."""
    cache = _weights_cache()
    if any(cache.glob(f"{prefix}*")):
        return
    try:
        socket.create_connection(WEIGHTS_HOST, timeout=timeout).close()
    except OSError as error:
        raise ConnectionError(
            f"Cannot download the ImageNet weights of {backbone} ({error}); this machine seems "
            f"offline. Pass backbone_weights=None (`pspseg train --weights none`) to train from "
            f"scratch, or put the Keras weights "
            f"file ({prefix}*.h5) in {str(cache).replace(str(Path.home()), '~')}."
        ) from error


def build_backbone(
    name: str,
    *,
    input_shape: tuple[int, int, int],
    output_stride: int = 8,
    weights: str | None = None,
    auxiliary: bool = False,
    skip: bool = False,
) -> keras.Model:
    """A Keras Applications backbone with its last strides replaced by dilation.

    Args:
        name: str. A key of BACKBONES: "vgg16", "resnet50", "resnet101", "mobilenetv2" (or its
            narrower "mobilenetv2_050" / "mobilenetv2_035").
        input_shape: tuple. (H, W, C): C = 3, or more for slices with neighbours (no ImageNet
            weights then).
        output_stride: int. 8, 16 or 32: the input size divided by the feature map's size.
        weights: None or "imagenet". ImageNet weights are downloaded once by Keras.
        auxiliary: bool. Also output the stage before the last, for an auxiliary head.
        skip: bool. Also output the last stage at stride 4, for a decoder.

    Returns:
        A functional model named "backbone": (B, H, W, C) -> (B, H/os, W/os, F), or, with
        `auxiliary=True`, -> [(B, H/os', W/os', F'), (B, H/os, W/os, F)] where os' is the
        auxiliary stage's stride (8 for vgg16 and mobilenetv2 at output stride 8). With
        `skip=True` the stride-4 features (B, H/4, W/4, F'') come first in that list.

    Raises:
        ValueError: unknown name or output stride, or cached ImageNet weights that are damaged
            and cannot be downloaded again (the message says which file to delete).
        ConnectionError: ImageNet weights asked for but neither cached nor downloadable.
    """
    if name not in BACKBONES:
        raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {name!r}")
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
    if weights not in (None, "imagenet"):
        raise ValueError(f"backbone_weights must be None or 'imagenet', got {weights!r}")
    spec = BACKBONES[name]
    if weights == "imagenet":
        _check_weights_reachable(name, spec.weights_prefix)
    with warnings.catch_warnings():
        # Slices with their neighbours have 9 or more channels by design, not by mistake.
        warnings.filterwarnings("ignore", message="This model usually expects 1 or 3 input")
        try:
            original = spec.factory(include_top=False, weights=weights, input_shape=input_shape)
        # Keras re-downloads a cached file whose hash is wrong, and raises a bare Exception when
        # it cannot (offline); a file it cannot read raises OSError or ValueError.
        except Exception as error:  # noqa: BLE001
            if weights is None:
                raise
            cache = _weights_cache()
            raise ValueError(
                f"The ImageNet weights of {name} in {cache} could not be loaded ({error}); the "
                f"cached file is damaged, e.g. by an interrupted download. Delete "
                f"{cache}/{spec.weights_prefix}* and retry online, or train from scratch "
                "(`pspseg train --weights none`, backbone_weights=None)"
            ) from error
    config = copy.deepcopy(original.get_config())
    spec.dilate(config, output_stride)
    for layer in config["layers"]:
        if layer["class_name"] == "BatchNormalization":
            # Keras Applications ship 0.99-0.999: in a short run from scratch the weights move
            # faster than such averages follow, and inference-mode outputs collapse. 0.9 (the
            # PyTorch default) tracks them.
            layer["config"]["momentum"] = BATCH_NORM_MOMENTUM
            layer.update(FUSED_BATCH_NORM_CLASS)
    dilated = keras.Model.from_config(config)
    dilated.set_weights(original.get_weights())
    last = dilated.get_layer(spec.feature_layer) if spec.feature_layer else dilated.layers[-1]
    wanted = [(skip, spec.skip_layer), (auxiliary, spec.auxiliary_layer)]
    features = [dilated.get_layer(name).output for asked, name in wanted if asked] + [last.output]
    return keras.Model(
        dilated.input, features if len(features) > 1 else features[0], name="backbone"
    )
