"""Tests of pspseg_utils.inference: predict, largest_component, overlay, predict_dir, load_model.

Where an expected value must be known, the model is a one-layer stand-in whose output follows by
hand (a constant probability, or a kernel that looks one pixel to the right); the tiny PSPNet
checks shapes, types and resizing on the real network.
"""

from __future__ import annotations

import cv2
import keras
import numpy as np
import pytest

from pspseg_utils import data, inference, rules
from pspseg_utils.models import build_pspnet

SIZE = 48  # the models' input side; images of other sizes are resized to it and back


def _constant_model(logit: float, input_shape=(SIZE, SIZE, 3)) -> keras.Model:
    """P(tumour) = sigmoid(logit) at every pixel: -20 -> 0 ("no tumour"), +20 -> 1 ("all")."""
    inputs = keras.Input(input_shape)
    outputs = keras.layers.Conv2D(
        1,
        1,
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(logit),
        activation="sigmoid",
    )(inputs)
    return keras.Model(inputs, outputs)


def _right_neighbour_model() -> keras.Model:
    """P(tumour)[i, j] = sigmoid(20 / 255 * channel0[i, j + 1]); zero padding past the right edge.

    Not mirror-symmetric, so test-time augmentation changes its output in a hand-checkable way.
    """
    inputs = keras.Input((SIZE, SIZE, 3))
    conv = keras.layers.Conv2D(1, (1, 3), padding="same", activation="sigmoid")
    model = keras.Model(inputs, conv(inputs))
    kernel = np.zeros((1, 3, 3, 1), np.float32)
    kernel[0, 2, 0, 0] = 20 / 255  # kernel column 2 reads pixel j + 1 (cross-correlation)
    conv.set_weights([kernel, np.zeros(1, np.float32)])
    return model


@pytest.fixture(scope="module")
def pspnet():
    keras.utils.set_random_seed(0)
    return build_pspnet(
        (SIZE, SIZE, 3), 1, backbone="mobilenetv2", head_channels=8, backbone_weights=None
    )


@pytest.fixture(scope="module")
def all_tumour():
    return _constant_model(20.0)


@pytest.fixture(scope="module")
def no_tumour():
    return _constant_model(-20.0)


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _write_png(path, image: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image[..., ::-1])  # data.read_image gives RGB back
    return path


# ---------------------------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width"), [(SIZE, SIZE), (80, 72), (64, 40)])
def test_predict_array_returns_a_mask_at_the_image_size(pspnet, height, width):
    mask = inference.predict(pspnet, _image(height, width))
    assert mask.shape == (height, width)
    assert mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) <= {0, 1}


def test_predict_path_reads_the_file(pspnet, tmp_path):
    image = _image(80, 72)
    path = _write_png(tmp_path / "slice.png", image)
    from_file = inference.predict(pspnet, path)
    assert from_file.shape == (80, 72) and from_file.dtype == np.uint8
    # The file and the array it holds give the same mask: channels are read back in RGB order.
    np.testing.assert_array_equal(from_file, inference.predict(pspnet, image))
    np.testing.assert_array_equal(from_file, inference.predict(pspnet, str(path)))


def test_predict_batch_array_gives_a_stacked_array(pspnet):
    batch = np.stack([_image(80, 72, seed) for seed in range(3)])
    masks = inference.predict(pspnet, batch)
    assert isinstance(masks, np.ndarray)
    assert masks.shape == (3, 80, 72) and masks.dtype == np.uint8
    np.testing.assert_array_equal(masks[1], inference.predict(pspnet, batch[1]))


def test_predict_list_of_paths_keeps_each_size(pspnet, tmp_path):
    paths = [
        _write_png(tmp_path / "a.png", _image(80, 72)),
        _write_png(tmp_path / "b.png", _image(64, 64, seed=1)),
    ]
    masks = inference.predict(pspnet, paths)
    assert isinstance(masks, list)
    assert [m.shape for m in masks] == [(80, 72), (64, 64)]
    assert all(m.dtype == np.uint8 for m in masks)


