"""The article's code runs verbatim with only its import line changed, and the rest of
keras_segmentation's PSPNet API (`pspseg_utils.keras_segmentation`) behaves as its documentation
says: the builders and `model_from_name`, `model.train` keywords, `predict` and its pictures,
`predict_multiple`, `evaluate`, the data loader, and clear refusals for what is not revived.

`vgg_pspnet` asks for ImageNet weights; the `offline` fixture takes the network and the weights
cache away, so every machine builds from random weights (with the builder's warning) and nothing
is downloaded.
"""

from __future__ import annotations

import csv
import inspect
import json
import shutil

import cv2
import keras
import numpy as np
import pytest

from pspseg_utils import keras_segmentation as ks
from pspseg_utils.keras_segmentation.data_utils import data_loader
from pspseg_utils.models import PSPNet

SIZE = 48
OFFLINE_WARNING = "ignore:.*Continuing with random initial weights:UserWarning"


@pytest.fixture(scope="module")
def untrained():
    """An article-style binary model, never trained: for the calls that need no training."""
    keras.utils.set_random_seed(0)
    return ks.models.pspnet.vgg_pspnet(
        n_classes=2, input_height=SIZE, input_width=SIZE, backbone_weights=None
    )


def _log_epochs(run_dir) -> list[int]:
    with (run_dir / "log.csv").open() as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def _train_one_short_epoch(model, article_dir, tmp_path, **keywords):
    """model.train for one epoch of two steps on an article-layout folder, checkpointing into
    tmp_path/ckpts; checks that the epoch ran with a finite loss, and returns the result."""
    result = model.train(
        train_images=str(article_dir / "images"),
        train_annotations=str(article_dir / "masks"),
        checkpoints_path=str(tmp_path / "ckpts"),
        epochs=1,
        steps_per_epoch=2,
        **keywords,
    )
    assert result.epochs_done == 1 and np.isfinite(result.history["loss"]).all()
    return result


def _copy_some(article_dir, out_dir, count: int):
    """The first `count` image/mask pairs of an article-layout folder, copied to out_dir."""
    for sub in ("images", "masks"):
        (out_dir / sub).mkdir(parents=True)
        for path in sorted((article_dir / sub).glob("*.png"))[:count]:
            shutil.copy(path, out_dir / sub / path.name)
    return out_dir


@pytest.mark.filterwarnings(OFFLINE_WARNING)
def test_the_articles_code_runs_with_only_its_import_changed(tiny_article_dir, tmp_path, offline):
    keras.utils.set_random_seed(0)
    INPUT_SIZE = SIZE
    TRAIN_IMAGES = str(tiny_article_dir / "images")
    TRAIN_ANNOTATIONS = str(tiny_article_dir / "masks")
    CHECKPOINTS = str(tmp_path / "ckpts" / "brain")
    IMAGE = str(sorted((tiny_article_dir / "images").glob("*.png"))[0])

    # ---- the article's code, verbatim but for the import line ----
    # fmt: off
    from pspseg_utils import keras_segmentation as ks

    model = ks.models.pspnet.vgg_pspnet(n_classes=2, input_height=INPUT_SIZE, input_width=INPUT_SIZE)  # noqa: E501
    model.train(
        train_images=TRAIN_IMAGES,
        train_annotations=TRAIN_ANNOTATIONS,
        checkpoints_path=CHECKPOINTS,
        epochs=1,
        auto_resume_checkpoint=True,
        steps_per_epoch=2,
    )
    model = ks.predict.model_from_checkpoint_path(CHECKPOINTS)
    pred_mask = ks.predict.predict(model=model, inp=IMAGE)
    # fmt: on
    # ---- end of the article's code ----

    assert isinstance(pred_mask, np.ndarray)
    assert pred_mask.dtype == np.uint8
    assert pred_mask.shape == (64, 64)  # the image's own size, not the model's 48 x 48
    assert set(np.unique(pred_mask).tolist()) <= {0, 1}
    assert isinstance(model, PSPNet)
    assert callable(model.train) and callable(model.predict_segmentation)
    assert model.n_classes == 2
    assert (model.input_height, model.input_width) == (SIZE, SIZE)
    assert _log_epochs(tmp_path / "ckpts" / "brain") == [0]


