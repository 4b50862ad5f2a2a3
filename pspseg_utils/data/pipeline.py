"""Decoding a dataset once into arrays, then seeded, augmented batches over them: `SliceBatches`
in NumPy for every backend, and `make_dataset`, the same batches as a tf.data pipeline (the only
part of `data` that imports TensorFlow, when called)."""

from __future__ import annotations

import functools
import weakref
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


# Another scanner's look (augment_pair's scanner_variation_rate): a bias field that multiplies
# each sequence by about 1.4 or 1 / 1.4 at most, smooth over the slice (3 x 3 knots); a blur of
# up to 1 pixel (sigma); noise of up to 4% of the grey range (sigma).
BIAS_FIELD_KNOTS, MAX_BIAS, MAX_BLUR_SIGMA, MAX_NOISE_SIGMA = 3, 1.4, 1.0, 0.04 * 255


@functools.lru_cache(maxsize=8)  # the same few slice sizes, every varied slice
def _lagrange_weights(knots: int, size: int) -> np.ndarray:
    """(size, knots) float32, read-only: row i weighs the knots (spread evenly over 0..1, the
    first and last at the ends) to interpolate at point i of `size` (spread likewise) by the
    polynomial through them. A separable, smooth interpolation at a fraction of cv2.remap's cost
    on a slice."""
    points, nodes = np.linspace(0.0, 1.0, size), np.linspace(0.0, 1.0, knots)
    weights = np.ones((size, knots))
    for k in range(knots):
        for m in range(knots):
            if m != k:
                weights[:, k] *= (points - nodes[m]) / (nodes[k] - nodes[m])
    weights = weights.astype(np.float32)
    weights.flags.writeable = False  # shared by every call: the cache hands out this array
    return weights


def vary_scanner(image, log_bias, blur_sigma, noise):
    """`image` float32 (H, W, 3k) as another scanner might give it: each sequence multiplied by
    its bias field, exp of the polynomial through the `log_bias` (K, K, 3) knots (spread evenly
    from corner to corner), shared by the k slices; blurred by a Gaussian of `blur_sigma` pixels
    (none at 0); plus `noise` (H, W, 3k); clipped to 0..255. Pure: the randomness is in the
    arguments."""
    height, width, channels = image.shape
    knots = len(log_bias)
    rows, columns = _lagrange_weights(knots, height), _lagrange_weights(knots, width)
    down = np.tensordot(rows, np.asarray(log_bias, np.float32), axes=1)  # (H, K, 3)
    log_field = (down.transpose(0, 2, 1) @ columns.T).transpose(0, 2, 1)  # (H, W, 3)
    image = image * np.tile(np.exp(log_field), channels // 3)
    if blur_sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur_sigma, borderType=cv2.BORDER_REFLECT)
    return np.clip(image.reshape(height, width, channels) + noise, 0.0, 255.0).astype(np.float32)


def check_augmentation(*, missing_sequence_rate, max_gamma, scanner_variation_rate) -> None:
    """Raise ValueError unless both rates are in [0, 1] and `max_gamma` >= 1, the settings
    `augment_pair` accepts (checked before any work, by `SliceBatches` and `TrainConfig`)."""
    for name, rate in (("missing_sequence_rate", missing_sequence_rate),
                       ("scanner_variation_rate", scanner_variation_rate)):  # fmt: skip
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {rate!r}")
    if not max_gamma >= 1.0:
        raise ValueError(f"max_gamma must be >= 1, got {max_gamma!r}")


