"""Inference: from a file, an array or a batch to a label mask at the image's own resolution.

The model sees each image resized to its input size; its probabilities are resized back to the
original size before thresholding, so masks line up with the scan a user gave. With several
`scales`, a PSPNet also sees it at other sizes (copies of it with the same weights) and the
probabilities are averaged: multi-scale testing, as the PSPNet paper evaluates.
"""

from __future__ import annotations

import numbers
import zipfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import keras
import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from pspseg_utils import data, losses, metrics, models, rules  # noqa: F401 - registers custom objects

__all__ = [
    "as_image_list",
    "context_slices_of",
    "mask_labels_of",
    "load_model",
    "check_segmentation_model",
    "predict",
    "predict_probabilities",
    "at_scales",
    "largest_component",
    "overlay",
    "iter_predictions",
    "predict_files",
    "predict_dir",
]


def load_model(path: str | Path) -> keras.Model:
    """Load a `.keras` model, or the best (else last) checkpoint of a run folder, safely, and
    check that it is a segmentation model (`check_segmentation_model`).

    Raises:
        FileNotFoundError: nothing loadable at `path`, with what was looked for.
        ValueError: the file is empty, cut short or damaged, or holds another kind of model.
    """
    path = Path(path)
    if path.is_dir():
        candidates = [path / "best.keras", path / "last.keras"]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise FileNotFoundError(
                f"{path} has no best.keras or last.keras; train first (`pspseg train`)"
            )
        path = found
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file; pass a .keras file or a run folder")
    damaged = (
        f"{path} is not a complete .keras file ({path.stat().st_size} bytes): it was cut short "
        "or damaged, e.g. by an interrupted copy or a full disk; copy or export it again"
    )
    damage = data.archive_damage(path)
    if damage:
        raise ValueError(f"{damaged} ({damage})")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except (zipfile.BadZipFile, EOFError, KeyError, OSError) as error:
        raise ValueError(f"{damaged} ({type(error).__name__}: {error})") from error
    check_segmentation_model(model, path)
    return model


def check_segmentation_model(model: keras.Model, source: str | Path = "the model") -> None:
    """Raise ValueError, saying what was found, unless `model` is one pspseg can use: one input
    (B, H, W, 3 (1 + 2c)) of a known size, and an output (B, H, W, classes) of the same size."""
    found = f"it takes {tuple(model.inputs[0].shape)} and gives {tuple(model.outputs[0].shape)}"
    wanted = (
        "a segmentation model takes (batch, height, width, 3) slices, or 9, 15, ... channels "
        "with neighbouring slices, and gives (batch, height, width, classes)"
    )
    inputs, output = model.inputs[0].shape, model.outputs[0].shape
    if len(model.inputs) != 1 or len(inputs) != 4 or rules.context_slices_for(inputs[3]) is None:
        raise ValueError(f"{source} is not a segmentation model for these scans: {found}; {wanted}")
    if len(output) != 4 or tuple(output[1:3]) != tuple(inputs[1:3]):
        raise ValueError(f"{source} is not a segmentation model: {found}; {wanted}")
    if None in tuple(inputs[1:3]):
        raise ValueError(
            f"{source} takes any input size ({found}); pspseg resizes slices to the model's own "
            "size, so save it with a fixed one, e.g. keras.Input((256, 256, 3))"
        )


def mask_labels_of(model: keras.Model) -> int:
    """How many labels its masks hold: the classes of a softmax output, 2 for a sigmoid one
    (tumour or not); what `data.read_mask`'s `num_classes` takes."""
    return rules.mask_labels(model.outputs[0].shape[-1])


def context_slices_of(model: keras.Model) -> int:
    """How many neighbouring slices on each side the model takes with each slice: its input has
    3 (1 + 2c) channels (see `data.load_arrays`); 0 for a model of single slices."""
    return rules.context_slices_for(model.input_shape[-1])