@pytest.mark.slow
@pytest.mark.filterwarnings(OFFLINE_WARNING)
def test_article_train_resumes_from_its_checkpoint(tiny_article_dir, tmp_path, offline):
    keras.utils.set_random_seed(0)
    images, masks = str(tiny_article_dir / "images"), str(tiny_article_dir / "masks")
    checkpoints = tmp_path / "ckpts" / "brain"
    model = ks.models.pspnet.vgg_pspnet(n_classes=2, input_height=SIZE, input_width=SIZE)
    model.train(
        train_images=images,
        train_annotations=masks,
        checkpoints_path=str(checkpoints),
        epochs=1,
        auto_resume_checkpoint=True,
        steps_per_epoch=2,
    )
    model = ks.predict.model_from_checkpoint_path(str(checkpoints))
    result = model.train(
        train_images=images,
        train_annotations=masks,
        checkpoints_path=str(checkpoints),
        epochs=2,
        auto_resume_checkpoint=True,
        steps_per_epoch=2,
    )
    assert result.epochs_done == 2
    assert _log_epochs(checkpoints) == [0, 1]  # epoch 0 kept, only epoch 1 trained again


@pytest.fixture(scope="module")
def three_class_dir(tmp_path_factory):
    """An article-layout dataset of 6 slices, 64 x 64, masks with labels 0, 1 and 2."""
    root = tmp_path_factory.mktemp("three_class")
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir()
    for index in range(6):
        image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        mask[10 + index : 30 + index, 10:30] = 1
        mask[40:50, 20 + index : 44] = 2
        image[mask == 1] = 200  # something to learn: class 1 bright, class 2 dark
        image[mask == 2] = 20
        cv2.imwrite(str(root / "images" / f"p_{index}.png"), image)
        cv2.imwrite(str(root / "masks" / f"p_{index}.png"), mask)
    return root


@pytest.mark.slow
def test_three_classes_train_and_predict_labels_0_1_2(three_class_dir, tmp_path):
    keras.utils.set_random_seed(0)
    model = ks.models.pspnet.vgg_pspnet(
        n_classes=3, input_height=SIZE, input_width=SIZE, backbone_weights=None
    )
    assert model.n_classes == 3 and model.num_classes == 3
    _train_one_short_epoch(model, three_class_dir, tmp_path)
    mask = ks.predict.predict(model=model, inp=str(three_class_dir / "images" / "p_0.png"))
    assert mask.shape == (64, 64) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) <= {0, 1, 2}


def test_a_model_wider_than_high_trains_and_predicts_at_the_images_size(tiny_article_dir, tmp_path):
    # keras_segmentation's own default model is 384 x 576: every image is resized to H x W.
    keras.utils.set_random_seed(0)
    model = ks.models.pspnet.vgg_pspnet(
        n_classes=2, input_height=48, input_width=72, backbone_weights=None
    )
    _train_one_short_epoch(model, tiny_article_dir, tmp_path, do_augment=True)
    image = next((tiny_article_dir / "images").glob("*.png"))
    assert ks.predict.predict(model=model, inp=str(image)).shape == (64, 64)


@pytest.mark.slow
def test_train_with_validation_batch_size_augmentation_and_an_old_keyword(
    tiny_article_dir, tmp_path
):
    keras.utils.set_random_seed(0)
    val_dir = _copy_some(tiny_article_dir, tmp_path / "val", 4)
    model = ks.models.pspnet.vgg_pspnet(
        n_classes=2, input_height=SIZE, input_width=SIZE, backbone_weights=None
    )
    with pytest.warns(UserWarning, match=r"ignores \['gen_use_multiprocessing'\]"):
        result = _train_one_short_epoch(
            model,
            tiny_article_dir,
            tmp_path,
            batch_size=4,
            do_augment=True,
            validate=True,
            val_images=str(val_dir / "images"),
            val_annotations=str(val_dir / "masks"),
            gen_use_multiprocessing=True,
        )
    assert "val_dice" in result.history and "val_loss" in result.history
    # With validation the best model is chosen on the validation Dice.
    best = json.loads((tmp_path / "ckpts" / "best.json").read_text())
    assert set(best) == {"epoch", "val_dice"}
    assert (tmp_path / "ckpts" / "best.keras").exists()