def test_return_probabilities_gives_float32_in_0_1(pspnet):
    mask, probabilities = inference.predict(pspnet, _image(80, 72), return_probabilities=True)
    assert probabilities.shape == (80, 72, 1) and probabilities.dtype == np.float32
    assert probabilities.min() >= 0.0 and probabilities.max() <= 1.0
    np.testing.assert_array_equal(mask, (probabilities[..., 0] >= 0.5).astype(np.uint8))


@pytest.mark.parametrize(("logit", "label"), [(-20.0, 0), (20.0, 1)])
def test_constant_model_gives_a_constant_mask_at_the_image_size(logit, label):
    # A non-square model input (48 x 64): a height / width mix-up in the resizing would fail.
    model = _constant_model(logit, input_shape=(48, 64, 3))
    mask = inference.predict(model, _image(80, 72))
    assert mask.shape == (80, 72)
    assert np.all(mask == label)


def test_softmax_output_gives_the_argmax_label():
    inputs = keras.Input((SIZE, SIZE, 3))
    conv = keras.layers.Conv2D(3, 1, activation="softmax")
    model = keras.Model(inputs, conv(inputs))
    conv.set_weights([np.zeros((1, 1, 3, 3), np.float32), np.array([0.0, 1.0, 3.0], np.float32)])
    mask, probabilities = inference.predict(model, _image(80, 72), return_probabilities=True)
    assert probabilities.shape == (80, 72, 3)
    assert np.all(mask == 2)  # the largest bias wins everywhere; threshold plays no part


def test_tta_averages_the_prediction_with_the_mirrored_one():
    model = _right_neighbour_model()
    image = np.full((SIZE, SIZE, 3), 255, np.uint8)  # left-right symmetric
    _, plain = inference.predict(model, image, return_probabilities=True)
    _, tta = inference.predict(model, image, tta=True, return_probabilities=True)
    high, low = 1 / (1 + np.exp(-20.0)), 0.5  # sigmoid(20 / 255 * 255), sigmoid(0): padding
    # Plain: every column sees a bright right neighbour except the last one.
    np.testing.assert_allclose(plain[:, :-1, 0], high, atol=1e-6)
    np.testing.assert_allclose(plain[:, -1, 0], low, atol=1e-6)
    # Mirrored and mirrored back, the padded column is the first one; the mean of the two:
    # (high + low) / 2 = 0.75 on both edge columns, high in between.
    np.testing.assert_allclose(tta[:, [0, -1], 0], (high + low) / 2, atol=1e-6)
    np.testing.assert_allclose(tta[:, 1:-1, 0], high, atol=1e-6)
    # At threshold 0.6 the plain mask loses the last column, the averaged one keeps it.
    assert inference.predict(model, image, threshold=0.6)[:, -1].sum() == 0
    assert inference.predict(model, image, threshold=0.6, tta=True).all()


def test_tta_on_the_pspnet_keeps_shape_and_range(pspnet):
    mask, probabilities = inference.predict(
        pspnet, _image(80, 72), tta=True, return_probabilities=True
    )
    assert mask.shape == (80, 72) and mask.dtype == np.uint8
    assert probabilities.dtype == np.float32
    assert 0.0 <= probabilities.min() <= probabilities.max() <= 1.0


