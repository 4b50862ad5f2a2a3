"""Tests of the PSPNet models: shapes, naming, training, saving, input checks, builders.

Every model is tiny (48 x 64 inputs: the smallest height at output stride 8 with bins up to 6,
and a width that differs so that a height / width mix-up shows) and built once per parameter.
The ResNet50 cases are marked slow: `pytest -m "not slow"` leaves them out.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tensorflow_only

from pspseg_utils.losses import get_loss
from pspseg_utils.models import (
    BACKBONES,
    AdaptiveAveragePooling,
    PSPNet,
    build_pspnet,
    pyramid_pooling_module,
)
from pspseg_utils.models import backbones as backbones_module
from pspseg_utils.models.layers import FusedBatchNormalization
from pspseg_utils.models.pspnet import check_input_shape

HEIGHT, WIDTH = 48, 64
BINS = (1, 2, 3, 6)
FEATURE_CHANNELS = {"vgg16": 512, "resnet50": 2048, "resnet101": 2048, "mobilenetv2": 320}


def backbone_param(backbone: str, *more):
    """The pytest parameter (backbone, *more); the ResNets', the slowest to build, marked slow."""
    slow = backbone.startswith("resnet")
    return pytest.param(backbone, *more, marks=pytest.mark.slow if slow else ())


BACKBONE_PARAMS = [backbone_param(backbone) for backbone in FEATURE_CHANNELS]

# Keras' own names for unnamed layers ("conv2d_3", "lambda", ...), from the brief's list.
AUTO_NAME = re.compile(r"^(conv2d|dense|activation|lambda)(_\d+)?$")


def _images() -> np.ndarray:
    """A fixed batch of two raw (0..255) 3-channel slices."""
    return np.random.default_rng(0).uniform(0, 255, (2, HEIGHT, WIDTH, 3)).astype("float32")


def _labels(num_classes: int) -> np.ndarray:
    """A (2, H, W) label map with every class present: a square of 1s, a band of 2s."""
    labels = np.zeros((2, HEIGHT, WIDTH), dtype="int32")
    labels[:, 10:30, 20:44] = 1
    if num_classes >= 3:
        labels[:, 36:44, :] = 2
    return labels


def _numpy(tensor) -> np.ndarray:
    return keras.ops.convert_to_numpy(tensor)