def test_validate_without_val_folders_is_refused(untrained, tiny_article_dir, tmp_path):
    with pytest.raises(ValueError, match="validate=True needs val_images and val_annotations"):
        untrained.train(
            train_images=str(tiny_article_dir / "images"),
            train_annotations=str(tiny_article_dir / "masks"),
            checkpoints_path=str(tmp_path / "ckpts"),
            validate=True,
        )
    assert not (tmp_path / "ckpts").exists()  # refused before anything was written


def _painted(labels: np.ndarray) -> np.ndarray:
    """keras_segmentation's picture of labels: class c in class_colors[c] (BGR, as cv2 reads)."""
    return np.array(data_loader.class_colors[:2], np.uint8)[labels]


def test_predict_segmentation_writes_the_labels_in_keras_segmentations_colours(
    untrained, tiny_article_dir, tmp_path
):
    image = sorted((tiny_article_dir / "images").glob("*.png"))[0]
    mask = untrained.predict_segmentation(inp=str(image), out_fname=str(tmp_path / "out.png"))
    assert mask.shape == (64, 64) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) <= {0, 1}
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "out.png")), _painted(mask))
    assert data_loader.class_colors[:2] == [(197, 215, 20), (132, 248, 207)]  # random.seed(0)


def test_predict_multiple_writes_a_png_per_image(untrained, tiny_article_dir, tmp_path):
    inp_dir = _copy_some(tiny_article_dir, tmp_path / "in", 3) / "images"
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    masks = ks.predict.predict_multiple(model=untrained, inp_dir=str(inp_dir), out_dir=str(out_dir))
    names = sorted(p.name for p in inp_dir.glob("*.png"))
    assert sorted(p.name for p in out_dir.iterdir()) == names
    assert len(masks) == 3
    for name, mask in zip(names, masks, strict=True):
        assert mask.shape == (64, 64)
        np.testing.assert_array_equal(cv2.imread(str(out_dir / name)), _painted(mask))


def test_predict_multiple_without_a_model_says_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match="pass model=... or checkpoints_path=..."):
        ks.predict.predict_multiple(inp_dir=str(tmp_path))


def test_model_from_an_empty_checkpoints_path_says_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train with model\.train"):
        ks.predict.model_from_checkpoint_path(str(tmp_path / "ckpts" / "brain"))


# ---------------------------------------------------------------------------------------------
# The builders and model_from_name
# ---------------------------------------------------------------------------------------------


def test_vgg_pspnet_two_classes_warns_offline_and_gives_one_sigmoid_channel(offline):
    with pytest.warns(UserWarning, match="random initial weights"):
        model = ks.models.pspnet.vgg_pspnet(n_classes=2, input_height=64, input_width=64)
    assert isinstance(model, PSPNet)
    assert tuple(model(keras.Input((64, 64, 3))).shape) == (None, 64, 64, 1)
    assert model.get_layer("head_probabilities").get_config()["activation"] == "sigmoid"
    assert model.n_classes == 2
    assert (model.input_height, model.input_width) == (64, 64)
    assert (model.output_height, model.output_width) == (64, 64)


def test_vgg_pspnet_three_classes_gives_three_softmax_channels(offline):
    with pytest.warns(UserWarning, match="backbone_weights=None"):
        model = ks.models.pspnet.vgg_pspnet(n_classes=3, input_height=64, input_width=64)
    assert tuple(model(keras.Input((64, 64, 3))).shape) == (None, 64, 64, 3)
    assert model.get_layer("head_probabilities").get_config()["activation"] == "softmax"
    assert model.n_classes == 3