def test_resized_pspnet_keeps_its_weights_and_takes_the_new_size(pspnet):
    bigger = pspnet.resized(72, 64)
    assert bigger.input_shape == (None, 72, 64, 3)
    assert bigger.predict(np.zeros((1, 72, 64, 3)), verbose=0).shape == (1, 72, 64, 1)
    for before, after in zip(pspnet.get_weights(), bigger.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    images = _image(SIZE, SIZE)[None].astype(np.float32)
    same_size = pspnet.resized(SIZE, SIZE)
    np.testing.assert_allclose(
        same_size.predict(images, verbose=0), pspnet.predict(images, verbose=0), atol=1e-6
    )


def test_at_scales_rounds_each_size_to_the_output_stride(pspnet):
    networks = inference.at_scales(pspnet, (1, 1.5, 1.3))
    assert networks[0] is pspnet  # scale 1: the model itself, no copy
    # 48 x 1.5 = 72; 48 x 1.3 = 62.4 -> 64, the nearest multiple of the stride 8.
    assert [n.input_shape[1:3] for n in networks] == [(48, 48), (72, 72), (64, 64)]


def test_multi_scale_probabilities_average_those_of_each_scale():
    keras.utils.set_random_seed(1)
    pspnet = build_pspnet(
        (SIZE, SIZE, 3), 1, backbone="mobilenetv2", head_channels=8, backbone_weights=None
    )
    # Random weights give P = 0.5 everywhere (a zero classifier): nudge them all so that the
    # output depends on the image, and so on its scale.
    rng = np.random.default_rng(1)
    pspnet.set_weights([w + rng.normal(0, 0.1, w.shape) for w in pspnet.get_weights()])
    image = _image(80, 72)
    both = inference.predict_probabilities(pspnet, [image], scales=(1, 1.5))[0]
    one = inference.predict_probabilities(pspnet, [image])[0]
    bigger = inference.predict_probabilities(pspnet.resized(72, 72), [image])[0]
    assert not np.allclose(one, bigger, atol=1e-4)  # the two scales see different inputs
    np.testing.assert_allclose(both, (one + bigger) / 2, atol=1e-6)
    mask = inference.predict(pspnet, image, scales=(1, 1.5), threshold=0.5)
    np.testing.assert_array_equal(mask, (both[..., 0] >= 0.5).astype(np.uint8))


@pytest.mark.parametrize("scales", [(), (0,), (1, -1.5), ("2",)])
def test_scales_must_be_positive_numbers(pspnet, scales):
    with pytest.raises(ValueError, match="scales must be one or more positive numbers"):
        inference.at_scales(pspnet, scales)


def test_other_scales_need_a_pspnet_and_the_error_says_so(all_tumour):
    with pytest.raises(ValueError, match=r"scale 1.5 needs a pspseg PSPNet.*Functional.*1"):
        inference.predict(all_tumour, _image(SIZE, SIZE), scales=(1, 1.5))
    mask = inference.predict(all_tumour, _image(SIZE, SIZE), scales=(1,))
    assert mask.all()


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.5, 1.5])
def test_threshold_outside_0_1_is_refused(all_tumour, threshold):
    with pytest.raises(ValueError, match=rf"threshold must be in \(0, 1\), got {threshold}"):
        inference.predict(all_tumour, _image(SIZE, SIZE), threshold=threshold)


def test_two_channel_image_is_refused_naming_its_shape(all_tumour):
    with pytest.raises(ValueError, match=r"\(H, W, 3\), got \(48, 48, 2\)"):
        inference.predict(all_tumour, np.zeros((SIZE, SIZE, 2), np.uint8))


def test_two_dimensional_array_is_refused(all_tumour):
    with pytest.raises(ValueError, match=r"got \(48, 48\)"):
        inference.predict(all_tumour, np.zeros((SIZE, SIZE), np.uint8))


# ---------------------------------------------------------------------------------------------
# A model that takes each slice with its neighbours
# ---------------------------------------------------------------------------------------------


def _previous_slice_model() -> keras.Model:
    """P(tumour) = sigmoid(40 / 255 * channel3 - 20): 1 where the previous slice's first
    sequence (channels 3..5 hold the previous slice, see data.context_offsets) is 255, 0 where
    it is 0; nothing of the slice itself is looked at."""
    inputs = keras.Input((SIZE, SIZE, 9))
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid")
    model = keras.Model(inputs, conv(inputs))
    kernel = np.zeros((1, 1, 9, 1), np.float32)
    kernel[0, 0, 3, 0] = 40 / 255
    conv.set_weights([kernel, np.array([-20.0], np.float32)])
    return model