def as_image_list(inputs, *, context_slices: int = 0) -> tuple[list[np.ndarray], bool]:
    """Normalise predict's inputs (a path, an (H, W, C) image, an (N, H, W, C) batch, or a list
    of paths and images) to a list of (H, W, C) arrays, and whether a single image was given.
    Paths are read with their `context_slices` neighbours on each side (`data.read_slice`)."""
    if isinstance(inputs, (str, Path)):
        return [data.read_slice(inputs, context_slices=context_slices)], True
    if isinstance(inputs, np.ndarray):
        if inputs.ndim == 3:
            return [inputs], True
        if inputs.ndim == 4:
            return list(inputs), False
        raise ValueError(f"expected an image (H, W, 3) or a batch (N, H, W, 3), got {inputs.shape}")
    if isinstance(inputs, Sequence):
        return [
            data.read_slice(i, context_slices=context_slices)
            if isinstance(i, (str, Path))
            else np.asarray(i)
            for i in inputs
        ], False
    raise ValueError(f"inputs must be a path, an array or a list of them, got {type(inputs)}")


def at_scales(model: keras.Model, scales: Sequence[float]) -> list[keras.Model]:
    """One network per scale: `model` itself for 1, else `model.resized` to its input size times
    the scale, rounded to a multiple of its output stride (a PSPNet's only).

    Example: a 128 x 128 model at scales (1, 1.5) -> [model, its 192 x 192 copy].
    """
    scales = tuple(scales)
    if not scales or not all(isinstance(s, numbers.Real) and s > 0 for s in scales):
        raise ValueError(f"scales must be one or more positive numbers, got {scales!r}")
    networks = []
    for scale in scales:
        if scale == 1:
            networks.append(model)
            continue
        if not isinstance(model, models.PSPNet):
            raise ValueError(
                f"prediction at scale {scale} needs a pspseg PSPNet, which can be resized; got "
                f"{type(model).__name__}: predict at scales=(1,) (--scales 1)"
            )
        stride = model.output_stride
        height, width = (
            max(stride, round(scale * n / stride) * stride)
            for n in (model.input_height, model.input_width)
        )
        networks.append(model.resized(height, width))
    return networks


def predict_probabilities(
    model: keras.Model,
    images: Sequence[np.ndarray],
    *,
    tta: bool = False,
    scales: Sequence[float] = (1.0,),
    batch_size: int = 8,
) -> list[np.ndarray]:
    """Class probabilities float32 (H, W, C) for each (H, W, channels) image, at its own size;
    channels is the model's: 3, or more for a model that takes neighbouring slices.

    With `tta`, the prediction is averaged with that of the left-right mirrored image; with
    several `scales`, with those of the image resized to each scale (`at_scales`).
    """
    return _probabilities(at_scales(model, scales), images, tta=tta, batch_size=batch_size)


