"""Finding and checking a whole dataset, in either layout (see `pspseg_utils.data`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from pspseg_utils.data.files import (
    IMAGE_SUFFIXES,
    KAGGLE_SLICE,
    DatasetError,
    read_image,
    read_mask,
)


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
            match = KAGGLE_SLICE.match(stem)
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
        match = KAGGLE_SLICE.match(stem)
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
