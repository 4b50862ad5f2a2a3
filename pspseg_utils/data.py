"""Reading, checking, splitting and streaming the LGG brain-MRI segmentation data.

Two layouts are understood, and detected from the folder itself:

* **Kaggle** (`mateuszbuda/lgg-mri-segmentation`, Buda et al. 2019)::

      kaggle_3m/<patient>/<patient>_<n>.tif        3 channels: pre-contrast, FLAIR, post-contrast
      kaggle_3m/<patient>/<patient>_<n>_mask.tif   1 channel, 0 or 255
      kaggle_3m/data.csv                           optional clinical table

* **Article** (`keras_segmentation`): ``images/<stem>.png`` + ``masks/<stem>.png`` paired by
  file stem, masks holding label indices (0/1, or 0/255 for binary masks).

Images are returned in the dataset's channel order (pre-contrast, FLAIR, post-contrast) although
OpenCV reads BGR; with `context_slices` c > 0 a slice comes with its c neighbours on each side
of the same patient as further channels, 3 (1 + 2c) in all (see `context_offsets`). Intensities
stay in 0..255: the model standardises each slice itself (see
`pspseg_utils.models.layers.SliceStandardization`), so a file fed to `predict` is treated exactly
as in training.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import socket
import threading
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

__all__ = [
    "DatasetError",
    "SliceRecord",
    "DatasetSummary",
    "read_image",
    "read_slice",
    "read_mask",
    "archive_damage",
    "write_file",
    "write_image",
    "write_failure",
    "context_offsets",
    "neighbour_positions",
    "stack_context",
    "find_slices",
    "find_pairs",
    "find_images",
    "detect_layout",
    "summarize",
    "split_patients",
    "patient_folds",
    "select_patients",
    "load_arrays",
    "augment_pair",
    "make_dataset",
    "prepare",
    "resolve_data_dir",
]

KAGGLE_HANDLE = "mateuszbuda/lgg-mri-segmentation"
KAGGLE_URL = f"https://www.kaggle.com/datasets/{KAGGLE_HANDLE}"
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
_KAGGLE_SLICE = re.compile(r"^(?P<stem>.+)_(?P<index>\d+)$")
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


@dataclasses.dataclass(frozen=True)
class SliceRecord:
    """One 2-D slice: where its image and mask live and how many tumour pixels the mask has."""

    patient_id: str
    slice_index: int
    image_path: Path
    mask_path: Path
    tumour_pixels: int

    @property
    def has_tumour(self) -> bool:
        return self.tumour_pixels > 0


@dataclasses.dataclass(frozen=True)
class DatasetSummary:
    layout: str
    patients: int
    slices: int
    tumour_slices: int
    image_shape: tuple[int, ...]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# Reading single files: checks in order (exists, not empty, decodes, shape), naming the file.
# --------------------------------------------------------------------------------------------


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


def _nearest_existing(offset: int, exists) -> int:
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
    match = _KAGGLE_SLICE.match(path.stem)

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
        neighbour(_nearest_existing(offset, lambda o: neighbour(o).is_file()))
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
    values = np.unique(mask)
    if num_classes == 2 and set(values.tolist()) <= {0, 255}:
        return (mask // 255).astype(np.uint8)
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


# --------------------------------------------------------------------------------------------
# Finding and checking a whole dataset.
# --------------------------------------------------------------------------------------------


def _find_kaggle_root(data_dir: Path) -> Path | None:
    """The folder whose sub-folders hold TIFF files (.tif or .tiff, in any case): data_dir
    itself or a `kaggle_3m` below it (a kagglehub download nests it one or two levels down).
    Masks are not required here, so that a missing one is reported by name, not as a layout."""
    candidates = [
        data_dir,
        *sorted(data_dir.glob("kaggle_3m")),
        *sorted(data_dir.glob("*/kaggle_3m")),
    ]
    for candidate in candidates:
        if candidate.is_dir() and any(
            path.suffix.lower() in (".tif", ".tiff")
            for folder in candidate.iterdir()
            if folder.is_dir()
            for path in folder.iterdir()
        ):
            return candidate
    return None


def _kaggle_pairs(root: Path) -> tuple[list[tuple[str, int, Path, Path]], list[str]]:
    pairs, problems = [], []
    for patient_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        files = {p.name: p for p in patient_dir.iterdir() if p.suffix.lower() in (".tif", ".tiff")}
        for path in sorted(files.values()):
            stem = path.stem
            if stem.endswith("_mask"):
                image_name = stem[: -len("_mask")] + path.suffix
                if image_name not in files:
                    problems.append(
                        f"{path}: mask without image (expected {image_name}); "
                        "restore the image or delete the mask"
                    )
                continue
            mask_path = patient_dir / f"{stem}_mask{path.suffix}"
            match = _KAGGLE_SLICE.match(stem)
            if not mask_path.exists():
                problems.append(
                    f"{path}: image without mask (expected {mask_path.name}); "
                    "restore the mask or delete the image"
                )
            elif match is None:
                problems.append(
                    f"{path}: name does not end in _<slice number>; "
                    f"rename it {patient_dir.name}_<n>{path.suffix}"
                )
            else:
                pairs.append((patient_dir.name, int(match["index"]), path, mask_path))
    return pairs, problems


def _stems(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def find_images(folder: str | Path, *, recursive: bool = True) -> list[Path]:
    """Image files (PNG, TIFF, JPEG, BMP) in a folder, sorted: what prediction takes as input.
    Masks are skipped: `*_mask` files (the Kaggle layout) and the `masks/` beside an `images/`
    (the article's)."""
    found = Path(folder).rglob("*") if recursive else Path(folder).iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.stem.endswith("_mask") and not _in_article_masks(p))  # fmt: skip