def _half(side: str) -> np.ndarray:
    """A slice that is 255 on its left or right half, or 0 ("dark") everywhere."""
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    if side == "left":
        image[:, : SIZE // 2] = 255
    elif side == "right":
        image[:, SIZE // 2 :] = 255
    return image


@pytest.fixture
def volume(tmp_path):
    """P_1 bright on the left, P_2 dark, P_3 bright on the right, named as the Kaggle layout."""
    return [
        _write_png(tmp_path / "P" / f"P_{n}.png", _half(side))
        for n, side in ((1, "left"), (2, "dark"), (3, "right"))
    ]


def test_mask_labels_of_a_model():
    inputs = keras.Input((8, 8, 3))
    softmax = keras.Model(inputs, keras.layers.Conv2D(3, 1, activation="softmax")(inputs))
    assert inference.mask_labels_of(_constant_model(0.0)) == 2  # sigmoid: tumour or not
    assert inference.mask_labels_of(softmax) == 3


def test_context_slices_of_a_model():
    assert inference.context_slices_of(_constant_model(0.0)) == 0
    assert inference.context_slices_of(_previous_slice_model()) == 1
    assert inference.context_slices_of(_constant_model(0.0, (SIZE, SIZE, 15))) == 2


def test_predict_reads_a_files_neighbours_by_name(volume):
    model = _previous_slice_model()
    left = (_half("left")[..., 0] > 0).astype(np.uint8)
    np.testing.assert_array_equal(inference.predict(model, volume[1]), left)  # P_1 before it
    np.testing.assert_array_equal(inference.predict(model, volume[0]), left)  # itself: first
    assert not inference.predict(model, volume[2]).any()  # P_2, dark, before it
    masks = inference.predict(model, [str(p) for p in volume])
    assert [m.sum() for m in masks] == [left.sum(), left.sum(), 0]


def test_predict_takes_an_array_of_the_models_channels(volume):
    model = _previous_slice_model()
    stacked = data.read_slice(volume[1], context_slices=1)
    np.testing.assert_array_equal(
        inference.predict(model, stacked), inference.predict(model, volume[1])
    )
    with pytest.raises(ValueError, match=r"1 neighbour\(s\) on each side: images \(H, W, 9\), got "
                       r"\(48, 48, 3\); pass file paths .* context_slices=1"):  # fmt: skip
        inference.predict(model, _half("left"))


def test_predict_dir_with_neighbours_overlays_the_slice_itself(volume, tmp_path):
    written = inference.predict_dir(_previous_slice_model(), volume[0].parent, tmp_path / "out",
                                    progress=False)  # fmt: skip
    assert [p.name for p in written] == ["P_1.png", "P_2.png", "P_3.png"]
    mask = cv2.imread(str(written[1]), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(mask, _half("left")[..., 0] > 0)
    shown = data.read_image(tmp_path / "out" / "overlays" / "P_2.png")
    np.testing.assert_array_equal(shown, inference.overlay(_half("dark"), mask))


def test_the_articles_predict_with_neighbours(volume, tmp_path):
    from pspseg_utils.keras_segmentation.data_utils.data_loader import class_colors
    from pspseg_utils.keras_segmentation.predict import predict as article_predict

    out = tmp_path / "overlay.png"
    mask = article_predict(model=_previous_slice_model(), inp=str(volume[1]), out_fname=out,
                           overlay_img=True)  # fmt: skip
    np.testing.assert_array_equal(mask, _half("left")[..., 0] > 0)
    # The slice itself is dark: the overlay is half of each label's colour (BGR, as cv2 reads).
    half_colours = (np.array(class_colors[:2]) / 2).astype(np.uint8)
    np.testing.assert_array_equal(cv2.imread(str(out)), half_colours[mask])


# ---------------------------------------------------------------------------------------------
# largest_component
# ---------------------------------------------------------------------------------------------

TWO_BLOBS = np.array(
    [
        [1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],  # a 2 x 2 blob: 4 pixels
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 1, 0],  # a 2 x 1 blob: 2 pixels
    ],
    np.uint8,
)
DIAGONAL_AND_PAIR = np.array(
    [
        [1, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],  # 3 pixels touching at corners: one 8-connected region
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 1],  # 2 pixels
        [0, 0, 0, 0, 0, 0],
    ],
    np.uint8,
)


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        (TWO_BLOBS, np.pad(np.ones((2, 2), np.uint8), ((0, 4), (0, 4)))),
        (DIAGONAL_AND_PAIR, np.pad(np.eye(3, dtype=np.uint8), ((0, 3), (0, 3)))),
        (TWO_BLOBS * 2, np.pad(np.full((2, 2), 2, np.uint8), ((0, 4), (0, 4)))),  # label kept
        (np.zeros((6, 6), np.uint8), np.zeros((6, 6), np.uint8)),  # empty: unchanged
        (TWO_BLOBS[:3], TWO_BLOBS[:3]),  # a single blob: unchanged
    ],
    ids=["two-blobs", "8-connected-diagonal", "labels-kept", "empty", "single-blob"],
)
def test_largest_component(mask, expected):
    kept = inference.largest_component(mask)
    np.testing.assert_array_equal(kept, expected)
    assert kept.dtype == mask.dtype


