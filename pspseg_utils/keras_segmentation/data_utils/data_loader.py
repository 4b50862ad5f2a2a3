"""keras_segmentation's `data_utils.data_loader`: pairing, checking and streaming an image /
annotation folder pair, with its semantics (labels in the first channel of a mask; targets
one-hot and flattened to (output_height * output_width, n_classes)).

One extension: a two-class mask may be stored as 0/255 as well as 0/1 (LGG masks are), as
everywhere in pspseg.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from pspseg_utils import data

__all__ = [
    "AUGMENTATION_NAMES",
    "DataLoaderError",
    "class_colors",
    "get_image_array",
    "get_pairs_from_paths",
    "get_segmentation_array",
    "image_segmentation_generator",
    "verify_segmentation_dataset",
]

DATA_LOADER_SEED = 0
# keras_segmentation's colours, drawn the same way, so outputs look as they did: BGR.
_colour_draws = random.Random(DATA_LOADER_SEED)
class_colors = [tuple(_colour_draws.randint(0, 255) for _ in range(3)) for _ in range(5000)]
ACCEPTABLE_IMAGE_FORMATS = (".jpg", ".jpeg", ".png", ".bmp")
ACCEPTABLE_SEGMENTATION_FORMATS = (".png", ".bmp")
# keras_segmentation's imgaug pipelines, by name; each maps to pspseg's augmentation here.
AUGMENTATION_NAMES = ("aug_all", "aug_all2", "aug_geometric", "aug_non_geometric")


class DataLoaderError(Exception):
    """A folder pair that cannot be paired (keras_segmentation's exception)."""


def check_augmentation_name(name: str) -> None:
    if name not in AUGMENTATION_NAMES:
        raise ValueError(
            f"augmentation_name must be one of {list(AUGMENTATION_NAMES)}, got {name!r}"
        )


def _files(folder, suffixes) -> dict[str, Path]:
    return {p.stem: p for p in sorted(Path(folder).iterdir())
            if p.is_file() and p.suffix.lower() in suffixes}  # fmt: skip


def get_pairs_from_paths(
    images_path, segs_path, ignore_non_matching=False
) -> list[tuple[str, str]]:
    """(image path, annotation path) for every image of `images_path`, matched by file stem.

    Raises:
        DataLoaderError: an image without an annotation, unless `ignore_non_matching`.
    """
    images = _files(images_path, ACCEPTABLE_IMAGE_FORMATS)
    annotations = _files(segs_path, ACCEPTABLE_SEGMENTATION_FORMATS)
    pairs = []
    for stem, image in images.items():
        if stem in annotations:
            pairs.append((str(image), str(annotations[stem])))
        elif not ignore_non_matching:
            raise DataLoaderError(f"No corresponding segmentation found for image {image}.")
    return pairs


def _read(image_input, flags: int) -> np.ndarray:
    if isinstance(image_input, np.ndarray):
        return image_input
    if isinstance(image_input, (str, Path)):
        image = cv2.imread(str(image_input), flags)
        if image is None:
            raise DataLoaderError(f"{image_input}: missing or not an image")
        return image
    raise DataLoaderError(f"Can't process input type {type(image_input)}")


def get_image_array(image_input, width, height, imgNorm="sub_mean", ordering="channels_last"):
    """A BGR image (array or path) as keras_segmentation fed its models: resized to (height,
    width), float32; "sub_mean" subtracts ImageNet's BGR means and flips to RGB, "divide" scales
    to 0..1, "sub_and_divide" to -1..1. A pspseg PSPNet standardises each image itself, so any
    of these gives it the same input."""
    image = cv2.resize(_read(image_input, cv2.IMREAD_COLOR), (width, height)).astype(np.float32)
    image = np.atleast_3d(image)
    if imgNorm == "sub_mean":
        image = (image - np.float32([103.939, 116.779, 123.68])[: image.shape[2]])[..., ::-1]
    elif imgNorm == "divide":
        image = image / 255.0
    elif imgNorm == "sub_and_divide":
        image = image / 127.5 - 1
    else:
        raise ValueError(
            f"imgNorm must be 'sub_mean', 'divide' or 'sub_and_divide', got {imgNorm!r}"
        )
    return np.moveaxis(image, 2, 0) if ordering == "channels_first" else image


def get_segmentation_array(image_input, nClasses, width, height, no_reshape=False):
    """One-hot float64 (height * width, nClasses) of an annotation's first channel, resized with
    nearest neighbour; (height, width, nClasses) with `no_reshape`. A two-class 0/255 mask
    counts 255 as class 1."""
    labels = cv2.resize(_read(image_input, cv2.IMREAD_COLOR), (width, height),
                        interpolation=cv2.INTER_NEAREST)  # fmt: skip
    labels = data.binary_as_labels(labels[..., 0] if labels.ndim == 3 else labels, nClasses)
    one_hot = (labels[..., None] == np.arange(nClasses)).astype(np.float64)
    return one_hot if no_reshape else one_hot.reshape(width * height, nClasses)


def verify_segmentation_dataset(images_path, segs_path, n_classes, show_all_errors=False) -> bool:
    """True if every image has an annotation of its size with labels below `n_classes`; else
    prints what is wrong (the first problem, or all with `show_all_errors`) and returns False."""
    try:
        data.find_pairs(images_path, segs_path, num_classes=n_classes, progress=True)
    except data.DatasetError as error:
        problems = error.problems if show_all_errors else error.problems[:1]
        print("\n".join(problems))
        print("Dataset not verified!")
        return False
    print("Dataset verified! ")
    return True


def image_segmentation_generator(
    images_path,
    segs_path,
    batch_size,
    n_classes,
    input_height,
    input_width,
    output_height,
    output_width,
    do_augment=False,
    augmentation_name="aug_all",
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless batches (X float32 (B, input_height, input_width, 3) from `get_image_array`,
    Y float64 (B, output_height * output_width, n_classes) one-hot), cycling through the pairs in
    an order shuffled with keras_segmentation's seed. With `do_augment`, each pair is moved and
    shaded by pspseg's augmentation (`data.augment_pair`) before resizing."""
    check_augmentation_name(augmentation_name)
    pairs = get_pairs_from_paths(images_path, segs_path)
    random.Random(DATA_LOADER_SEED).shuffle(pairs)
    draw = 0
    while True:
        images, targets = [], []
        for _ in range(batch_size):
            image_path, seg_path = pairs[draw % len(pairs)]
            image, seg = _read(image_path, cv2.IMREAD_COLOR), _read(seg_path, cv2.IMREAD_COLOR)
            if do_augment:
                image, seg = _augmented(image, seg[..., 0], seed=draw)
            images.append(get_image_array(image, input_width, input_height))
            targets.append(get_segmentation_array(seg, n_classes, output_width, output_height))
            draw += 1
        yield np.array(images), np.array(targets)


def _augmented(image: np.ndarray, labels: np.ndarray, *, seed: int):
    """pspseg's augmentation of one BGR image and its labels, back as uint8 (H, W, 3) each."""
    moved, moved_labels = data.augment_pair(image, labels[..., None], np.array([seed, 0]))
    moved = np.clip(np.round(np.asarray(moved)), 0, 255).astype(np.uint8)
    return moved, np.repeat(np.asarray(moved_labels).astype(np.uint8), 3, axis=-1)