def augment_pair(
    image, mask, seed, missing_sequence_rate=0.0, max_gamma=2.0, scanner_variation_rate=0.0
):
    """Random left-right flip, rotation (+-10 deg), scale (0.9-1.1) and per-channel intensity
    gain (0.9-1.1) and gamma (uniform in [1 / max_gamma, max_gamma]), all drawn from `seed`
    (an int or a sequence of non-negative ints, as `np.random.default_rng` takes), so a given
    seed always gives the same sample.

    With probability `missing_sequence_rate`, FLAIR also replaces pre-contrast, post-contrast or
    both (one of the three, equally likely): the dataset's own convention for a missing sequence
    (15 of its 110 patients), which a network trained on complete slices has never seen. With
    probability `scanner_variation_rate`, the slice gets another scanner's look (`vary_scanner`:
    a smooth bias field per sequence, blur, noise; the bounds are the constants above). These
    are drawn after the rest, so a rate of 0 leaves every other draw as it was.

    NumPy draws the parameters and OpenCV does the pixel work (`_augment_arrays`), so every
    Keras backend gets the same samples, and on a CPU OpenCV is about 8x faster than
    TensorFlow's image kernels. Takes an image (H, W, 3k) (k slices: see `load_arrays`'
    context_slices), all moved and shaded alike, and a mask (H, W, 1), in 0..255, and returns
    them as float32.
    """
    rng = np.random.default_rng(seed)
    flip = rng.random() < 0.5
    angle = np.deg2rad(rng.uniform(-10.0, 10.0))
    scale = rng.uniform(0.9, 1.1)
    gain = rng.uniform(0.9, 1.1, size=3)
    gamma = rng.uniform(1.0 / max_gamma, max_gamma, size=3)
    missing = rng.random() < missing_sequence_rate
    flair_in_place_of = FLAIR_IN_PLACE_OF[rng.integers(len(FLAIR_IN_PLACE_OF))] & missing
    variation = None
    if scanner_variation_rate and rng.random() < scanner_variation_rate:
        knots = (BIAS_FIELD_KNOTS, BIAS_FIELD_KNOTS, 3)
        log_bias = rng.uniform(-np.log(MAX_BIAS), np.log(MAX_BIAS), size=knots)
        noise_sigma, blur_sigma = (
            rng.uniform(0.0, MAX_NOISE_SIGMA),
            rng.uniform(0.0, MAX_BLUR_SIGMA),
        )
        noise = noise_sigma * rng.standard_normal(np.shape(image), dtype=np.float32)
        variation = (log_bias, blur_sigma, noise)

    centre_y, centre_x = (np.array(image.shape[:2], np.float64) - 1.0) / 2.0
    # Output pixel (x, y) samples input at A (x - c) + c with A = R(angle) / scale, c the centre.
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    inverse_map = [
        cos,
        -sin,
        centre_x - cos * centre_x + sin * centre_y,
        sin,
        cos,
        centre_y - sin * centre_x - cos * centre_y,
    ]
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(np.round(image.astype(np.float32)), 0, 255).astype(np.uint8)
    mask = np.asarray(mask)[..., 0].astype(np.uint8)
    shading = (gain, gamma, flair_in_place_of, variation)
    return _augment_arrays(image, mask, flip, inverse_map, *shading)


def _augment_arrays(image, mask, flip, inverse_map, gain, gamma, flair_in_place_of, variation=None):
    """The pixel work of `augment_pair`: uint8 image (H, W, 3k) and mask (H, W) to float32
    (H, W, 3k) and (H, W, 1). Gain and gamma (3,) apply per sequence, to each of the k slices
    alike; then `vary_scanner(image, *variation)` unless `variation` is None; in each slice the
    sequences where `flair_in_place_of` (3,) is true get a copy of its (augmented) FLAIR.
    Deterministic: no randomness here."""
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
    if variation is not None:
        image = vary_scanner(image, *variation)
    by_slice = image.reshape(*image.shape[:2], slices, 3)  # a view: writes go to image
    by_slice[..., flair_in_place_of] = by_slice[..., 1:2]
    return image, mask[..., None].astype(np.float32)