def test_largest_component_of_a_volume():
    # A 2 x 2 column through three slices (12 voxels) beats a 3 x 3 blob (9) on the last slice,
    # which a slice on its own would keep; slices touching only at a corner still connect.
    volume = np.zeros((3, 6, 6), np.uint8)
    volume[:, :2, :2] = 1
    volume[2, 3:, 3:] = 1
    kept = inference.largest_component(volume)
    expected = np.zeros_like(volume)
    expected[:, :2, :2] = 1
    np.testing.assert_array_equal(kept, expected)
    np.testing.assert_array_equal(inference.largest_component(volume[2]), volume[2] - expected[2])

    diagonal = np.zeros((2, 4, 4), np.uint8)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = 1  # touching at a corner across slices
    diagonal[1, 3, 3] = 1
    np.testing.assert_array_equal(inference.largest_component(diagonal)[1, 3, 3], 0)
    assert inference.largest_component(diagonal).sum() == 2


def test_keep_largest_in_predict(all_tumour):
    # A constant-1 model paints the whole image: one region, kept whole.
    assert inference.predict(all_tumour, _image(20, 30), keep_largest=True).sum() == 20 * 30


# ---------------------------------------------------------------------------------------------
# overlay
# ---------------------------------------------------------------------------------------------

REGION = (slice(1, 5), slice(1, 5))  # a 4 x 4 square in a 6 x 6 slice


def _square_mask() -> np.ndarray:
    mask = np.zeros((6, 6), np.uint8)
    mask[REGION] = 1
    return mask


