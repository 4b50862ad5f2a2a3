"""Reading and writing single files: every check in order (exists, not empty, decodes,
shape), every error naming the file and the fix; a file is written whole or not at all."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

# A slice file of the Kaggle layout: <patient>_<n>, its neighbours <patient>_<n±1>.
KAGGLE_SLICE = re.compile(r"^(?P<stem>.+)_(?P<index>\d+)$")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
_MAX_PROBLEMS_SHOWN = 20


class DatasetError(ValueError):
    """A dataset that cannot be used as it is; `problems` lists every file at fault and the fix."""

    def __init__(self, problems: Sequence[str], *, hint: str = ""):
        self.problems = list(problems)
        shown = self.problems[:_MAX_PROBLEMS_SHOWN]
        lines = [f"{len(self.problems)} problem(s) in the dataset:"] + [f"  - {p}" for p in shown]
        if len(self.problems) > len(shown):
            lines.append(f"  ... and {len(self.problems) - len(shown)} more")
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


def _decode(path: Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise DatasetError([f"{path}: file not found"])
    if path.stat().st_size == 0:
        raise DatasetError([f"{path}: file is empty; re-download or re-export it"])
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise DatasetError(
            [
                f"{path}: not a readable image (corrupt, or not PNG/TIFF/JPEG); "
                "re-export or delete it"
            ]
        )
    if array.dtype != np.uint8:
        raise DatasetError(
            [
                f"{path}: pixel type {array.dtype}, expected 8-bit; "
                "rescale to 0..255 and save as uint8"
            ]
        )
    return array


def read_image(path: str | Path) -> np.ndarray:
    """Read a 3-channel slice as uint8 (H, W, 3) in the dataset's order (pre, FLAIR, post).

    Raises:
        DatasetError: the file is missing, empty, unreadable, not 8-bit, grayscale or RGBA.
    """
    image = _decode(Path(path))
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels != 3:
        kind = {1: "grayscale", 2: "grayscale+alpha", 4: "RGBA"}.get(
            channels, f"{channels}-channel"
        )
        raise DatasetError(
            [
                f"{path}: {kind} image, expected 3 channels (pre-contrast, FLAIR, post-contrast); "
                "save it with exactly 3 channels (e.g. cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))"
            ]
        )
    return np.ascontiguousarray(image[..., ::-1])  # OpenCV decodes BGR


def write_failure(error: OSError, path: str | Path) -> str:
    """One line that says why `path` could not be written, and what to do about it."""
    fixes = {
        errno.ENOSPC: "the disk is full: free some space, or write somewhere else",
        errno.EDQUOT: "the disk quota is used up: free some space, or write somewhere else",
        errno.EACCES: "no permission to write there: choose a folder you can write to",
        errno.EPERM: "no permission to write there: choose a folder you can write to",
        errno.EROFS: "the file system is read-only: choose another folder",
        errno.ENOTDIR: "a file stands where a folder is needed: choose another path",
        errno.EEXIST: "a file stands where a folder is needed: choose another path",
        errno.EISDIR: "a folder stands where the file should go: choose another path",
    }
    why = fixes.get(error.errno, error.strerror or str(error))
    return f"could not write {path}: {why}"


def archive_damage(path: str | Path) -> str | None:
    """Why the zip archive at `path` (a `.keras` file is one) is damaged, or None if it is whole:
    every member's checksum is verified, since Keras 3.13 loads a file with flipped bits
    without a word."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        return f"{type(error).__name__}: {error}"
    return f"{bad} fails its checksum" if bad else None


def write_file(path: str | Path, content: bytes) -> Path:
    """Write `content` to `path` whole or not at all: to a hidden file beside it, then renamed
    over it, so a full disk or a read-only folder never leaves a partial or empty file there.

    Raises:
        OSError: the file could not be written; the message names it and the fix.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_bytes(content)
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise OSError(error.errno, write_failure(error, path)) from error
    return path


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write `image` to `path` (format from its suffix; a 3-channel image is taken as BGR, as
    OpenCV does), whole or not at all (`write_file`).

    Raises:
        OSError: the file could not be written; the message names it and the fix.
        ValueError: OpenCV cannot encode this image in that format.
    """
    encoded, buffer = cv2.imencode(Path(path).suffix, image)
    if not encoded:
        raise ValueError(
            f"{path}: cannot encode a {image.dtype} {image.shape} image as such a file"
        )
    return write_file(path, buffer.tobytes())