def _snake_case(class_name: str) -> str:
    """Keras' default layer name stem for a class ("Conv2D" -> "conv2d", "ReLU" -> "re_lu")."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _layers_with_owner(model: keras.Model):
    """Every (owning model, layer) pair, walking nested models."""
    for layer in model.layers:
        yield model, layer
        if isinstance(layer, keras.Model):
            yield from _layers_with_owner(layer)


def _build(
    backbone: str,
    num_classes: int = 1,
    output_stride: int = 8,
    aux_loss_weight=0.4,
    skip_channels=None,
    standardize="slice",
) -> PSPNet:
    keras.utils.set_random_seed(0)
    return PSPNet(
        input_shape=(HEIGHT, WIDTH, 3),
        num_classes=num_classes,
        backbone=backbone,
        output_stride=output_stride,
        # At stride 16 a 48-pixel side gives a 3x3 map: too small for the 6x6 bin.
        bins=BINS if output_stride == 8 else (1, 2, 3),
        backbone_weights=None,
        aux_loss_weight=aux_loss_weight,
        skip_channels=skip_channels,
        standardize=standardize,
    )


class _Models:
    """Models and their outputs on `_images()`, built on first use and kept for the module."""

    def __init__(self):
        self._models = {}
        self._outputs = {}

    def model(self, backbone: str, num_classes: int = 1, output_stride: int = 8) -> PSPNet:
        key = (backbone, num_classes, output_stride)
        if key not in self._models:
            self._models[key] = _build(backbone, num_classes, output_stride)
        return self._models[key]

    def outputs(self, backbone: str, num_classes: int) -> np.ndarray:
        key = (backbone, num_classes)
        if key not in self._outputs:
            model = self.model(backbone, num_classes)
            self._outputs[key] = _numpy(model(_images(), training=False))
        return self._outputs[key]


@pytest.fixture(scope="module")
def models():
    cache = _Models()
    yield cache
    cache._models.clear()


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [1, 3])
@pytest.mark.parametrize("backbone", BACKBONE_PARAMS)
def test_output_shape_dtype_and_probabilities(models, backbone, num_classes):
    model = models.model(backbone, num_classes)
    outputs = models.outputs(backbone, num_classes)

    symbolic = model(keras.Input((HEIGHT, WIDTH, 3)))
    assert tuple(symbolic.shape) == (None, HEIGHT, WIDTH, num_classes)
    assert outputs.shape == (2, HEIGHT, WIDTH, num_classes)
    assert outputs.dtype == np.float32
    assert np.isfinite(outputs).all()
    assert outputs.min() >= 0.0
    assert outputs.max() <= 1.0
    activation = model.get_layer("head_probabilities").get_config()["activation"]
    if num_classes == 1:
        assert activation == "sigmoid"
    else:
        assert activation == "softmax"
        np.testing.assert_allclose(outputs.sum(axis=-1), 1.0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Architecture
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("backbone", BACKBONE_PARAMS)
def test_backbone_feature_map_is_input_over_output_stride(models, backbone, output_stride):
    model = models.model(backbone, output_stride=output_stride)
    _, features = model.get_layer("backbone").output
    expected = (None, HEIGHT // output_stride, WIDTH // output_stride, FEATURE_CHANNELS[backbone])
    assert tuple(features.shape) == expected


@pytest.mark.parametrize("backbone", BACKBONE_PARAMS)
def test_pyramid_branches_are_named_and_shaped(models, backbone):
    model = models.model(backbone)
    channels = FEATURE_CHANNELS[backbone]
    reduced = channels // len(BINS)
    for size in BINS:
        pool = model.get_layer(f"ppm_pool{size}")
        assert isinstance(pool, AdaptiveAveragePooling)
        assert pool.bins == size
        assert tuple(pool.output.shape) == (None, size, size, channels)
        upsampled = model.get_layer(f"ppm_pool{size}_upsample").output
        assert tuple(upsampled.shape) == (None, HEIGHT // 8, WIDTH // 8, reduced)
    concat = model.get_layer("ppm_concat").output
    assert tuple(concat.shape) == (None, HEIGHT // 8, WIDTH // 8, channels + len(BINS) * reduced)


@pytest.mark.parametrize("backbone", BACKBONE_PARAMS)
def test_every_layer_is_named_and_no_lambda(models, backbone):
    model = models.model(backbone)
    pairs = list(_layers_with_owner(model))
    assert len(pairs) > len(model.layers)  # the walk did enter the backbone

    lambdas = [layer.name for _, layer in pairs if isinstance(layer, keras.layers.Lambda)]
    assert lambdas == []

    unnamed = []
    for owner, layer in pairs:
        if owner is not model and isinstance(layer, keras.layers.InputLayer):
            continue  # Keras Applications' backbones create their Input without a name
        default = re.compile(rf"^{re.escape(_snake_case(type(layer).__name__))}(_\d+)?$")
        if AUTO_NAME.match(layer.name) or default.match(layer.name):
            unnamed.append(f"{owner.name}/{layer.name}")
    assert unnamed == []


@pytest.mark.parametrize("backbone", BACKBONE_PARAMS)
def test_every_batch_norm_is_the_fused_one(models, backbone):
    layers = [layer for _, layer in _layers_with_owner(models.model(backbone))]
    batch_norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert {"ppm_pool6_bn", "head_bn"} <= {layer.name for layer in batch_norms}  # the head's
    assert [layer.name for layer in batch_norms if type(layer) is not FusedBatchNormalization] == []


@pytest.mark.parametrize("backbone", BACKBONE_PARAMS)
def test_keeps_the_article_attributes(models, backbone):
    model = models.model(backbone)
    assert model.name == model.model_name == f"{backbone}_pspnet"
    assert model.n_classes == 2  # one sigmoid channel stands for two classes
    assert (model.input_height, model.input_width) == (HEIGHT, WIDTH)
    assert (model.output_height, model.output_width) == (HEIGHT, WIDTH)
    assert models.model(backbone, 3).n_classes == 3


def test_pyramid_pooling_module_on_a_map_not_divisible_by_the_bins():
    # 7 is divisible by none of 2, 3, 6: adaptive bins overlap instead of failing.
    features = keras.Input((7, 7, 16))
    pyramid = pyramid_pooling_module(features)
    assert tuple(pyramid.shape) == (None, 7, 7, 16 + 4 * 4)

    keras.utils.set_random_seed(0)
    inputs = np.random.default_rng(0).normal(size=(1, 7, 7, 16)).astype("float32")
    outputs = _numpy(keras.Model(features, pyramid)(inputs, training=False))
    assert outputs.shape == (1, 7, 7, 32)
    assert np.isfinite(outputs).all()
    # The features pass through unchanged, first in the concatenation.
    np.testing.assert_array_equal(outputs[..., :16], inputs)


# ---------------------------------------------------------------------------------------------
# Loss and training
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [1, 3])
@pytest.mark.parametrize("backbone", BACKBONE_PARAMS)
def test_bce_dice_loss_is_finite(models, backbone, num_classes):
    loss = get_loss("bce_dice", num_classes=num_classes)
    value = float(_numpy(loss(_labels(num_classes), models.outputs(backbone, num_classes))))
    assert np.isfinite(value)
    assert value > 0.0  # an untrained model is not perfect


@pytest.mark.parametrize(
    ("backbone", "skip_channels"),
    [*(backbone_param(b, None) for b in FEATURE_CHANNELS), backbone_param("mobilenetv2", 8)],
)
@tensorflow_only
def test_adam_steps_on_one_batch_lower_the_loss(backbone, skip_channels):
    # A fresh model: training changes weights that the cached models' tests rely on. An eager
    # loop: tracing a train step costs ~40 s on 2 busy cores for MobileNetV2 / ResNet50.
    model = _build(backbone, skip_channels=skip_channels)
    model.compile(loss=get_loss("bce_dice", num_classes=1))
    images, labels = _images(), _labels(1)
    optimizer = keras.optimizers.Adam(learning_rate=1e-3)
    losses = []
    for step in range(5):
        with tf.GradientTape() as tape:
            # compute_loss, as fit does: the main and the auxiliary head's loss.
            loss = model.compute_loss(y=labels, y_pred=model(images, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        if step == 0:
            # Every weight, the auxiliary head's too, is connected to the loss, and the
            # gradients are finite.
            variables = model.trainable_variables
            missing = [v.path for v, g in zip(variables, gradients, strict=True) if g is None]
            assert missing == []
            assert all(np.isfinite(_numpy(g)).all() for g in gradients)
        optimizer.apply(gradients, model.trainable_variables)
        losses.append(float(_numpy(loss)))

    assert all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses


# ---------------------------------------------------------------------------------------------
# The auxiliary head
# ---------------------------------------------------------------------------------------------

AUXILIARY_CHANNELS = {"vgg16": 512, "resnet50": 1024, "resnet101": 1024, "mobilenetv2": 96}


@pytest.mark.parametrize("backbone", BACKBONE_PARAMS)
def test_auxiliary_head_sits_on_the_stage_before_the_last(models, backbone):
    model = models.model(backbone)
    auxiliary_features, _ = model.get_layer("backbone").output
    expected = (None, HEIGHT // 8, WIDTH // 8, AUXILIARY_CHANNELS[backbone])
    assert tuple(auxiliary_features.shape) == expected
    assert model.get_layer("aux_conv").filters == model.head_channels // 2


@pytest.mark.parametrize(("backbone", "features", "auxiliary"), [("mobilenetv2_050", 160, 48)])
def test_narrow_mobilenetv2_has_fewer_channels(backbone, features, auxiliary):
    model = _build(backbone)
    shapes = [tuple(x.shape) for x in model.get_layer("backbone").output]
    assert shapes == [(None, HEIGHT // 8, WIDTH // 8, n) for n in (auxiliary, features)]
    assert model.count_params() < 0.4 * _build("mobilenetv2").count_params()


@pytest.mark.parametrize("backbone", BACKBONE_PARAMS)
def test_auxiliary_output_only_while_training(backbone):
    model = _build(backbone)  # fresh: a training-mode call moves the BatchNorm statistics
    predicted = model.predict(_images(), verbose=0)
    np.testing.assert_allclose(predicted, _numpy(model(_images(), training=False)), atol=1e-6)

    main, auxiliary = model(_images(), training=True)
    assert predicted.shape == tuple(main.shape) == tuple(auxiliary.shape) == (2, HEIGHT, WIDTH, 1)
    assert np.isfinite(_numpy(auxiliary)).all()


def test_loss_adds_the_weighted_auxiliary_loss_and_metrics_see_the_main_output(models):
    model = models.model("vgg16")
    model.compile(
        loss=keras.losses.BinaryCrossentropy(), metrics=[keras.metrics.MeanSquaredError()]
    )
    y = np.array([[[[1.0]], [[0.0]]]])  # (1, 2, 1, 1): one tumour, one background pixel
    main = np.array([[[[0.5]], [[0.5]]]])  # BCE: -ln 0.5 = 0.6931 for both pixels
    auxiliary = np.array([[[[0.25]], [[0.5]]]])  # BCE: (-ln 0.25 - ln 0.5) / 2 = 1.0397
    loss = model.compute_loss(y=y, y_pred=(main, auxiliary))
    np.testing.assert_allclose(_numpy(loss), 0.6931 + 0.4 * 1.0397, atol=1e-4)  # = 1.1090

    metrics = model.compute_metrics(None, y, (main, auxiliary))
    np.testing.assert_allclose(float(metrics["mean_squared_error"]), 0.25)  # main's, not aux's


def test_without_auxiliary_head_there_is_one_output_and_no_aux_layers():
    model = _build("vgg16", aux_loss_weight=None)
    assert not [layer.name for layer in model.layers if layer.name.startswith("aux")]
    assert tuple(model(_images(), training=True).shape) == (2, HEIGHT, WIDTH, 1)


def test_aux_loss_weight_must_be_none_or_not_negative():
    with pytest.raises(ValueError, match=r"aux_loss_weight must be None or >= 0, got -0.4"):
        _build("vgg16", aux_loss_weight=-0.4)


def test_zero_turns_the_auxiliary_head_and_the_decoder_off_as_none_does():
    model = _build("vgg16", aux_loss_weight=0, skip_channels=0)
    assert (model.aux_loss_weight, model.skip_channels) == (None, None)
    assert not [layer.name for layer in model.layers if layer.name.startswith(("aux", "head_skip"))]


# ---------------------------------------------------------------------------------------------
# The stride-4 decoder
# ---------------------------------------------------------------------------------------------

SKIP_FEATURE_CHANNELS = {"vgg16": 256, "resnet50": 256, "resnet101": 256, "mobilenetv2": 24}


@pytest.mark.parametrize("backbone", BACKBONE_PARAMS)
def test_decoder_fuses_the_stride_4_features_with_the_head(backbone):
    model = _build(backbone, skip_channels=8)
    skip, auxiliary, features = model.get_layer("backbone").output
    assert tuple(skip.shape) == (None, HEIGHT // 4, WIDTH // 4, SKIP_FEATURE_CHANNELS[backbone])
    assert tuple(auxiliary.shape)[1:3] == tuple(features.shape)[1:3] == (HEIGHT // 8, WIDTH // 8)
    assert model.get_layer("head_skip_conv").filters == 8
    assert model.get_layer("head_decoder_conv").filters == model.head_channels // 2
    assert tuple(model.get_layer("head_classifier").output.shape) == (
        None, HEIGHT // 4, WIDTH // 4, 1
    )  # fmt: skip
    assert not [layer.name for layer in model.layers if layer.name.startswith("aux_skip")]
    probabilities = _numpy(model(_images(), training=False))
    assert probabilities.shape == (2, HEIGHT, WIDTH, 1)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()


def test_decoder_round_trips_through_a_saved_file(tmp_path):
    model = _build("mobilenetv2", skip_channels=8, standardize="foreground")
    model.save(tmp_path / "decoder.keras")
    loaded = keras.saving.load_model(tmp_path / "decoder.keras", safe_mode=True)
    assert loaded.get_config()["skip_channels"] == 8
    assert loaded.get_layer("standardize").region == "foreground"
    np.testing.assert_allclose(
        _numpy(loaded(_images(), training=False)),
        _numpy(model(_images(), training=False)),
        atol=1e-6,
    )


@pytest.mark.parametrize("skip_channels", [-8, 8.0])
def test_skip_channels_must_be_none_or_an_int(skip_channels):
    message = re.escape(f"skip_channels must be None or an int >= 0, got {skip_channels!r}")
    with pytest.raises(ValueError, match=message):
        _build("vgg16", skip_channels=skip_channels)


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", BACKBONE_PARAMS)
def test_save_load_round_trip(models, backbone, tmp_path):
    model = models.model(backbone)
    path = tmp_path / f"{backbone}_pspnet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)

    assert isinstance(loaded, PSPNet)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(
        _numpy(loaded(_images(), training=False)), models.outputs(backbone, 1), atol=1e-6
    )
    # The article's attributes survive (its methods come with keras_segmentation's loader).
    assert loaded.n_classes == 2
    assert (loaded.input_height, loaded.input_width) == (HEIGHT, WIDTH)


# ---------------------------------------------------------------------------------------------
# Argument checks (all fail before anything is built)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "side", "suggested"),
    [
        (50, 64, "height", 48),
        (48, 60, "width", 64),
        (100, 64, "height", 96),
        # Rounding to a multiple of 8 would give 16, too small: the smallest size that works.
        (20, 64, "height", 48),
    ],
)
def test_size_not_a_multiple_of_8_names_8_and_a_size_that_works(height, width, side, suggested):
    with pytest.raises(ValueError, match=rf"{side} must be a multiple of 8") as error:
        PSPNet(input_shape=(height, width, 3), backbone_weights=None)
    match = re.search(r"use (\d+)", str(error.value))
    assert match is not None, str(error.value)
    assert int(match.group(1)) == suggested
    fixed = (suggested, width) if side == "height" else (height, suggested)
    check_input_shape((*fixed, 3), output_stride=8, bins=BINS)  # the suggestion is accepted


@pytest.mark.parametrize(("height", "width"), [(40, 64), (48, 16), (8, 8)])
def test_input_too_small_for_the_largest_bin(height, width):
    with pytest.raises(ValueError, match="must be at least 48"):
        PSPNet(input_shape=(height, width, 3), backbone_weights=None)


def test_input_too_small_at_output_stride_16():
    # 16 x largest bin 6 = 96.
    with pytest.raises(ValueError, match="must be at least 96"):
        PSPNet(input_shape=(64, 64, 3), output_stride=16, backbone_weights=None)


@pytest.mark.parametrize("input_shape", [(48, 48, 1), (48, 48), (48, 48, 4), (48, 48, 6)])
def test_input_must_have_3_channels(input_shape):
    with pytest.raises(ValueError, match=r"\(height, width, 3\)"):
        PSPNet(input_shape=input_shape, backbone_weights=None)


def test_a_slice_with_its_neighbours_takes_9_channels():
    keras.utils.set_random_seed(0)
    model = build_pspnet(
        (HEIGHT, WIDTH, 9), backbone="mobilenetv2_050", head_channels=8, backbone_weights=None
    )
    assert model.input_shape == (None, HEIGHT, WIDTH, 9)
    assert model.get_layer("backbone").input_shape[-1] == 9
    out = model.predict(np.zeros((2, HEIGHT, WIDTH, 9), np.float32), verbose=0)
    assert out.shape == (2, HEIGHT, WIDTH, 1)


def test_imagenet_weights_refuse_more_than_3_channels(offline):
    # Refused before any download is tried: the offline fixture would fail it otherwise.
    with pytest.raises(ValueError, match="ImageNet weights take 3 channels, got 9"):
        PSPNet(input_shape=(HEIGHT, WIDTH, 9), backbone="mobilenetv2", backbone_weights="imagenet")


def test_unknown_backbone_lists_the_valid_ones():
    with pytest.raises(ValueError, match="resnet18") as error:
        build_pspnet((HEIGHT, WIDTH, 3), backbone="resnet18", backbone_weights=None)
    for name in ("vgg16", "resnet50", "mobilenetv2"):
        assert repr(name) in str(error.value)
    assert set(BACKBONES) == {"vgg16", "resnet50", "resnet101", "mobilenetv2"} | {
        "mobilenetv2_050",
        "mobilenetv2_035",
    }


@pytest.mark.parametrize("num_classes", [0, -1, 2.0, "3"])
def test_num_classes_must_be_a_positive_int(num_classes):
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        PSPNet(input_shape=(HEIGHT, WIDTH, 3), num_classes=num_classes, backbone_weights=None)


@pytest.mark.parametrize("output_stride", [4, 12, 64])
def test_output_stride_must_be_8_16_or_32(output_stride):
    with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32"):
        PSPNet(input_shape=(256, 256, 3), output_stride=output_stride, backbone_weights=None)


# ---------------------------------------------------------------------------------------------
# ImageNet weights without network
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["vgg16", "resnet50", "mobilenetv2", "mobilenetv2_050"])
def test_imagenet_weights_offline_fail_fast_with_the_fix(backbone):
    """On this offline machine: a ConnectionError within seconds saying what to pass instead."""
    prefix = BACKBONES[backbone].weights_prefix
    cache = Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "models"
    if any(cache.glob(f"{prefix}*")):
        pytest.skip(f"the {backbone} ImageNet weights are cached in {cache}")
    try:
        socket.create_connection(backbones_module.WEIGHTS_HOST, timeout=3).close()
    except OSError:
        pass
    else:
        pytest.skip("the weights host is reachable: the test would download ImageNet weights")

    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="backbone_weights=None"):
        build_pspnet((HEIGHT, WIDTH, 3), backbone=backbone, backbone_weights="imagenet")
    assert time.perf_counter() - start < 15


def test_imagenet_weights_unreachable_raises_connection_error(offline):
    """The same, on any machine: the network and the weights cache are taken away."""
    fix = r"Pass backbone_weights=None \(`pspseg train --weights none`\) to train from scratch"
    with pytest.raises(ConnectionError, match=fix):
        build_pspnet((HEIGHT, WIDTH, 3), backbone="vgg16", backbone_weights="imagenet")


# --- one saved model on every backend -----------------------------------------------------------

OTHER_BACKEND = "jax" if keras.backend.backend() != "jax" else "tensorflow"

# Run under OTHER_BACKEND: load a .keras file, predict the images, save the probabilities; then
# build, perturb and save a model of its own for the reverse check.
_ON_THE_OTHER_BACKEND = """
import sys
import keras
import numpy as np
from pspseg_utils.models import PSPNet