@pytest.mark.parametrize(
    ("channels", "n_classes", "message"),
    [(1, 2, "channels must be 3"), (3, 1, "n_classes counts the background too: >= 2, got 1")],
)
def test_builders_refuse_what_they_cannot_build(channels, n_classes, message):
    with pytest.raises(ValueError, match=message):
        ks.models.pspnet.vgg_pspnet(n_classes, 64, 64, channels, backbone_weights=None)


@pytest.mark.filterwarnings(OFFLINE_WARNING)
@pytest.mark.parametrize(
    "name",
    [
        "pspnet",
        "vgg_pspnet",
        "mobilenet_pspnet",
        pytest.param("resnet50_pspnet", marks=pytest.mark.slow),
        pytest.param("pspnet_50", marks=pytest.mark.slow),
        pytest.param("pspnet_101", marks=pytest.mark.slow),
    ],
)
def test_model_from_name_builds_each_pspnet_at_a_non_square_size(name, offline):
    model = ks.models.all_models.model_from_name[name](100, input_height=48, input_width=72)
    assert tuple(model(keras.Input((48, 72, 3))).shape) == (None, 48, 72, 100)  # 100 classes
    assert model.n_classes == 100
    for method in ("train", "predict_segmentation", "predict_multiple", "evaluate_segmentation"):
        assert getattr(model, method).__self__ is model


def test_the_pspnets_default_sizes_are_keras_segmentations_or_the_nearest_multiple_of_8():
    defaults = {
        name: inspect.signature(builder).parameters
        for name, builder in ks.models.all_models.model_from_name.items()
    }
    sizes = {
        name: (p["input_height"].default, p["input_width"].default) for name, p in defaults.items()
    }
    assert sizes == {
        "pspnet": (384, 576), "vgg_pspnet": (384, 576), "resnet50_pspnet": (384, 576),
        "pspnet_50": (480, 480), "pspnet_101": (480, 480),  # 473 there: not a multiple of 8
        "mobilenet_pspnet": (224, 224),
    }  # fmt: skip


def test_model_from_name_names_the_models_it_has_for_one_it_has_not():
    with pytest.raises(KeyError, match="'unet' is not among the models pspseg revives"):
        ks.models.all_models.model_from_name["unet"]


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (ks.pretrained.pspnet_50_ADE_20K, "ADE20K"),
        (ks.pretrained.pspnet_101_cityscapes, "Cityscapes"),
        (ks.pretrained.pspnet_101_voc12, "Pascal VOC 2012"),
        (ks.pretrained.resnet_pspnet_VOC12_v0_1, "Pascal VOC 2012"),
    ],
)
def test_pretrained_weights_are_refused_with_what_to_do_instead(call, what):
    with pytest.raises(NotImplementedError, match=f"{what} weights.*train it on your data"):
        call()


def test_distillation_is_refused_with_what_to_do_instead():
    with pytest.raises(NotImplementedError, match="train the smaller network directly"):
        ks.model_compression.perform_distilation(None, None, "data/")


# ---------------------------------------------------------------------------------------------
# train's keywords
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"ignore_zero_class": True}, r"cannot honour \['ignore_zero_class'\]"),
        ({"custom_augmentation": lambda: None}, r"cannot honour \['custom_augmentation'\]"),
        ({"preprocessing": lambda x: x}, r"cannot honour \['preprocessing'\]"),
        ({"do_augment": True, "augmentation_name": "aug_fancy"}, "augmentation_name must be one"),
        ({"read_image_type": 0}, "read_image_type must be 1"),
    ],
)
def test_train_refuses_what_it_cannot_honour_before_writing(
    untrained, tiny_article_dir, tmp_path, keywords, message
):
    with pytest.raises(ValueError, match=message):
        untrained.train(
            train_images=str(tiny_article_dir / "images"),
            train_annotations=str(tiny_article_dir / "masks"),
            checkpoints_path=str(tmp_path / "ckpts"),
            **keywords,
        )
    assert not (tmp_path / "ckpts").exists()