def _in_article_masks(path: Path) -> bool:
    return path.parent.name == "masks" and (path.parent.parent / "images").is_dir()


def _article_pairs(
    images_dir: Path, masks_dir: Path
) -> tuple[list[tuple[str, int, Path, Path]], list[str]]:
    images, masks = _stems(images_dir), _stems(masks_dir)
    problems = [
        f"{images[s]}: image without mask (expected {masks_dir / s}.png); "
        "add the mask or remove the image"
        for s in sorted(images.keys() - masks.keys())
    ] + [
        f"{masks[s]}: mask without image (expected {images_dir / s}.png); "
        "add the image or remove the mask"
        for s in sorted(masks.keys() - images.keys())
    ]
    pairs = []
    for stem in sorted(images.keys() & masks.keys()):
        # Slices prepared from the Kaggle layout keep their patient: "<patient>_<n>".
        match = _KAGGLE_SLICE.match(stem)
        patient, index = (match["stem"], int(match["index"])) if match else (stem, 0)
        pairs.append((patient, index, images[stem], masks[stem]))
    return pairs, problems


def detect_layout(data_dir: str | Path) -> tuple[str, Path]:
    """Return ("kaggle" | "article", root folder) for a dataset folder.

    Raises:
        DatasetError: the folder is missing, empty, or in neither layout.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(
            [f"{data_dir}: folder not found"],
            hint="Pass the folder that holds kaggle_3m/ or images/ + masks/.",
        )
    if (data_dir / "images").is_dir() and (data_dir / "masks").is_dir():
        return "article", data_dir
    root = _find_kaggle_root(data_dir)
    if root is not None:
        return "kaggle", root
    what = "is empty" if not any(data_dir.iterdir()) else "is in neither known layout"
    raise DatasetError(
        [f"{data_dir}: {what}"],
        hint=(
            "Expected kaggle_3m/<patient>/<patient>_<n>.tif with <patient>_<n>_mask.tif beside it, "
            "or images/<name>.png with masks/<name>.png. Run `pspseg synth DIR` for example data."
        ),
    )


def _check_pair(pair: tuple[str, int, Path, Path], num_classes: int) -> SliceRecord | str:
    patient, index, image_path, mask_path = pair
    try:
        image = read_image(image_path)
        mask = read_mask(mask_path, num_classes=num_classes)
    except DatasetError as error:
        return error.problems[0]
    if image.shape[:2] != mask.shape:
        return (
            f"{image_path}: image is {image.shape[1]}x{image.shape[0]} but its mask "
            f"{mask_path.name} is {mask.shape[1]}x{mask.shape[0]}; they must match"
        )
    return SliceRecord(
        patient, index, Path(image_path), Path(mask_path), int(np.count_nonzero(mask))
    )


def find_slices(
    data_dir: str | Path, *, num_classes: int = 2, progress: bool = True, workers: int = 4
) -> list[SliceRecord]:
    """Find, read and check every slice of a dataset in either layout.

    Every image and mask is decoded once, so every problem is found here rather than mid-training,
    and all of them are reported together.

    Args:
        data_dir: str or Path. The dataset folder (or a folder above `kaggle_3m`).
        num_classes: int. Labels allowed in masks are 0..num_classes-1 (2: binary, 0/1 or 0/255).
        progress: bool. Show a progress bar.
        workers: int. Decoding threads (OpenCV releases the GIL).

    Returns:
        Records sorted by (patient, slice number).

    Raises:
        DatasetError: listing every problem found (missing partner, unreadable file, wrong
            channels, size mismatch, labels outside the set), each with its file and fix.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background + classes), got {num_classes!r}")
    layout, root = detect_layout(data_dir)
    if layout == "kaggle":
        pairs, problems = _kaggle_pairs(root)
    else:
        pairs, problems = _article_pairs(root / "images", root / "masks")
    return _checked_records(
        pairs, problems, root, num_classes=num_classes, progress=progress, workers=workers
    )


