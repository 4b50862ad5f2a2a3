"""The article's code runs verbatim with only its import line changed, and the rest of the
keras_segmentation API it relies on (`model.train` keywords, `predict_segmentation`,
`predict_multiple`) behaves.

`vgg_pspnet` asks for ImageNet weights; the `offline` fixture takes the network and the weights
cache away, so every machine builds from random weights (with the builder's warning) and nothing
is downloaded.
"""

from __future__ import annotations

import csv
import json
import shutil

import cv2
import keras
import numpy as np
import pytest

import pspseg_utils
from pspseg_utils.models import PSPNet

SIZE = 48
OFFLINE_WARNING = "ignore:.*Continuing with random initial weights:UserWarning"


@pytest.fixture(scope="module")
def untrained():
    """An article-style binary model, never trained: for the calls that need no training."""
    keras.utils.set_random_seed(0)
    return pspseg_utils.models.pspnet.vgg_pspnet(
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
    import pspseg_utils as ks

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
    model = pspseg_utils.models.pspnet.vgg_pspnet(n_classes=2, input_height=SIZE, input_width=SIZE)
    model.train(
        train_images=images,
        train_annotations=masks,
        checkpoints_path=str(checkpoints),
        epochs=1,
        auto_resume_checkpoint=True,
        steps_per_epoch=2,
    )
    model = pspseg_utils.predict.model_from_checkpoint_path(str(checkpoints))
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
    model = pspseg_utils.models.pspnet.vgg_pspnet(
        n_classes=3, input_height=SIZE, input_width=SIZE, backbone_weights=None
    )
    assert model.n_classes == 3 and model.num_classes == 3
    _train_one_short_epoch(model, three_class_dir, tmp_path)
    mask = pspseg_utils.predict.predict(
        model=model, inp=str(three_class_dir / "images" / "p_0.png")
    )
    assert mask.shape == (64, 64) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) <= {0, 1, 2}


def test_a_model_wider_than_high_trains_and_predicts_at_the_images_size(tiny_article_dir, tmp_path):
    # keras_segmentation's own default model is 384 x 576: every image is resized to H x W.
    keras.utils.set_random_seed(0)
    model = pspseg_utils.models.pspnet.vgg_pspnet(
        n_classes=2, input_height=48, input_width=72, backbone_weights=None
    )
    _train_one_short_epoch(model, tiny_article_dir, tmp_path, do_augment=True)
    image = next((tiny_article_dir / "images").glob("*.png"))
    assert pspseg_utils.predict.predict(model=model, inp=str(image)).shape == (64, 64)


@pytest.mark.slow
def test_train_with_validation_batch_size_augmentation_and_an_old_keyword(
    tiny_article_dir, tmp_path
):
    keras.utils.set_random_seed(0)
    val_dir = _copy_some(tiny_article_dir, tmp_path / "val", 4)
    model = pspseg_utils.models.pspnet.vgg_pspnet(
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


def test_predict_segmentation(untrained, tiny_article_dir, tmp_path):
    image = sorted((tiny_article_dir / "images").glob("*.png"))[0]
    mask = untrained.predict_segmentation(inp=str(image), out_fname=str(tmp_path / "out.png"))
    assert mask.shape == (64, 64) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) <= {0, 1}
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED), mask)


def test_predict_multiple_writes_a_png_per_image(untrained, tiny_article_dir, tmp_path):
    inp_dir = _copy_some(tiny_article_dir, tmp_path / "in", 3) / "images"
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    masks = pspseg_utils.predict.predict_multiple(
        model=untrained, inp_dir=str(inp_dir), out_dir=str(out_dir)
    )
    names = sorted(p.name for p in inp_dir.glob("*.png"))
    assert sorted(p.name for p in out_dir.iterdir()) == names
    assert len(masks) == 3
    for name, mask in zip(names, masks, strict=True):
        written = cv2.imread(str(out_dir / name), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(written, mask)
        assert written.shape == (64, 64)


def test_predict_multiple_without_a_model_says_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match="pass model=... or checkpoints_path=..."):
        pspseg_utils.predict.predict_multiple(inp_dir=str(tmp_path))


def test_model_from_an_empty_checkpoints_path_says_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train with model\.train"):
        pspseg_utils.predict.model_from_checkpoint_path(str(tmp_path / "ckpts" / "brain"))
