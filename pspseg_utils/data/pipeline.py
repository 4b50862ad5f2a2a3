"""Decoding a dataset once into arrays, then a seeded tf.data pipeline over them with
augmentation; the only part of `data` that imports TensorFlow (when called)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from tqdm.auto import tqdm

from pspseg_utils.data.files import (
    DatasetError,
    context_offsets,
    nearest_existing,
    read_image,
    read_mask,
)
from pspseg_utils.data.layout import SliceRecord


def neighbour_positions(records: Sequence[SliceRecord], context_slices: int) -> np.ndarray:
    """Positions in `records` of each slice and its neighbours, int (N, 1 + 2 context_slices),
    in the order of `context_offsets`. A neighbour not in `records` (past a volume's first or
    last slice) is replaced by the nearest one that is, at worst the slice itself.

    Example: slices 0, 1, 2 of one patient with context_slices=1 -> [[0, 0, 1], [1, 0, 2],
    [2, 1, 2]].
    """
    position = {(r.patient_id, r.slice_index): i for i, r in enumerate(records)}
    rows = []
    for record in records:
        key = record.patient_id, record.slice_index

        def exists(offset: int, key=key) -> bool:
            return (key[0], key[1] + offset) in position

        rows.append(
            [
                position[key[0], key[1] + nearest_existing(offset, exists)]
                for offset in context_offsets(context_slices)
            ]
        )
    return np.array(rows, dtype=np.int64).reshape(len(records), -1)


def stack_context(images: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Each image with its neighbours as channels: images (N, H, W, 3) and positions (N, K) from
    `neighbour_positions` -> (N, H, W, 3K), the slices in the order of `positions`' columns."""
    return np.concatenate([images[positions[:, k]] for k in range(positions.shape[1])], axis=-1)