def context_offsets(context_slices: int) -> list[int]:
    """The slice offsets stacked as channels, the slice itself first: 1 -> [0, -1, 1],
    2 -> [0, -1, 1, -2, 2]. Each offset brings that slice's 3 sequences, so the first 3 channels
    are always the slice itself (what overlays and figures show)."""
    if (
        isinstance(context_slices, bool)
        or not isinstance(context_slices, int)
        or context_slices < 0
    ):
        raise ValueError(f"context_slices must be an integer >= 0, got {context_slices!r}")
    return [0] + [sign * k for k in range(1, context_slices + 1) for sign in (-1, 1)]


def nearest_existing(offset: int, exists) -> int:
    """`offset` if that slice exists, else the nearest one towards the slice itself (offset 0):
    past the first or last slice of a volume, the edge slice stands in for the missing ones."""
    while offset and not exists(offset):
        offset -= 1 if offset > 0 else -1
    return offset


def read_slice(path: str | Path, *, context_slices: int = 0) -> np.ndarray:
    """Read a slice with its neighbours: uint8 (H, W, 3 (1 + 2 context_slices)).

    Neighbours are found by name, as the Kaggle layout numbers them: `<patient>_<n>.tif` has
    `<patient>_<n-1>.tif` and `<patient>_<n+1>.tif` beside it; zero-padded numbers too
    (`scan_010.png` has `scan_009.png`, looked for before `scan_9.png`). Where a neighbour is
    missing (the first or last slice, or a name without a number) the nearest existing slice,
    at worst the slice itself, takes its place. context_slices=0 is `read_image`.

    Raises:
        DatasetError: as `read_image`, or neighbours whose size differs from the slice's.
    """
    path = Path(path)
    match = KAGGLE_SLICE.match(path.stem)

    def neighbour(offset: int) -> Path:
        if offset == 0 or match is None:  # the file as named, "scan_007.png" included
            return path
        index = match["index"]
        number = int(index) + offset
        # The width of the name's own number first: "scan_010" -> "scan_009", "P_10" -> "P_9".
        padded = path.with_name(f"{match['stem']}_{number:0{len(index)}d}{path.suffix}")
        if padded.is_file():
            return padded
        return path.with_name(f"{match['stem']}_{number}{path.suffix}")

    paths = [
        neighbour(nearest_existing(offset, lambda o: neighbour(o).is_file()))
        for offset in context_offsets(context_slices)
    ]
    images = [read_image(p) for p in paths]
    for other, image in zip(paths[1:], images[1:], strict=True):
        if image.shape != images[0].shape:
            raise DatasetError(
                [
                    f"{other}: {image.shape[1]}x{image.shape[0]}, but its neighbour {path.name} "
                    f"is {images[0].shape[1]}x{images[0].shape[0]}; a patient's slices must "
                    "share one size (or predict with a model without context slices)"
                ]
            )
    return np.concatenate(images, axis=-1)


def binary_as_labels(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """A two-label mask stored as 0/255 as labels 0/1 (uint8); any other mask as it is."""
    if num_classes == 2 and set(np.unique(mask).tolist()) <= {0, 255}:
        return (mask // 255).astype(np.uint8)
    return mask


def read_mask(path: str | Path, *, num_classes: int = 2) -> np.ndarray:
    """Read a label mask as uint8 (H, W) with values in 0..num_classes-1.

    Binary masks (num_classes == 2) may be stored as 0/1 or 0/255; 255 becomes 1. A 3-channel
    mask is accepted when its channels are equal (as keras_segmentation wrote them).

    Raises:
        DatasetError: unreadable file, channels that differ, or values outside the label set.
    """
    mask = _decode(Path(path))
    if mask.ndim == 3:
        if not all(np.array_equal(mask[..., 0], mask[..., c]) for c in range(1, mask.shape[2])):
            raise DatasetError(
                [f"{path}: mask has {mask.shape[2]} differing channels; save one label channel"]
            )
        mask = mask[..., 0]
    mask = binary_as_labels(mask, num_classes)
    values = np.unique(mask)
    bad = values[values >= num_classes]
    if bad.size:
        expected = "0/1 or 0/255" if num_classes == 2 else f"0..{num_classes - 1}"
        raise DatasetError(
            [
                f"{path}: mask values {bad[:10].tolist()} are outside the label set ({expected}); "
                "store label indices, or pass num_classes to match your labels"
            ]
        )
    return np.ascontiguousarray(mask)