@pytest.mark.filterwarnings(OFFLINE_WARNING)
def test_train_builds_a_model_given_by_name_and_augments_by_any_of_its_names(
    tiny_article_dir, tmp_path, offline
):
    keras.utils.set_random_seed(0)
    result = ks.train.train(
        "vgg_pspnet",
        str(tiny_article_dir / "images"),
        str(tiny_article_dir / "masks"),
        input_height=SIZE,
        input_width=SIZE,
        n_classes=2,
        checkpoints_path=str(tmp_path / "ckpts"),
        epochs=1,
        steps_per_epoch=2,
        do_augment=True,
        augmentation_name="aug_geometric",
    )
    assert result.epochs_done == 1 and np.isfinite(result.history["loss"]).all()
    assert isinstance(result.model, PSPNet) and result.model.n_classes == 2


# ---------------------------------------------------------------------------------------------
# predict's pictures and evaluate, on a model whose answer is known
# ---------------------------------------------------------------------------------------------


def _bright_is_class_1() -> keras.Model:
    """P(class 1) = sigmoid(40 / 255 * first channel - 20): 1 where it is 255, 0 where 0."""
    inputs = keras.Input((4, 4, 3))
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid")
    model = keras.Model(inputs, conv(inputs))
    kernel = np.zeros((1, 1, 3, 1), np.float32)
    kernel[0, 0, 0, 0] = 40 / 255
    conv.set_weights([kernel, np.array([-20.0], np.float32)])
    return model


@pytest.fixture
def known_pair(tmp_path):
    """Two 4 x 4 images and annotations. a.png: the left two columns bright, the left three
    labelled 1. b.png: dark, labelled 0."""
    for sub in ("images", "annotations"):
        (tmp_path / sub).mkdir()
    image, labels = np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)
    image[:, :2], labels[:, :3] = 255, 1
    cv2.imwrite(str(tmp_path / "images" / "a.png"), image)
    cv2.imwrite(str(tmp_path / "annotations" / "a.png"), labels)
    cv2.imwrite(str(tmp_path / "images" / "b.png"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "annotations" / "b.png"), np.zeros((4, 4), np.uint8))
    return tmp_path


def test_evaluate_returns_keras_segmentations_intersection_over_union(known_pair):
    # Class 1: 8 pixels right, 4 missed -> 8 / 12. Class 0: 4 + 16 right, 4 false -> 20 / 24.
    # Frequency weights: 20 and 12 of the 32 true pixels.
    scores = ks.predict.evaluate(
        model=_bright_is_class_1(),
        inp_images_dir=str(known_pair / "images"),
        annotations_dir=str(known_pair / "annotations"),
    )
    np.testing.assert_allclose(scores["class_wise_IU"], [20 / 24, 8 / 12])
    assert scores["mean_IU"] == pytest.approx(0.75)
    assert scores["frequency_weighted_IU"] == pytest.approx(20 / 24 * 20 / 32 + 8 / 12 * 12 / 32)
    same = ks.predict.evaluate(
        model=_bright_is_class_1(),
        inp_images=[str(known_pair / "images" / n) for n in ("a.png", "b.png")],
        annotations=[str(known_pair / "annotations" / n) for n in ("a.png", "b.png")],
    )
    assert same["mean_IU"] == scores["mean_IU"]


def test_evaluate_segmentation_is_bound_to_the_models(untrained, tiny_article_dir):
    scores = untrained.evaluate_segmentation(
        inp_images_dir=str(tiny_article_dir / "images"),
        annotations_dir=str(tiny_article_dir / "masks"),
    )
    assert set(scores) == {"frequency_weighted_IU", "mean_IU", "class_wise_IU"}
    assert scores["class_wise_IU"].shape == (2,)
    assert 0 <= scores["mean_IU"] <= 1


