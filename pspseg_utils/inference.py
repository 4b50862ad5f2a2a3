"""Inference: from a file, an array or a batch to a label mask at the image's own resolution.

The model sees each image resized to its input size; its probabilities are resized back to the
original size before thresholding, so masks line up with the scan a user gave.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import keras
import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from pspseg_utils import data, losses, metrics, models  # noqa: F401 - registers custom objects

__all__ = [
    "as_image_list",
    "load_model",
    "predict",
    "predict_probabilities",
    "largest_component",
    "overlay",
    "iter_predictions",
    "predict_files",
    "predict_dir",
]

OVERLAY_COLOUR = (255, 60, 60)


def load_model(path: str | Path) -> keras.Model:
    """Load a `.keras` model, or the best (else last) checkpoint of a run folder, safely.

    Raises:
        FileNotFoundError: nothing loadable at `path`, with what was looked for.
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
    return keras.saving.load_model(path, compile=False, safe_mode=True)


def as_image_list(inputs) -> tuple[list[np.ndarray], bool]:
    """Normalise predict's inputs (a path, an (H, W, 3) image, an (N, H, W, 3) batch, or a list
    of paths and images) to a list of (H, W, 3) arrays, and whether a single image was given."""
    if isinstance(inputs, (str, Path)):
        return [data.read_image(inputs)], True
    if isinstance(inputs, np.ndarray):
        if inputs.ndim == 3:
            return [inputs], True
        if inputs.ndim == 4:
            return list(inputs), False
        raise ValueError(f"expected an image (H, W, 3) or a batch (N, H, W, 3), got {inputs.shape}")
    if isinstance(inputs, Sequence):
        return [
            data.read_image(i) if isinstance(i, (str, Path)) else np.asarray(i) for i in inputs
        ], False
    raise ValueError(f"inputs must be a path, an array or a list of them, got {type(inputs)}")


def predict_probabilities(
    model: keras.Model, images: Sequence[np.ndarray], *, tta: bool = False, batch_size: int = 8
) -> list[np.ndarray]:
    """Class probabilities float32 (H, W, C) for each (H, W, 3) image, at its own size.

    With `tta`, the prediction is averaged with that of the left-right mirrored image.
    """
    height, width = model.input_shape[1], model.input_shape[2]
    for image in images:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"each image must be (H, W, 3), got {image.shape}")
    resized = np.stack(
        [
            cv2.resize(np.asarray(im, np.float32), (width, height), interpolation=cv2.INTER_AREA)
            for im in images
        ]
    )
    probabilities = model.predict(resized, batch_size=batch_size, verbose=0)
    if tta:
        mirrored = model.predict(resized[:, :, ::-1], batch_size=batch_size, verbose=0)
        probabilities = (probabilities + mirrored[:, :, ::-1]) / 2.0
    out = []
    for image, p in zip(images, probabilities, strict=True):
        p = cv2.resize(p, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
        out.append(p.reshape(image.shape[0], image.shape[1], -1).astype(np.float32))
    return out


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
    keep_largest: bool = False,
    return_probabilities: bool = False,
    batch_size: int = 8,
):
    """Predict label masks.

    Args:
        model: keras.Model. A segmentation model outputting probabilities (B, h, w, C).
        inputs: a path, an image array (H, W, 3), a batch (N, H, W, 3), or a list of these.
        threshold: float. Cut-off on P(tumour) for a 1-channel model (ignored for softmax).
        tta: bool. Average with the left-right mirrored prediction.
        keep_largest: bool. Keep only the largest connected region of each mask.
        return_probabilities: bool. Also return the probabilities (H, W, C) float32.

    Returns:
        A uint8 (H, W) label mask for a single input, else a list (or (N, H, W) array for an array
        batch); with return_probabilities, a (masks, probabilities) pair in the same form.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    images, single = as_image_list(inputs)
    probabilities = predict_probabilities(model, images, tta=tta, batch_size=batch_size)
    masks = [_to_labels(p, threshold) for p in probabilities]
    if keep_largest:
        masks = [largest_component(m) for m in masks]
    if single:
        masks, probabilities = masks[0], probabilities[0]
    elif isinstance(inputs, np.ndarray):
        masks, probabilities = np.stack(masks), np.stack(probabilities)
    return (masks, probabilities) if return_probabilities else masks


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    colour=OVERLAY_COLOUR,
    alpha: float = 0.35,
    outline: bool = True,
) -> np.ndarray:
    """The slice (its 3 channels shown as RGB) with the mask tinted and outlined.

    Returns:
        uint8 RGB (H, W, 3).
    """
    shown = np.ascontiguousarray(image if image.ndim == 3 else np.repeat(image[..., None], 3, -1))
    shown = shown.astype(np.uint8).copy()
    region = mask > 0
    tint = np.array(colour, np.float32)
    shown[region] = ((1 - alpha) * shown[region] + alpha * tint).astype(np.uint8)
    if outline:
        contours, _ = cv2.findContours(
            region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        cv2.drawContours(shown, contours, -1, tuple(int(c) for c in colour), 1)
    return shown


def iter_predictions(
    model: keras.Model,
    paths: Sequence[str | Path],
    *,
    threshold: float = 0.5,
    tta: bool = False,
    keep_largest: bool = False,
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "Predicting",
):
    """Yield (path, image, mask) for each image file, in order: `predict` on `batch_size` files
    at a time, so memory stays flat over a whole dataset, with a progress bar."""
    with tqdm(total=len(paths), desc=desc, unit="image", disable=not progress) as bar:
        for start in range(0, len(paths), batch_size):
            chunk = [Path(p) for p in paths[start : start + batch_size]]
            images = [data.read_image(p) for p in chunk]
            masks = predict(
                model,
                images,
                threshold=threshold,
                tta=tta,
                keep_largest=keep_largest,
                batch_size=batch_size,
            )
            yield from zip(chunk, images, masks, strict=True)
            bar.update(len(chunk))


def predict_files(
    model: keras.Model, files: Sequence[str | Path], out_dir: str | Path, **options
) -> list[Path]:
    """Predict each image file, writing `out_dir/masks/<stem>.png` (labels 0/1, the article's
    format) and `out_dir/overlays/<stem>.png`. `options` are those of `iter_predictions`
    (threshold, tta, keep_largest, batch_size, progress).

    Returns:
        The written mask paths.
    """
    out_dir = Path(out_dir)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    (out_dir / "overlays").mkdir(parents=True, exist_ok=True)
    written = []
    for path, image, mask in iter_predictions(model, files, **options):
        target = out_dir / "masks" / f"{path.stem}.png"
        cv2.imwrite(str(target), mask)
        cv2.imwrite(str(out_dir / "overlays" / f"{path.stem}.png"), overlay(image, mask)[..., ::-1])
        written.append(target)
    return written


def predict_dir(
    model: keras.Model, in_dir: str | Path, out_dir: str | Path, **options
) -> list[Path]:
    """`predict_files` on every image in `in_dir` (PNG/TIFF/JPEG, skipping `*_mask.*` files)."""
    files = data.find_images(in_dir)
    if not files:
        raise FileNotFoundError(f"{in_dir}: no images (.png, .tif, .jpg) to predict")
    return predict_files(model, files, out_dir, **options)