model_in, images, probabilities_out, model_out = sys.argv[1:5]
loaded = keras.saving.load_model(model_in, safe_mode=True)
np.save(probabilities_out, keras.ops.convert_to_numpy(loaded(np.load(images), training=False)))
keras.utils.set_random_seed(1)
own = PSPNet(input_shape=(48, 64, 3), backbone="mobilenetv2", backbone_weights=None,
             head_channels=16, skip_channels=8, standardize="foreground")
own(np.load(images), training=True)  # moving statistics of its own
own.save(model_out)
np.save(model_out + ".npy", keras.ops.convert_to_numpy(own(np.load(images), training=False)))
"""


@pytest.mark.skipif(
    importlib.util.find_spec(OTHER_BACKEND) is None, reason=f"{OTHER_BACKEND} is not installed"
)
def test_a_saved_model_gives_the_same_masks_on_the_other_backend(tmp_path):
    # A .keras file written on this backend, read on the other (TensorFlow <-> JAX), and back.
    keras.utils.set_random_seed(0)
    model = PSPNet(input_shape=(HEIGHT, WIDTH, 3), backbone="mobilenetv2", backbone_weights=None,
                   head_channels=16, skip_channels=8)  # fmt: skip
    images = _images()
    model(images, training=True)  # moving statistics that are not the initial ones
    model.save(tmp_path / "here.keras")
    np.save(tmp_path / "images.npy", images)
    environment = {**os.environ, "KERAS_BACKEND": OTHER_BACKEND, "CUDA_VISIBLE_DEVICES": ""}
    paths = [tmp_path / name for name in ("here.keras", "images.npy", "there.npy", "there.keras")]
    subprocess.run([sys.executable, "-c", _ON_THE_OTHER_BACKEND, *map(str, paths)],
                   env=environment, check=True, timeout=300)  # fmt: skip

    # float32 on both: the probabilities agree to rounding, so the masks are the same (cut at
    # the median: an untrained model's probabilities may all lie on one side of 0.5).
    here = _numpy(model(images, training=False))
    there = np.load(tmp_path / "there.npy")
    np.testing.assert_allclose(there, here, atol=1e-4)
    np.testing.assert_array_equal(there > np.median(here), here > np.median(here))

    back = keras.saving.load_model(tmp_path / "there.keras", safe_mode=True)
    expected = np.load(tmp_path / "there.keras.npy")
    again = _numpy(back(images, training=False))
    np.testing.assert_allclose(again, expected, atol=1e-4)
    np.testing.assert_array_equal(again > np.median(expected), expected > np.median(expected))


def test_no_bins_drops_the_pyramid_pooling_module():
    # The ablation of the pyramid: the head reads the backbone's features directly.
    keras.utils.set_random_seed(0)
    settings = dict(input_shape=(HEIGHT, WIDTH, 3), backbone="mobilenetv2", backbone_weights=None,
                    head_channels=16)  # fmt: skip
    with_pyramid, without = PSPNet(**settings), PSPNet(bins=(), **settings)
    assert not [layer.name for layer in without.layers if layer.name.startswith("ppm")]
    head_input = without.get_layer("head_conv").input
    assert tuple(head_input.shape) == (
        None,
        HEIGHT // 8,
        WIDTH // 8,
        FEATURE_CHANNELS["mobilenetv2"],
    )
    assert without.count_params() < with_pyramid.count_params()
    assert _numpy(without(_images(), training=False)).shape == (2, HEIGHT, WIDTH, 1)
    assert without.get_config()["bins"] == ()