def _probabilities(
    networks: Sequence[keras.Model], images: Sequence[np.ndarray], *, tta: bool, batch_size: int
) -> list[np.ndarray]:
    """`predict_probabilities` averaged over `networks` (one model at several input sizes)."""
    channels = networks[0].input_shape[-1]
    for image in images:
        if image.ndim != 3 or image.shape[2] != channels:
            raise ValueError(_channels_message(image.shape, context_slices_of(networks[0])))
    images = [np.asarray(image, np.float32) for image in images]
    total = [0.0] * len(images)
    for network in networks:
        height, width = network.input_shape[1:3]
        resized = np.stack([_resize_area(image, (width, height)) for image in images])
        probabilities = network.predict(resized, batch_size=batch_size, verbose=0)
        if tta:
            mirrored = network.predict(resized[:, :, ::-1], batch_size=batch_size, verbose=0)
            probabilities = (probabilities + mirrored[:, :, ::-1]) / 2.0
        for index, (image, p) in enumerate(zip(images, probabilities, strict=True)):
            p = cv2.resize(p, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
            total[index] = total[index] + p.reshape(image.shape[0], image.shape[1], -1)
    return [(t / len(networks)).astype(np.float32) for t in total]


def _resize_area(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """cv2.resize by area averaging, one slice (3 channels) at a time: OpenCV's takes up to 4."""
    return np.concatenate(
        [
            cv2.resize(
                np.ascontiguousarray(image[..., start : start + 3]),
                size,
                interpolation=cv2.INTER_AREA,
            )
            for start in range(0, image.shape[2], 3)
        ],
        axis=-1,
    )


def _channels_message(shape: tuple, context_slices: int) -> str:
    if not context_slices:
        return f"each image must be (H, W, 3), got {shape}"
    return (
        f"this model takes each slice with its {context_slices} neighbour(s) on each side: "
        f"images (H, W, {rules.channels_for(context_slices)}), got {shape}; pass file paths "
        "(neighbours are found by name), or read them with "
        f"pspseg_utils.data.read_slice(path, context_slices={context_slices})"
    )


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep only the largest connected foreground region of a label mask (others -> 0).

    `mask` is one slice (H, W) or a patient's volume (S, H, W) of consecutive slices; pixels
    touching at an edge or a corner are connected (8 neighbours in a slice, 26 in a volume).
    An empty mask or a single region comes back unchanged.
    """
    regions, count = ndimage.label(mask > 0, structure=np.ones((3,) * mask.ndim, bool))
    if count <= 1:
        return mask
    largest = 1 + int(np.argmax(np.bincount(regions.ravel())[1:]))
    return np.where(regions == largest, mask, 0).astype(mask.dtype)


def _to_labels(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    if probabilities.shape[-1] == 1:
        return (probabilities[..., 0] >= threshold).astype(np.uint8)
    return np.argmax(probabilities, axis=-1).astype(np.uint8)


def predict(
    model: keras.Model,
    inputs,
    *,
    threshold: float = 0.5,
    tta: bool = False,
    scales: Sequence[float] = (1.0,),
    keep_largest: bool = False,
    return_probabilities: bool = False,
    batch_size: int = 8,
):
    """Predict label masks.

    Args:
        model: keras.Model. A segmentation model outputting probabilities (B, h, w, C).
        inputs: a path, an image array (H, W, 3), a batch (N, H, W, 3), or a list of these; for
            a model that takes neighbouring slices, paths (read with their neighbours, see
            `data.read_slice`) or arrays of its channels.
        threshold: float. Cut-off on P(tumour) for a 1-channel model (ignored for softmax).
        tta: bool. Average with the left-right mirrored prediction.
        scales: floats. Average with the predictions at these multiples of the model's input
            size (`at_scales`; a PSPNet's only); (1,): its input size alone.
        keep_largest: bool. Keep only the largest connected region of each mask.
        return_probabilities: bool. Also return the probabilities (H, W, C) float32.

    Returns:
        A uint8 (H, W) label mask for a single input, else a list (or (N, H, W) array for an array
        batch); with return_probabilities, a (masks, probabilities) pair in the same form.

    Raises:
        ValueError: a threshold outside (0, 1), an image with NaN or infinite values, or scales
            other than 1 for a model that is not a PSPNet.
    """
    _check_threshold(threshold)
    images, single = as_image_list(inputs, context_slices=context_slices_of(model))
    for index, image in enumerate(images):  # NaN would pass through as a plausible mask
        bad = np.size(image) - np.count_nonzero(np.isfinite(image))
        if bad:
            raise ValueError(
                f"image {index} has {bad} NaN or infinite pixel values: its mask would be "
                "meaningless; fix or replace them (e.g. np.nan_to_num) before predicting"
            )
    masks, probabilities = _masks(
        at_scales(model, scales), images, threshold, tta, keep_largest, batch_size
    )
    if single:
        masks, probabilities = masks[0], probabilities[0]
    elif isinstance(inputs, np.ndarray):
        masks, probabilities = np.stack(masks), np.stack(probabilities)
    return (masks, probabilities) if return_probabilities else masks


def _check_threshold(threshold: float) -> None:
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")


def _masks(networks, images, threshold, tta, keep_largest, batch_size):
    """(label masks, probabilities) of `images`, the body of `predict` once the networks of its
    scales are built (`iter_predictions` builds them once for all its batches)."""
    probabilities = _probabilities(networks, images, tta=tta, batch_size=batch_size)
    masks = [_to_labels(p, threshold) for p in probabilities]
    if keep_largest:
        masks = [largest_component(m) for m in masks]
    return masks, probabilities


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    colour=rules.PREDICTION_COLOUR,
    alpha: float = 0.4,
    outline: bool = False,
    truth: np.ndarray | None = None,
    truth_colour=rules.TRUTH_COLOUR,
    thickness: int = 1,
    grey: bool = True,
) -> np.ndarray:
    """The slice in grey with `mask` (the prediction) as a translucent fill and, if given, the
    border of `truth` drawn over it: the course's colour-blind-safe scheme (rules.py's colours).

    The grey is the slice's FLAIR channel (`rules.DISPLAY_CHANNEL`) for a slice of several
    channels, the slice itself for one of a single channel; `grey=False` draws on a 3-channel
    image as given (one already drawn on). Inside `mask` each pixel becomes (1 - alpha) x grey +
    alpha x `colour`; `outline` also draws the mask's own border in `colour`. `truth`'s outer
    border is drawn `thickness` pixels wide in `truth_colour`, last, so it shows on the fill.

    Returns:
        uint8 RGB (H, W, 3).
    """
    if image.ndim == 2:
        shown = np.repeat(image[..., None], 3, -1)
    elif grey:
        channel = rules.DISPLAY_CHANNEL if image.shape[-1] > rules.DISPLAY_CHANNEL else 0
        shown = np.repeat(image[..., channel : channel + 1], 3, -1)
    else:
        shown = image[..., :3]
    shown = np.ascontiguousarray(shown).astype(np.uint8).copy()
    region = mask > 0
    tint = np.array(colour, np.float32)
    shown[region] = ((1 - alpha) * shown[region] + alpha * tint).astype(np.uint8)
    borders = [(region, colour)] if outline else []
    if truth is not None:
        borders.append((truth > 0, truth_colour))
    for border, border_colour in borders:
        contours, _ = cv2.findContours(
            border.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        cv2.drawContours(shown, contours, -1, tuple(int(c) for c in border_colour), thickness)
    return shown


def iter_predictions(
    model: keras.Model,
    paths: Sequence[str | Path],
    *,
    threshold: float = 0.5,
    tta: bool = False,
    scales: Sequence[float] = (1.0,),
    keep_largest: bool = False,
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "Predicting",
):
    """Yield (path, image, mask) for each image file, in order: `predict` on `batch_size` files
    at a time, so memory stays flat over a whole dataset, with a progress bar. The image is the
    slice itself, uint8 (H, W, 3), also where the model took its neighbours too."""
    _check_threshold(threshold)
    context_slices = context_slices_of(model)
    networks = at_scales(model, scales)
    with tqdm(total=len(paths), desc=desc, unit="image", disable=not progress) as bar:
        for start in range(0, len(paths), batch_size):
            chunk = [Path(p) for p in paths[start : start + batch_size]]
            images = [data.read_slice(p, context_slices=context_slices) for p in chunk]
            masks, _ = _masks(networks, images, threshold, tta, keep_largest, batch_size)
            yield from zip(chunk, (image[..., :3] for image in images), masks, strict=True)
            bar.update(len(chunk))


def predict_files(
    model: keras.Model, files: Sequence[str | Path], out_dir: str | Path, **options
) -> list[Path]:
    """Predict each image file, writing `out_dir/masks/<stem>.png` (labels 0/1, the article's
    format) and `out_dir/overlays/<stem>.png`. `options` are those of `iter_predictions`
    (threshold, tta, scales, keep_largest, batch_size, progress). Two files with one stem are
    refused (ValueError) before anything is written; a file that cannot be written (a full disk)
    stops it with an OSError naming that file, and none is left partial.

    Returns:
        The written mask paths.
    """
    by_stem = {}
    for path in map(Path, files):
        if path.stem in by_stem:  # both would be written to the same masks/<stem>.png
            raise ValueError(
                f"{by_stem[path.stem]} and {path} have the same name, {path.stem}: their masks "
                "would overwrite each other; predict them into separate --out folders"
            )
        by_stem[path.stem] = path
    out_dir = Path(out_dir)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    (out_dir / "overlays").mkdir(parents=True, exist_ok=True)
    written = []
    for path, image, mask in iter_predictions(model, files, **options):
        target = data.write_image(out_dir / "masks" / f"{path.stem}.png", mask)
        data.write_image(out_dir / "overlays" / f"{path.stem}.png", overlay(image, mask)[..., ::-1])
        written.append(target)
    return written


def predict_dir(
    model: keras.Model, in_dir: str | Path, out_dir: str | Path, **options
) -> list[Path]:
    """`predict_files` on every image in `in_dir` (PNG/TIFF/JPEG; masks skipped as
    `data.find_images` does)."""
    files = data.find_images(in_dir)
    if not files:
        raise FileNotFoundError(f"{in_dir}: no images (.png, .tif, .jpg) to predict")
    return predict_files(model, files, out_dir, **options)
