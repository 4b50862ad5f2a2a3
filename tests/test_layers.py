"""Tests of pspseg_utils.models.layers: hand-computed pooling bins, standardisation, configs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from pspseg_utils.models.layers import (
    AdaptiveAveragePooling,
    FusedBatchNormalization,
    SliceStandardization,
    adaptive_pooling_matrix,
)

# A 4x4 map whose bin means differ everywhere (a linear ramp would hide a mis-weighted bin).
GRID_4X4 = np.array(
    [
        [1, 0, 0, 0],
        [0, 0, 0, 2],
        [0, 4, 0, 0],
        [0, 0, 0, 8],
    ],
    dtype="float32",
)


def _numpy(tensor) -> np.ndarray:
    return keras.ops.convert_to_numpy(tensor)


# ---------------------------------------------------------------------------------------------
# adaptive_pooling_matrix
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "bins", "expected"),
    [
        # The docstring's case: bins [0, 2), [1, 3), [2, 4) overlap by a pixel.
        (4, 3, [[0.5, 0.5, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0.5, 0.5]]),
        # Divisible: two disjoint halves of 3 pixels.
        (6, 2, [[1 / 3, 1 / 3, 1 / 3, 0, 0, 0], [0, 0, 0, 1 / 3, 1 / 3, 1 / 3]]),
        # One bin per pixel: the identity.
        (6, 6, np.eye(6).tolist()),
        # One bin: the global mean.
        (5, 1, [[0.2, 0.2, 0.2, 0.2, 0.2]]),
        # L=6, b=4: [0, 2), [1, 3), [3, 5), [4, 6) (floor / ceil bounds, as PyTorch).
        (
            6,
            4,
            [
                [0.5, 0.5, 0, 0, 0, 0],
                [0, 0.5, 0.5, 0, 0, 0],
                [0, 0, 0, 0.5, 0.5, 0],
                [0, 0, 0, 0, 0.5, 0.5],
            ],
        ),
    ],
)
def test_adaptive_pooling_matrix_hand_computed(length, bins, expected):
    matrix = adaptive_pooling_matrix(length, bins)
    assert matrix.shape == (bins, length)
    assert matrix.dtype == np.float32
    np.testing.assert_allclose(matrix, np.array(expected), atol=1e-7)


@pytest.mark.parametrize(("length", "bins"), [(4, 3), (6, 2), (7, 3), (7, 6), (60, 6), (5, 1)])
def test_adaptive_pooling_matrix_rows_average(length, bins):
    matrix = adaptive_pooling_matrix(length, bins)
    np.testing.assert_allclose(matrix.sum(axis=1), np.ones(bins), atol=1e-6)
    assert (matrix > 0).sum(axis=1).min() >= 1  # no empty bin
    assert (matrix.sum(axis=0) > 0).all()  # every pixel lands in some bin


# ---------------------------------------------------------------------------------------------
# AdaptiveAveragePooling
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bins", "expected"),
    [
        (1, [[15 / 16]]),
        # Disjoint 2x2 quadrants.
        (2, [[0.25, 0.5], [1.0, 2.0]]),
        # Overlapping 2x2 windows at offsets 0, 1, 2 (bins [0, 2), [1, 3), [2, 4) per axis).
        (3, [[0.25, 0.0, 0.5], [1.0, 1.0, 0.5], [1.0, 1.0, 2.0]]),
        # One bin per pixel: the map itself.
        (4, GRID_4X4.tolist()),
    ],
)
def test_adaptive_average_pooling_hand_computed(bins, expected):
    pooled = _numpy(AdaptiveAveragePooling(bins)(GRID_4X4[None, :, :, None]))
    assert pooled.shape == (1, bins, bins, 1)
    np.testing.assert_allclose(pooled[0, :, :, 0], np.array(expected), atol=1e-6)


def test_adaptive_average_pooling_one_bin_is_global_mean():
    inputs = np.random.default_rng(0).normal(size=(2, 7, 5, 3)).astype("float32")
    pooled = _numpy(AdaptiveAveragePooling(1)(inputs))
    np.testing.assert_allclose(pooled, inputs.mean(axis=(1, 2), keepdims=True), atol=1e-6)


def test_adaptive_average_pooling_keeps_channels_and_images_apart():
    # Image 2 is image 1 scaled by 10, channel 2 is channel 1 negated.
    image = np.stack([GRID_4X4, -GRID_4X4], axis=-1)
    inputs = np.stack([image, 10 * image])
    pooled = _numpy(AdaptiveAveragePooling(2)(inputs))
    quadrants = np.array([[0.25, 0.5], [1.0, 2.0]])
    np.testing.assert_allclose(pooled[0, ..., 0], quadrants, atol=1e-6)
    np.testing.assert_allclose(pooled[0, ..., 1], -quadrants, atol=1e-6)
    np.testing.assert_allclose(pooled[1], 10 * pooled[0], atol=1e-5)


@pytest.mark.skipif(
    not hasattr(keras.layers, "AdaptiveAveragePooling2D"),
    reason="keras.layers.AdaptiveAveragePooling2D needs a newer Keras",
)
@pytest.mark.parametrize("bins", [1, 2, 3, 5])
def test_adaptive_average_pooling_matches_keras_layer(bins):
    # Non-square, not divisible by 2, 3 or 5 on both sides.
    inputs = np.random.default_rng(1).normal(size=(2, 7, 11, 3)).astype("float32")
    ours = _numpy(AdaptiveAveragePooling(bins)(inputs))
    theirs = _numpy(keras.layers.AdaptiveAveragePooling2D(bins)(inputs))
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_adaptive_average_pooling_symbolic_shape():
    outputs = AdaptiveAveragePooling(3)(keras.Input((7, 5, 16)))
    assert tuple(outputs.shape) == (None, 3, 3, 16)


@pytest.mark.parametrize("shape", [(4, 4, 1), (8, 5, 1), (None, None, 1)])
def test_adaptive_average_pooling_map_smaller_than_bins_raises(shape):
    with pytest.raises(ValueError, match="at least 6x6"):
        AdaptiveAveragePooling(6)(keras.Input(shape))


def test_adaptive_average_pooling_map_smaller_than_bins_raises_eagerly():
    with pytest.raises(ValueError, match="at least 6x6"):
        AdaptiveAveragePooling(6)(np.zeros((1, 4, 4, 1), dtype="float32"))


@pytest.mark.parametrize("bins", [0, -1])
def test_adaptive_average_pooling_rejects_non_positive_bins(bins):
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        AdaptiveAveragePooling(bins)


def test_adaptive_average_pooling_config_round_trip():
    layer = AdaptiveAveragePooling(3, name="pool3")
    config = layer.get_config()
    assert config["bins"] == 3
    assert config["name"] == "pool3"

    clone = AdaptiveAveragePooling.from_config(config)
    assert (clone.bins, clone.name) == (3, "pool3")

    # Through Keras' registry, as `load_model` does it.
    serialized = keras.saving.serialize_keras_object(layer)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(restored, AdaptiveAveragePooling)
    assert restored.bins == 3
    inputs = GRID_4X4[None, :, :, None]
    np.testing.assert_array_equal(_numpy(restored(inputs)), _numpy(layer(inputs)))


# ---------------------------------------------------------------------------------------------
# SliceStandardization
# ---------------------------------------------------------------------------------------------


def _mri_like_batch() -> np.ndarray:
    """(2, 8, 8, 3) raw intensities, each image and channel with its own offset and scale."""
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(2, 8, 8, 3))
    offsets = np.array([[10.0, 120.0, 250.0], [0.0, 40.0, 3.0]])[:, None, None, :]
    scales = np.array([[2.0, 30.0, 0.5], [50.0, 5.0, 1.0]])[:, None, None, :]
    return (offsets + scales * noise).astype("float32")


def test_slice_standardization_zero_mean_unit_std():
    batch = _mri_like_batch()
    outputs = _numpy(SliceStandardization(epsilon=1e-3)(batch))
    assert outputs.shape == (2, 8, 8, 3)
    assert outputs.dtype == np.float32
    # float32: a mean of ~250 is known to ~1e-5, i.e. ~4e-5 after dividing by std 0.5.
    np.testing.assert_allclose(outputs.mean(axis=(1, 2)), np.zeros((2, 3)), atol=1e-4)
    # Exactly std / (std + epsilon) per image and channel; all within 3e-3 of 1 here.
    std = batch.astype("float64").std(axis=(1, 2))
    np.testing.assert_allclose(outputs.std(axis=(1, 2)), std / (std + 1e-3), atol=1e-5)
    np.testing.assert_allclose(outputs.std(axis=(1, 2)), np.ones((2, 3)), atol=3e-3)


def test_slice_standardization_is_per_image():
    image = _mri_like_batch()[0]
    outputs = _numpy(SliceStandardization(epsilon=0.0)(np.stack([image, 7 * image + 100])))
    # An affine change of intensities (another scanner) gives the same standardised image.
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-4)


def test_slice_standardization_constant_channel_is_zero():
    batch = _mri_like_batch()
    batch[0, :, :, 1] = 200.0  # a flat channel: std 0
    outputs = _numpy(SliceStandardization()(batch))
    assert np.isfinite(outputs).all()
    np.testing.assert_array_equal(outputs[0, :, :, 1], np.zeros((8, 8)))
    # The other channels are unaffected.
    np.testing.assert_allclose(outputs[0, :, :, 0].std(), 1.0, atol=3e-3)


def test_slice_standardization_accepts_integer_images():
    raw = np.random.default_rng(2).integers(0, 256, size=(1, 8, 8, 3), dtype=np.uint8)
    layer = SliceStandardization()
    from_uint8 = _numpy(layer(raw))
    from_float = _numpy(layer(raw.astype("float32")))
    assert from_uint8.dtype == np.float32
    np.testing.assert_allclose(from_uint8, from_float, atol=1e-6)


def test_foreground_standardization_hand_computed():
    # Mean 7.5; the pixels above it, 10 and 20, have mean 15 and standard deviation 5.
    row = np.array([0.0, 0.0, 10.0, 20.0], dtype="float32")
    outputs = _numpy(
        SliceStandardization(epsilon=0.0, region="foreground")(row[None, None, :, None])
    )
    np.testing.assert_allclose(outputs[0, 0, :, 0], [-3.0, -3.0, -1.0, 1.0], atol=1e-6)


def test_foreground_standardization_ignores_how_much_of_the_slice_the_head_fills():
    head = np.array([[10.0, 20.0], [30.0, 40.0]], dtype="float32")
    small, large = np.zeros((8, 8), "float32"), np.zeros((4, 4), "float32")
    small[:2, :2] = head  # the head fills 1/16 of the slice, then 1/4
    large[:2, :2] = head
    layer = SliceStandardization(epsilon=0.0, region="foreground")
    in_small = _numpy(layer(small[None, :, :, None]))[0, :2, :2, 0]
    in_large = _numpy(layer(large[None, :, :, None]))[0, :2, :2, 0]
    np.testing.assert_allclose(in_small, in_large, atol=1e-5)
    # Standardised over the whole slice, the same head comes out differently.
    whole = SliceStandardization(epsilon=0.0)
    assert not np.allclose(
        _numpy(whole(small[None, :, :, None]))[0, :2, :2, 0],
        _numpy(whole(large[None, :, :, None]))[0, :2, :2, 0],
        atol=0.1,
    )


def test_foreground_standardization_constant_channel_is_zero():
    batch = _mri_like_batch()
    batch[1, :, :, 2] = 200.0
    outputs = _numpy(SliceStandardization(region="foreground")(batch))
    np.testing.assert_array_equal(outputs[1, :, :, 2], np.zeros((8, 8)))
    assert np.isfinite(outputs).all()


def test_slice_standardization_rejects_an_unknown_region():
    with pytest.raises(ValueError, match="region must be one of .* got 'brain'"):
        SliceStandardization(region="brain")


def test_slice_standardization_config_round_trip():
    layer = SliceStandardization(epsilon=0.25, region="foreground", name="standardize")
    config = layer.get_config()
    assert (config["epsilon"], config["region"], config["name"]) == (
        0.25,
        "foreground",
        "standardize",
    )

    clone = SliceStandardization.from_config(config)
    assert (clone.epsilon, clone.region, clone.name) == (0.25, "foreground", "standardize")

    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, SliceStandardization)
    assert (restored.epsilon, restored.region) == (0.25, "foreground")
    batch = _mri_like_batch()
    np.testing.assert_array_equal(_numpy(restored(batch)), _numpy(layer(batch)))


# ---------------------------------------------------------------------------------------------
# FusedBatchNormalization: the same numbers as keras.layers.BatchNormalization
# ---------------------------------------------------------------------------------------------


def _batch_norm_pair(shape, **kwargs):
    """Keras' layer and ours, built alike, with the same non-trivial weights and statistics."""
    rng = np.random.default_rng(1)
    channels = shape[kwargs.get("axis", -1)]
    weights = [
        rng.normal(1.0, 0.2, channels),  # gamma
        rng.normal(0.0, 0.2, channels),  # beta
        rng.normal(0.5, 0.1, channels),  # moving mean
        rng.uniform(1.0, 3.0, channels),  # moving variance
    ]
    pair = []
    for layer_class in (keras.layers.BatchNormalization, FusedBatchNormalization):
        layer = layer_class(momentum=0.9, **kwargs)
        layer.build(shape)
        layer.set_weights([w.astype("float32") for w in weights])
        pair.append(layer)
    return pair


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fused kernel is TF's")
@pytest.mark.parametrize("training", [True, False])
def test_fused_batch_norm_matches_keras_outputs_gradients_and_statistics(training):
    import tensorflow as tf

    # 3 images of 5x4: 60 values per channel, few enough that Bessel's correction (60/59) shows.
    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (3, 5, 4, 6)).astype("float32"))
    results = []
    for layer in _batch_norm_pair(x.shape):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(y * tf.cos(x))  # any loss whose gradient is not uniform
        grad_x, grad_gamma, grad_beta = tape.gradient(loss, [x, layer.gamma, layer.beta])
        statistics = [layer.moving_mean, layer.moving_variance]
        results.append([y, grad_x, grad_gamma, grad_beta, *statistics])
    names = ["outputs", "d/dx", "d/dgamma", "d/dbeta", "moving mean", "moving variance"]
    for name, expected, actual in zip(names, *results, strict=True):
        np.testing.assert_allclose(_numpy(actual), _numpy(expected), atol=2e-5, err_msg=name)

    # ... and the numbers do come from the fused kernel.
    graph = tf.function(lambda images: layer(images, training=training))
    operations = graph.get_concrete_function(x).graph.get_operations()
    assert "FusedBatchNormV3" in {operation.type for operation in operations}


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fused kernel is TF's")
def test_fused_batch_norm_moving_variance_is_the_biased_batch_variance():
    # One channel, values 0 and 2 twice each: mean 1, biased variance 1 (unbiased 4/3).
    layer = FusedBatchNormalization(momentum=0.0)
    layer(np.array([0, 2, 0, 2], dtype="float32").reshape(1, 2, 2, 1), training=True)
    assert _numpy(layer.moving_mean).tolist() == pytest.approx([1.0])
    assert _numpy(layer.moving_variance).tolist() == pytest.approx([1.0])


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [((3, 6), {}), ((3, 5, 4, 6), {"axis": 1}), ((3, 5, 4, 6), {"epsilon": 1e-6})],
    ids=["2-d input", "channels first", "epsilon below the kernel's"],
)
def test_fused_batch_norm_falls_back_to_keras_where_the_kernel_does_not_apply(shape, kwargs):
    x = np.random.default_rng(0).normal(2.0, 3.0, shape).astype("float32")
    keras_layer, fused_layer = _batch_norm_pair(x.shape, **kwargs)
    np.testing.assert_allclose(
        _numpy(fused_layer(x, training=True)), _numpy(keras_layer(x, training=True)), atol=1e-6
    )


def test_fused_batch_norm_config_round_trip():
    layer = FusedBatchNormalization(momentum=0.9, epsilon=1e-3, name="head_bn")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is FusedBatchNormalization
    assert (restored.momentum, restored.epsilon, restored.name) == (0.9, 1e-3, "head_bn")