class SliceBatches:
    """Batches of (image float32 (B, S, S, C) in 0..255, mask float32 (B, S, S, 1)) from
    in-memory arrays, numbered 0, 1, 2, ...: batch i depends only on the arrays, the settings
    and i. So tf.data (`make_dataset`), a Keras PyDataset on another backend, or a plain loop
    all get the same batches, and a run resumed at batch k starts at batch k.

    The slices are taken in passes over the data, each in its own seeded order with `shuffle`
    (else in order); with `repeat`, endlessly, batches running on across passes; without, one
    pass, its last batch smaller unless `drop_remainder`. With `augment`, the slice at position
    p of the stream is augmented with seed (seed, 1, p) (`augment_pair`), by `workers` threads
    (OpenCV's kernels release Python's lock, so threads run them in parallel).
    """

    def __init__(
        self,
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
        scanner_variation_rate: float = 0.0,
        workers: int = 1,
    ):
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        if not len(images):
            raise ValueError("no images to make batches of")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        check_augmentation(
            missing_sequence_rate=missing_sequence_rate,
            max_gamma=max_gamma,
            scanner_variation_rate=scanner_variation_rate,
        )
        if not (isinstance(seed, (int, np.integer)) and seed >= 0):
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.images, self.masks = images, masks
        self.batch_size, self.augment, self.shuffle, self.repeat = (
            batch_size,
            augment,
            shuffle,
            repeat,
        )
        self.seed, self.drop_remainder = int(seed), drop_remainder
        self.missing_sequence_rate, self.max_gamma = missing_sequence_rate, max_gamma
        self.scanner_variation_rate = scanner_variation_rate
        self.workers = workers

    @functools.cached_property
    def _pool(self) -> ThreadPoolExecutor:
        # One set of threads for the whole stream, not one per batch; shut down with it.
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="slice-batches")
        weakref.finalize(self, pool.shutdown, wait=False)
        return pool

    @property
    def num_batches(self) -> int | None:
        """Batches in the stream; None when it is endless (`repeat`)."""
        if self.repeat:
            return None
        whole, rest = divmod(len(self.images), self.batch_size)
        return whole + (1 if rest and not self.drop_remainder else 0)

    def order(self, epoch: int) -> np.ndarray:
        """The slice indices of pass `epoch`, (N,) int64: seeded with (seed, 0, epoch)."""
        if not self.shuffle:
            return np.arange(len(self.images))
        return np.random.default_rng((self.seed, 0, epoch)).permutation(len(self.images))

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        index = int(index)
        if index < 0 or (self.num_batches is not None and index >= self.num_batches):
            raise IndexError(f"batch {index} of a stream of {self.num_batches} batches")
        count = len(self.images)
        stop = (index + 1) * self.batch_size
        positions = np.arange(index * self.batch_size, stop if self.repeat else min(stop, count))
        epochs = positions // count
        orders = {epoch: self.order(epoch) for epoch in np.unique(epochs)}
        chosen = np.array([orders[e][p % count] for e, p in zip(epochs, positions, strict=True)])
        images, masks = self.images[chosen], self.masks[chosen][..., None]
        if not self.augment:
            return images.astype(np.float32), masks.astype(np.float32)

        def augmented(position: int, image: np.ndarray, mask: np.ndarray):
            settings = (self.missing_sequence_rate, self.max_gamma, self.scanner_variation_rate)
            return augment_pair(image, mask, (self.seed, 1, int(position)), *settings)

        if self.workers > 1:
            pairs = list(self._pool.map(augmented, positions, images, masks))
        else:
            pairs = list(map(augmented, positions, images, masks))
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def make_dataset(images: np.ndarray, masks: np.ndarray, *, first_batch: int = 0, **settings):
    """The batches of `SliceBatches(images, masks, **settings)` (batch_size, augment, shuffle,
    repeat, seed, drop_remainder, missing_sequence_rate, max_gamma, scanner_variation_rate) as a
    `tf.data.Dataset`, from batch `first_batch` on, made in parallel and prefetched, in order.

    Each batch is (image float32 (B, S, S, C) in 0..255, mask float32 (B, S, S, 1)), C = 3, or
    3 (1 + 2c) for images with context slices (see `load_arrays`). The arrays are already
    decoded, so the pipeline only gathers, augments and prefetches. Deterministic: the same
    seed gives the same batches in the same order, on every backend (see `SliceBatches`).
    """
    import tensorflow as tf

    batches = SliceBatches(images, masks, **settings)
    batch_dimension = batches.batch_size if batches.drop_remainder or batches.repeat else None
    image_shape = (batch_dimension, *images.shape[1:])
    mask_shape = (batch_dimension, *masks.shape[1:], 1)

    def load(index):
        image, mask = tf.numpy_function(
            batches.__getitem__, [index], [tf.float32, tf.float32], stateful=False
        )
        image.set_shape(image_shape)
        mask.set_shape(mask_shape)
        return image, mask

    stop = batches.num_batches if batches.num_batches is not None else np.iinfo(np.int64).max
    dataset = tf.data.Dataset.range(first_batch, stop).map(
        load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return dataset.prefetch(tf.data.AUTOTUNE)