def _slice_with_flair(flair: int) -> np.ndarray:
    """A 6 x 6 slice whose channels differ, so which one the overlay shows is plain."""
    image = np.zeros((6, 6, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, flair, 250  # pre-contrast, FLAIR, post
    return image


def test_overlay_shows_flair_in_grey_and_fills_the_mask_orange():
    image = _slice_with_flair(100)
    shown = inference.overlay(image, _square_mask(), alpha=0.5)
    assert shown.shape == (6, 6, 3) and shown.dtype == np.uint8
    inside = _square_mask().astype(bool)
    # 0.5 * 100 + 0.5 * (230, 159, 0) = (165, 129.5, 50) -> uint8 (165, 129, 50)
    assert rules.PREDICTION_COLOUR == (230, 159, 0)
    np.testing.assert_array_equal(shown[inside], np.tile([165, 129, 50], (16, 1)))
    np.testing.assert_array_equal(shown[~inside], np.full((20, 3), 100))  # FLAIR, grey
    np.testing.assert_array_equal(image, _slice_with_flair(100))  # the input is not modified


def test_overlay_outlines_the_truth_in_blue_over_the_fill():
    image = _slice_with_flair(100)
    truth = np.zeros((6, 6), np.uint8)
    truth[2:6, 2:6] = 1  # a 4 x 4 square one pixel down and right of the prediction
    shown = inference.overlay(image, _square_mask(), alpha=0.5, truth=truth)
    interior = np.zeros((6, 6), bool)
    interior[3:5, 3:5] = True
    border = truth.astype(bool) & ~interior  # the truth's 12-pixel ring
    np.testing.assert_array_equal(shown[border], np.tile(rules.TRUTH_COLOUR, (12, 1)))
    assert tuple(shown[3, 3]) == (165, 129, 50)  # inside both: the fill, no line
    assert tuple(shown[1, 1]) == (165, 129, 50)  # predicted only: the fill
    assert tuple(shown[0, 0]) == (100, 100, 100)  # in neither: the grey scan


def test_overlay_outline_of_the_mask_itself_and_old_style_truth_calls():
    image = _slice_with_flair(100)
    inside = _square_mask().astype(bool)
    interior = np.zeros((6, 6), bool)
    interior[2:4, 2:4] = True
    border = inside & ~interior  # the 12-pixel ring of the square
    shown = inference.overlay(image, _square_mask(), alpha=0.5, outline=True)
    np.testing.assert_array_equal(shown[border], np.tile(rules.PREDICTION_COLOUR, (12, 1)))
    np.testing.assert_array_equal(shown[interior], np.tile([165, 129, 50], (4, 1)))
    # (image, mask, colour=..., alpha=0.0, outline=True): the outline alone, as lessons drew it
    truth_only = inference.overlay(image, _square_mask(), colour=rules.TRUTH_COLOUR, alpha=0.0,
                                   outline=True)  # fmt: skip
    np.testing.assert_array_equal(truth_only[border], np.tile(rules.TRUTH_COLOUR, (12, 1)))
    np.testing.assert_array_equal(truth_only[interior], np.full((4, 3), 100))


def test_overlay_without_grey_draws_on_the_image_as_given():
    image = _slice_with_flair(100)
    shown = inference.overlay(image, np.zeros((6, 6), np.uint8), grey=False)
    np.testing.assert_array_equal(shown, image)


def test_overlay_of_a_grayscale_slice_is_rgb():
    shown = inference.overlay(np.full((6, 6), 100, np.uint8), np.zeros((6, 6), np.uint8))
    assert shown.shape == (6, 6, 3)
    assert np.all(shown == 100)  # empty mask: nothing tinted, nothing outlined


# ---------------------------------------------------------------------------------------------
# predict_dir
# ---------------------------------------------------------------------------------------------


def test_predict_dir_writes_masks_and_overlays(all_tumour, tmp_path):
    in_dir = tmp_path / "in"
    images = {"a": _image(64, 64), "b": _image(80, 72, seed=1)}
    for stem, image in images.items():
        # One in a sub-folder: folders are searched recursively.
        _write_png(in_dir / ("sub" if stem == "b" else "") / f"{stem}.png", image)
    _write_png(in_dir / "a_mask.png", np.zeros((64, 64, 3), np.uint8))  # skipped

    written = inference.predict_dir(all_tumour, in_dir, tmp_path / "out", progress=False)

    assert sorted(p.name for p in written) == ["a.png", "b.png"]
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == ["a.png", "b.png"]
    for stem, image in images.items():
        mask = cv2.imread(str(tmp_path / "out" / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == image.shape[:2]
        assert np.all(mask == 1)  # labels 0/1, the article's format (not 0/255)
        shown = data.read_image(tmp_path / "out" / "overlays" / f"{stem}.png")
        np.testing.assert_array_equal(shown, inference.overlay(image, np.ones(image.shape[:2])))


def test_predict_dir_of_the_real_network_writes_labels_0_1(pspnet, tiny_article_dir, tmp_path):
    files = sorted((tiny_article_dir / "images").glob("*.png"))[:3]
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    for path in files:
        (in_dir / path.name).write_bytes(path.read_bytes())
    written = inference.predict_dir(pspnet, in_dir, tmp_path / "out", progress=False)
    assert len(written) == 3
    for path in written:
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (64, 64)
        assert set(np.unique(mask).tolist()) <= {0, 1}
    assert len(list((tmp_path / "out" / "overlays").glob("*.png"))) == 3


def test_predict_dir_of_an_article_layout_folder_skips_its_masks(all_tumour, tmp_path):
    # images/ + masks/ as `pspseg prepare` writes them: the masks share the images' names.
    for sub in ("images", "masks"):
        _write_png(tmp_path / "in" / sub / "p_1.png", _image(16, 16))
    written = inference.predict_dir(all_tumour, tmp_path / "in", tmp_path / "out", progress=False)
    assert written == [tmp_path / "out" / "masks" / "p_1.png"]


def test_predict_files_with_one_name_twice_is_refused_before_writing(all_tumour, tmp_path):
    for sub in ("a", "b"):
        _write_png(tmp_path / sub / "scan.png", _image(16, 16))
    files = [tmp_path / "a" / "scan.png", tmp_path / "b" / "scan.png"]
    with pytest.raises(ValueError, match=r"b/scan.png have the same name, scan: their masks"):
        inference.predict_files(all_tumour, files, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [[], ["x_mask.png"], ["notes.txt"]])
def test_predict_dir_without_images_is_refused(all_tumour, tmp_path, content):
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    for name in content:
        if name.endswith(".png"):
            _write_png(in_dir / name, np.zeros((8, 8, 3), np.uint8))
        else:
            (in_dir / name).write_text("not an image")
    with pytest.raises(FileNotFoundError, match="no images"):
        inference.predict_dir(all_tumour, in_dir, tmp_path / "out", progress=False)


# ---------------------------------------------------------------------------------------------
# load_model
# ---------------------------------------------------------------------------------------------


def test_load_model_prefers_best_over_last(no_tumour, all_tumour, tmp_path):
    no_tumour.save(tmp_path / "best.keras")
    all_tumour.save(tmp_path / "last.keras")
    loaded = inference.load_model(tmp_path)
    assert not inference.predict(loaded, _image(SIZE, SIZE)).any()  # best: the constant-0 one


def test_load_model_falls_back_to_last(all_tumour, tmp_path):
    all_tumour.save(tmp_path / "last.keras")
    assert inference.predict(inference.load_model(tmp_path), _image(SIZE, SIZE)).all()


def test_load_model_of_a_file_and_of_the_pspnet(pspnet, tmp_path):
    pspnet.save(tmp_path / "model.keras")
    loaded = inference.load_model(tmp_path / "model.keras")
    assert type(loaded).__name__ == "PSPNet"
    image = _image(80, 72)
    _, before = inference.predict(pspnet, image, return_probabilities=True)
    _, after = inference.predict(loaded, image, return_probabilities=True)
    np.testing.assert_allclose(after, before, atol=1e-6)


def test_load_model_of_an_empty_folder_says_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no best\.keras or last\.keras; train first"):
        inference.load_model(tmp_path)


def test_load_model_of_a_missing_path_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass a .keras file or a run folder"):
        inference.load_model(tmp_path / "nowhere.keras")


def test_load_model_is_safe_mode(tmp_path):
    """A model holding Python code (a lambda) is refused rather than executed."""
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(tmp_path / "m.keras")
    with pytest.raises(ValueError, match="safe_mode"):
        inference.load_model(tmp_path / "m.keras")