def test_predict_overlays_and_adds_a_legend(known_pair, tmp_path):
    out = tmp_path / "shown.png"
    labels = ks.predict.predict(
        model=_bright_is_class_1(), inp=str(known_pair / "images" / "a.png"), out_fname=str(out),
        overlay_img=True, class_names=["background", "tumour"], show_legends=True,
    )  # fmt: skip
    np.testing.assert_array_equal(labels, np.repeat([[1, 1, 0, 0]], 4, axis=0))
    shown = cv2.imread(str(out))
    assert shown.shape == (75, 125 + 4, 3)  # the legend (25 per class + 25) left of the image
    colour_0, colour_1 = (np.array(c) for c in data_loader.class_colors[:2])
    np.testing.assert_array_equal(shown[0, 125], (255 / 2 + colour_1 / 2).astype(np.uint8))
    np.testing.assert_array_equal(shown[0, 128], (0 / 2 + colour_0 / 2).astype(np.uint8))
    np.testing.assert_array_equal(shown[12, 112], colour_0)  # class 0's swatch
    np.testing.assert_array_equal(shown[37, 112], colour_1)


def test_predict_with_a_legend_but_no_class_names_says_what_to_pass(known_pair):
    with pytest.raises(ValueError, match="show_legends=True needs class_names"):
        ks.predict.predict(model=_bright_is_class_1(), inp=str(known_pair / "images" / "a.png"),
                           out_fname=str(known_pair / "x.png"), show_legends=True)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# data_utils.data_loader
# ---------------------------------------------------------------------------------------------


def test_verify_segmentation_dataset_accepts_a_good_folder(tiny_article_dir, capsys):
    images, masks = str(tiny_article_dir / "images"), str(tiny_article_dir / "masks")
    assert data_loader.verify_segmentation_dataset(images, masks, n_classes=2) is True
    assert "Dataset verified!" in capsys.readouterr().out


def test_verify_segmentation_dataset_names_a_label_outside_the_classes(known_pair, capsys):
    labels = np.full((4, 4), 3, np.uint8)
    cv2.imwrite(str(known_pair / "annotations" / "b.png"), labels)
    images, annotations = str(known_pair / "images"), str(known_pair / "annotations")
    assert data_loader.verify_segmentation_dataset(images, annotations, n_classes=3) is False
    printed = capsys.readouterr().out
    assert "b.png: mask values [3] are outside the label set (0..2)" in printed
    assert "Dataset not verified!" in printed
    assert data_loader.verify_segmentation_dataset(images, annotations, n_classes=100) is True


def test_get_pairs_from_paths_names_an_image_without_annotation(known_pair):
    (known_pair / "annotations" / "b.png").unlink()
    with pytest.raises(data_loader.DataLoaderError, match=r"segmentation found for image .*b\.png"):
        data_loader.get_pairs_from_paths(known_pair / "images", known_pair / "annotations")
    pairs = data_loader.get_pairs_from_paths(
        known_pair / "images", known_pair / "annotations", ignore_non_matching=True
    )
    assert [tuple(p.rsplit("/", 1)[1] for p in pair) for pair in pairs] == [("a.png", "a.png")]


def test_get_segmentation_array_is_one_hot_and_flattened():
    labels = np.array([[0, 1], [2, 1]], np.uint8)
    one_hot = data_loader.get_segmentation_array(labels, 3, width=2, height=2)
    np.testing.assert_array_equal(one_hot, [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]])
    assert data_loader.get_segmentation_array(labels, 3, 2, 2, no_reshape=True).shape == (2, 2, 3)


@pytest.mark.parametrize("do_augment", [False, True])
def test_image_segmentation_generator_yields_keras_segmentations_arrays(
    tiny_article_dir, do_augment
):
    batches = data_loader.image_segmentation_generator(
        str(tiny_article_dir / "images"), str(tiny_article_dir / "masks"), batch_size=3,
        n_classes=2, input_height=32, input_width=48, output_height=16, output_width=24,
        do_augment=do_augment,
    )  # fmt: skip
    x, y = next(batches)
    assert x.shape == (3, 32, 48, 3) and x.dtype == np.float32
    assert y.shape == (3, 16 * 24, 2)
    np.testing.assert_array_equal(y.sum(axis=-1), 1)  # one class per pixel
    # The tiny data's tumour (0/1 masks) shows up as class 1 within a few batches.
    assert any(next(batches)[1][..., 1].any() for _ in range(4))