def load_arrays(
    records: Sequence[SliceRecord],
    *,
    image_size: int | tuple[int, int] | None = None,
    context_slices: int = 0,
    num_classes: int = 2,
    progress: bool = True,
    workers: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode every slice once into memory, resized to `image_size` if given: a side S (a square
    S x S) or (height, width).

    tf.io cannot decode TIFF, so OpenCV decodes here and tf.data streams the arrays. Images are
    resized with area averaging, masks with nearest neighbour (labels must stay labels). With
    `context_slices` c, each image also carries its c neighbours on each side among `records`.

    Returns:
        images uint8 (N, H, W, 3 (1 + 2c)), each slice in (pre, FLAIR, post) order, and masks
        uint8 (N, H, W) of the middle slice.
    """
    offsets = context_offsets(context_slices)  # checked before the slow part
    if not records:
        raise ValueError("load_arrays got no records; check the split and the data folder")
    shape = (image_size, image_size) if isinstance(image_size, int) else image_size
    if shape is not None and (len(shape) != 2 or min(shape) < 1):
        raise ValueError(f"image_size must be a side or (height, width), got {image_size!r}")

    def load(record: SliceRecord) -> tuple[np.ndarray, np.ndarray]:
        image = read_image(record.image_path)
        mask = read_mask(record.mask_path, num_classes=num_classes)
        if shape is not None and image.shape[:2] != tuple(shape):
            width_height = (shape[1], shape[0])  # OpenCV's order
            image = cv2.resize(image, width_height, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, width_height, interpolation=cv2.INTER_NEAREST)
        return image, mask

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pairs = list(
            tqdm(
                pool.map(load, records),
                total=len(records),
                desc="Loading slices",
                unit="slice",
                disable=not progress,
            )
        )
    shapes = {image.shape for image, _ in pairs}
    if len(shapes) > 1:
        raise DatasetError(
            [
                f"images have different sizes {sorted(shapes)}; pass image_size to "
                "resize them to one size"
            ]
        )
    images, masks = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    if len(offsets) > 1:
        images = stack_context(images, neighbour_positions(records, context_slices))
    return images, masks


# A slice with a missing sequence holds FLAIR in its place: pre-contrast, post-contrast or both.
FLAIR_IN_PLACE_OF = np.array([[True, False, False], [False, False, True], [True, False, True]])


def augment_pair(image, mask, seed, missing_sequence_rate=0.0, max_gamma=2.0):
    """Random left-right flip, rotation (+-10 deg), scale (0.9-1.1) and per-channel intensity
    gain (0.9-1.1) and gamma (uniform in [1 / max_gamma, max_gamma]), all from one stateless
    seed so a given seed always gives the same sample.

    With probability `missing_sequence_rate`, FLAIR also replaces pre-contrast, post-contrast or
    both (one of the three, equally likely): the dataset's own convention for a missing sequence
    (15 of its 110 patients), which a network trained on complete slices has never seen.

    TensorFlow draws the parameters; OpenCV does the pixel work (`_augment_arrays`), about 8x
    faster on a CPU than TensorFlow's ImageProjectiveTransformV3 and pow kernels. Takes an image
    (H, W, 3k) (k slices: see `load_arrays`' context_slices), all moved and shaded alike, and a
    mask (H, W, 1), in 0..255, and a stateless seed (2,) int64, and returns them as float32;
    runs in tf.data and eagerly alike.
    """
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(seed, num=7)
    centre_y, centre_x = tf.unstack((tf.cast(tf.shape(image)[:2], tf.float32) - 1.0) / 2.0)
    flip = tf.random.stateless_uniform([], seeds[0]) < 0.5

    angle = tf.random.stateless_uniform([], seeds[1], -10.0, 10.0) * (np.pi / 180.0)
    scale = tf.random.stateless_uniform([], seeds[2], 0.9, 1.1)
    # Output pixel (x, y) samples input at A (x - c) + c with A = R(angle) / scale, c the centre.
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    inverse_map = tf.stack(
        [
            cos,
            -sin,
            centre_x - cos * centre_x + sin * centre_y,
            sin,
            cos,
            centre_y - sin * centre_x - cos * centre_y,
        ]
    )
    gain = tf.random.stateless_uniform([3], seeds[3], 0.9, 1.1)
    gamma = tf.random.stateless_uniform([3], seeds[4], 1.0 / max_gamma, max_gamma)
    missing = tf.random.stateless_uniform([], seeds[5]) < missing_sequence_rate
    which = tf.random.stateless_uniform([], seeds[6], 0, len(FLAIR_IN_PLACE_OF), tf.int32)
    flair_in_place_of = tf.logical_and(missing, tf.gather(FLAIR_IN_PLACE_OF, which))

    image_shape, mask_shape = image.shape, mask.shape
    if image.dtype != tf.uint8:
        image = tf.saturate_cast(tf.round(tf.cast(image, tf.float32)), tf.uint8)
    image, mask = tf.numpy_function(
        _augment_arrays,
        [image, tf.cast(mask[..., 0], tf.uint8), flip, inverse_map, gain, gamma, flair_in_place_of],
        [tf.float32, tf.float32],
        stateful=False,
    )
    image.set_shape(image_shape)
    mask.set_shape(mask_shape)
    return image, mask


def _augment_arrays(image, mask, flip, inverse_map, gain, gamma, flair_in_place_of):
    """The pixel work of `augment_pair`: uint8 image (H, W, 3k) and mask (H, W) to float32
    (H, W, 3k) and (H, W, 1). Gain and gamma (3,) apply per sequence, to each of the k slices
    alike; in each slice the sequences where `flair_in_place_of` (3,) is true get a copy of its
    (augmented) FLAIR. Deterministic: no randomness here."""
    if flip:
        image, mask = image[:, ::-1], mask[:, ::-1]
    size = (image.shape[1], image.shape[0])
    matrix = np.asarray(inverse_map, np.float64).reshape(2, 3)  # output pixel -> input pixel

    def warp(x, how):
        flags = cv2.WARP_INVERSE_MAP | how
        return cv2.warpAffine(np.ascontiguousarray(x), matrix, size, flags=flags)

    # Slice by slice: OpenCV 5 rounds a 9-channel warp differently from a 3-channel one.
    three_channels = [image[..., i : i + 3] for i in range(0, image.shape[2], 3)]
    image = np.concatenate([warp(x, cv2.INTER_LINEAR) for x in three_channels], axis=-1)
    mask = warp(mask, cv2.INTER_NEAREST)
    # Gain then gamma, per channel, as a table over the 256 grey levels (borders stay 0).
    slices = image.shape[2] // 3
    levels = np.arange(256, dtype=np.float64)[:, None] / 255.0
    table = 255.0 * np.clip(levels * np.tile(gain, slices), 0.0, 1.0) ** np.tile(gamma, slices)
    image = cv2.LUT(image, table.astype(np.float32).reshape(256, 1, -1))
    by_slice = image.reshape(*image.shape[:2], slices, 3)  # a view: writes go to image
    by_slice[..., flair_in_place_of] = by_slice[..., 1:2]
    return image, mask[..., None].astype(np.float32)


def make_dataset(
    images: np.ndarray,
    masks: np.ndarray,
    *,
    batch_size: int = 8,
    augment: bool = False,
    shuffle: bool = False,
    repeat: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
    missing_sequence_rate: float = 0.0,
    max_gamma: float = 2.0,
):
    """A `tf.data.Dataset` of (image float32 (B, S, S, C) in 0..255, mask float32 (B, S, S, 1)),
    C = 3, or 3 (1 + 2c) for images with context slices (see `load_arrays`).

    The arrays are already decoded (see `load_arrays`), so the pipeline only shuffles, augments,
    batches and prefetches. Everything random is seeded, and the dataset is deterministic: the
    same seed gives the same batches in the same order. With `augment`, a share
    `missing_sequence_rate` of the slices have FLAIR in place of another sequence, and each
    sequence's contrast is bent by a gamma up to `max_gamma` (>= 1) or its inverse.
    """
    import tensorflow as tf

    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    if not 0.0 <= missing_sequence_rate <= 1.0:
        raise ValueError(f"missing_sequence_rate must be in [0, 1], got {missing_sequence_rate!r}")
    if not max_gamma >= 1.0:
        raise ValueError(f"max_gamma must be >= 1, got {max_gamma!r}")
    dataset = tf.data.Dataset.from_tensor_slices((images, masks[..., None]))
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    if augment:
        element_seeds = tf.data.Dataset.random(seed=seed).batch(2)
        dataset = tf.data.Dataset.zip((dataset, element_seeds)).map(
            lambda pair, s: augment_pair(pair[0], pair[1], s, missing_sequence_rate, max_gamma),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.float32)))
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