def find_pairs(
    images_dir: str | Path,
    masks_dir: str | Path,
    *,
    num_classes: int = 2,
    progress: bool = True,
    workers: int = 4,
) -> list[SliceRecord]:
    """Like `find_slices`, for the article's separate folders (`train_images`,
    `train_annotations`): images and masks paired by file stem."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background + classes), got {num_classes!r}")
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    missing = [f"{d}: folder not found" for d in (images_dir, masks_dir) if not d.is_dir()]
    if missing:
        raise DatasetError(missing, hint="Pass the folders that hold the images and the masks.")
    pairs, problems = _article_pairs(images_dir, masks_dir)
    return _checked_records(
        pairs, problems, images_dir, num_classes=num_classes, progress=progress, workers=workers
    )


def _checked_records(pairs, problems, root: Path, *, num_classes, progress, workers):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(
            tqdm(
                pool.map(lambda p: _check_pair(p, num_classes), pairs),
                total=len(pairs),
                desc=f"Checking {root.name}",
                unit="slice",
                disable=not progress,
            )
        )
    problems = problems + [r for r in results if isinstance(r, str)]
    records = [r for r in results if isinstance(r, SliceRecord)]
    if not problems and not records:
        problems.append(f"{root}: no image/mask pairs found")
    if problems:
        raise DatasetError(
            problems, hint="Fix or remove these files, then run `pspseg check` again."
        )
    return sorted(records, key=lambda r: (r.patient_id, r.slice_index))


def summarize(records: Sequence[SliceRecord], *, layout: str = "") -> DatasetSummary:
    """Counts of patients, slices and tumour slices, and the shape of the first image."""
    shape = tuple(int(n) for n in read_image(records[0].image_path).shape) if records else ()
    return DatasetSummary(
        layout=layout,
        patients=len({r.patient_id for r in records}),
        slices=len(records),
        tumour_slices=sum(r.has_tumour for r in records),
        image_shape=shape,
    )


# --------------------------------------------------------------------------------------------
# Patient-level split.
# --------------------------------------------------------------------------------------------


def split_patients(
    records: Iterable[SliceRecord],
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Split patients (never slices) into train/val/test, stratified by tumour burden.

    Patients are ranked by total tumour pixels (ties broken by a seeded shuffle), the ranking is
    cut into as many consecutive blocks as a held-out subset needs patients, and one patient is
    drawn from each block: each subset gets small and large tumours alike, and has
    round(n * fraction) patients (at least 1 when fraction > 0). No patient is in two subsets.

    Returns:
        {"train": [...], "val": [...], "test": [...]} of patient ids, each sorted.

    Raises:
        ValueError: fractions outside [0, 1) or summing to 1 or more, or too few patients to
            give every non-zero fraction at least one patient and leave one for training.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}"
        )
    burden: dict[str, int] = {}
    for record in records:
        burden[record.patient_id] = burden.get(record.patient_id, 0) + record.tumour_pixels
    patients = sorted(burden)
    rng = np.random.default_rng(seed)
    shuffled = [patients[i] for i in rng.permutation(len(patients))]
    ranked = sorted(shuffled, key=lambda p: burden[p])  # stable: the shuffle breaks ties

    counts = {"test": round(len(ranked) * test_fraction), "val": round(len(ranked) * val_fraction)}
    for name, fraction in (("test", test_fraction), ("val", val_fraction)):
        if fraction > 0 and counts[name] == 0:
            counts[name] = 1
    if counts["test"] + counts["val"] >= len(ranked):
        raise ValueError(
            f"{len(ranked)} patient(s) cannot be split into train/val/test with "
            f"val_fraction={val_fraction} and test_fraction={test_fraction}; add patients or "
            "lower the fractions"
        )
    subsets: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    # Evenly spaced positions along the tumour-burden ranking go to each held-out subset.
    taken: set[int] = set()
    for name in ("test", "val"):
        free = [i for i in range(len(ranked)) if i not in taken]
        # One patient drawn at random from each of `count` consecutive blocks of the ranking.
        blocks = np.array_split(np.array(free), counts[name]) if counts[name] else []
        chosen = {int(rng.choice(block)) for block in blocks}
        taken |= chosen
        subsets[name] = sorted(ranked[i] for i in chosen)
    subsets["train"] = sorted(ranked[i] for i in range(len(ranked)) if i not in taken)
    return subsets


def patient_folds(
    records: Iterable[SliceRecord], *, folds: int = 5, seed: int = 0
) -> list[list[str]]:
    """Partition the patients into `folds` cross-validation folds, stratified by tumour burden.

    Patients are ranked by total tumour pixels (ties broken by a seeded shuffle) and dealt out
    in consecutive groups of `folds`, one to each fold in a seeded order: every patient is in
    exactly one fold, the fold sizes differ by at most one, and each holds small and large
    tumours alike. Example: 10 patients, 5 folds -> each fold has one of the 5 smallest and one
    of the 5 largest.

    Raises:
        ValueError: fewer than 2 folds, or fewer patients than folds.
    """
    burden: dict[str, int] = {}
    for record in records:
        burden[record.patient_id] = burden.get(record.patient_id, 0) + record.tumour_pixels
    if folds < 2 or len(burden) < folds:
        raise ValueError(f"need 2 <= folds <= patients, got {folds} folds of {len(burden)}")
    rng = np.random.default_rng(seed)
    patients = sorted(burden)
    ranked = sorted((patients[i] for i in rng.permutation(len(patients))), key=burden.get)
    dealt: list[list[str]] = [[] for _ in range(folds)]
    for start in range(0, len(ranked), folds):
        group = ranked[start : start + folds]
        for fold, patient in zip(rng.permutation(folds), group, strict=False):
            dealt[fold].append(patient)
    return [sorted(fold) for fold in dealt]


def select_patients(records: Iterable[SliceRecord], patients: Iterable[str]) -> list[SliceRecord]:
    """The records of the given patients, in their original order."""
    wanted = set(patients)
    return [r for r in records if r.patient_id in wanted]


# --------------------------------------------------------------------------------------------
# Decoding once, then a tf.data pipeline over the in-memory arrays.
# --------------------------------------------------------------------------------------------


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
                position[key[0], key[1] + _nearest_existing(offset, exists)]
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


def augment_pair(image, mask, seed, missing_sequence_rate=0.0, max_gamma=1.25):
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
    max_gamma: float = 1.25,
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


# --------------------------------------------------------------------------------------------
# Converting layouts and getting the data.
# --------------------------------------------------------------------------------------------


def prepare(
    kaggle_dir: str | Path, out_dir: str | Path, *, progress: bool = True
) -> list[SliceRecord]:
    """Convert the Kaggle layout into the article's: `images/<patient>_<n>.png` (3 channels) and
    `masks/<patient>_<n>.png` (labels 0/1). The file stems keep patient and slice number, so a
    patient-level split still works on the result.

    Returns:
        The records of the written dataset.

    Raises:
        DatasetError: the input is not a valid Kaggle-layout dataset, or two of its files have
            one slice number (X_5.tif and X_05.tif) and would be written to one PNG.
        FileExistsError: out_dir already has images/ or masks/ with files in them.
        OSError: a PNG could not be written (a full disk, no permission); none is left partial.
    """
    layout, _ = detect_layout(kaggle_dir)
    if layout != "kaggle":
        raise DatasetError(
            [f"{kaggle_dir}: already in the article layout (images/ + masks/)"],
            hint="`pspseg prepare` converts the Kaggle layout; nothing to do.",
        )
    records = find_slices(kaggle_dir, progress=progress)
    names: dict[str, Path] = {}
    clashes = []
    for record in records:  # X_5.tif and X_05.tif would both become X_5.png
        name = f"{record.patient_id}_{record.slice_index}.png"
        if name in names:
            clashes.append(f"{names[name]} and {record.image_path} would both be written as {name}")
        names.setdefault(name, record.image_path)
    if clashes:
        raise DatasetError(clashes, hint="Keep one file per slice number: rename or remove one.")
    out_dir = Path(out_dir)
    for sub in ("images", "masks"):
        if (out_dir / sub).is_dir() and any((out_dir / sub).iterdir()):
            raise FileExistsError(f"{out_dir / sub} is not empty; choose a new OUT_DIR or empty it")
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    for record in tqdm(records, desc="Writing PNGs", unit="slice", disable=not progress):
        name = f"{record.patient_id}_{record.slice_index}.png"
        write_image(out_dir / "images" / name, read_image(record.image_path)[..., ::-1])
        write_image(out_dir / "masks" / name, read_mask(record.mask_path))
    return find_slices(out_dir, progress=False)


def _kaggle_reachable(timeout: float) -> bool:
    """Whether www.kaggle.com accepts a connection within `timeout` seconds.

    The socket timeout does not cover the DNS lookup, which can block for tens of seconds on an
    offline machine, so the attempt runs in a daemon thread that is abandoned after `timeout`."""
    reachable: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection(("www.kaggle.com", 443), timeout=timeout):
                reachable.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, name="pspseg-kaggle-check", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(reachable)


def resolve_data_dir(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    download: bool = True,
    synthetic_dir: str | Path = "data/synthetic",
    synthetic_patients: int = 20,
    timeout: float = 3.0,
) -> tuple[Path, str]:
    """Find the data to use, in this order, and say which it is.

    1. `path` if given, else the environment's `PSPSEG_DATA_DIR` (`environ` defaults to os.environ);
    2. a kagglehub download of mateuszbuda/lgg-mri-segmentation, if Kaggle answers within
       `timeout` seconds (so an offline machine never hangs); a public dataset, so no Kaggle
       sign-in is needed (kagglehub asks for one only for private or consent-gated data);
    3. the synthetic dataset in `synthetic_dir`, generated on first use.

    Returns:
        (folder, source) with source one of "given", "kaggle", "synthetic".

    Raises:
        DatasetError: a given path (argument or PSPSEG_DATA_DIR) does not exist.
    """
    environ = os.environ if environ is None else environ
    given = path if path is not None else environ.get("PSPSEG_DATA_DIR") or None
    if given is not None:
        detect_layout(given)
        return Path(given), "given"
    if download and not _kaggle_reachable(timeout):
        print(f"Kaggle did not answer within {timeout:g} s (offline?): using synthetic data.")
    elif download:
        try:
            import kagglehub

            return Path(kagglehub.dataset_download(KAGGLE_HANDLE)), "kaggle"
        except Exception as error:  # noqa: BLE001 - any download failure falls back to synthetic
            print(
                f"Kaggle download failed ({type(error).__name__}: {error}). The dataset is "
                "public and needs no Kaggle sign-in: check this machine's internet access, or "
                f"download it from {KAGGLE_URL} and pass its folder (DATA_DIR, or "
                "PSPSEG_DATA_DIR). Using synthetic data for now."
            )
    synthetic_dir = Path(synthetic_dir)
    if not (synthetic_dir / "kaggle_3m").is_dir():
        from pspseg_utils.synthetic import generate_dataset

        print(f"No real data found: generating a synthetic LGG-like dataset in {synthetic_dir}.")
        generate_dataset(synthetic_dir, num_patients=synthetic_patients, seed=0)
    return synthetic_dir, "synthetic"
