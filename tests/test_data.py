"""Tests of pspseg_utils.data: reading both layouts, every kind of bad input (named file + fix),
the patient-level split, the in-memory arrays and the tf.data pipeline, finding the data, and
the Kaggle -> article conversion.

Hand-made datasets are 16 x 16 so that every expected count can be checked by hand; the shared
`tiny_*` fixtures (conftest.py) are 64 x 64 synthetic patients.
"""

from __future__ import annotations

import csv
import shutil
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pspseg_utils import data
from pspseg_utils.data import DatasetError, SliceRecord, pipeline, sources

SIZE = 16


# --- hand-made datasets --------------------------------------------------------------------


def make_image(seed: int, size: int = SIZE) -> np.ndarray:
    """A random 3-channel uint8 slice, in dataset order (pre, FLAIR, post)."""
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def make_mask(pixels: int, value: int = 255, size: int = SIZE) -> np.ndarray:
    """A (size, size) uint8 mask whose first `pixels` pixels (row-major) hold `value`."""
    mask = np.zeros(size * size, np.uint8)
    mask[:pixels] = value
    return mask.reshape(size, size)


def write_image(path: Path, image: np.ndarray) -> None:
    """Write a slice given in dataset order; OpenCV writes BGR, hence the reversal."""
    assert cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1]))


# Kaggle-layout dataset: patient -> tumour pixels of slices 1, 2, ...
KAGGLE_SLICES = {"P1": (0, 3), "P2": (5, 0, 9)}


def make_kaggle(parent: Path, slices: dict = KAGGLE_SLICES) -> Path:
    """parent/kaggle_3m/<patient>/<patient>_<n>.tif and _mask.tif (0/255); returns kaggle_3m."""
    root = parent / "kaggle_3m"
    for patient_number, (patient, pixels) in enumerate(slices.items()):
        (root / patient).mkdir(parents=True)
        for n, count in enumerate(pixels, start=1):
            write_image(root / patient / f"{patient}_{n}.tif", make_image(10 * patient_number + n))
            cv2.imwrite(str(root / patient / f"{patient}_{n}_mask.tif"), make_mask(count))
    return root


# Article-layout dataset: stem -> tumour pixels. Stems "<patient>_<n>" keep patient and slice.
ARTICLE_SLICES = {"P1_1": 0, "P1_2": 5, "TCGA_CS_4943_20000902_12": 7, "scan": 11}


def make_article(images_dir: Path, masks_dir: Path, style: str = "0/1") -> None:
    """images_dir/<stem>.png + masks_dir/<stem>.png. style "0/1" and "0/255" write binary
    masks; "0/1/2" writes labels 1 and 2 alternately on the tumour pixels."""
    images_dir.mkdir(parents=True)
    masks_dir.mkdir(parents=True)
    for number, (stem, count) in enumerate(ARTICLE_SLICES.items()):
        write_image(images_dir / f"{stem}.png", make_image(number))
        mask = make_mask(count, value={"0/1": 1, "0/255": 255, "0/1/2": 1}[style])
        if style == "0/1/2":
            mask.reshape(-1)[1:count:2] = 2
        cv2.imwrite(str(masks_dir / f"{stem}.png"), mask)


@pytest.fixture
def kaggle(tmp_path) -> Path:
    return make_kaggle(tmp_path)


# --- reading the Kaggle layout -------------------------------------------------------------


def test_kaggle_layout_records(kaggle):
    records = data.find_slices(kaggle.parent, progress=False)  # the folder above kaggle_3m
    assert [(r.patient_id, r.slice_index, r.tumour_pixels) for r in records] == [
        ("P1", 1, 0),
        ("P1", 2, 3),
        ("P2", 1, 5),
        ("P2", 2, 0),
        ("P2", 3, 9),
    ]
    assert records[4].image_path == kaggle / "P2" / "P2_3.tif"
    assert records[4].mask_path == kaggle / "P2" / "P2_3_mask.tif"
    assert [r.has_tumour for r in records] == [False, True, True, False, True]
    assert data.detect_layout(kaggle.parent) == ("kaggle", kaggle)


def test_kaggle_layout_on_synthetic_patients(tiny_kaggle_dir, tiny_records):
    with open(tiny_kaggle_dir / "data.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(tiny_records) == sum(int(row["slices"]) for row in rows)
    assert len(tiny_records) == len(list(tiny_kaggle_dir.glob("*/*_mask.tif")))
    patients = sorted(path.name for path in tiny_kaggle_dir.iterdir() if path.is_dir())
    assert sorted({r.patient_id for r in tiny_records}) == patients
    for row in rows:
        folder = f"{row['Patient']}_20000101"
        numbers = [r.slice_index for r in tiny_records if r.patient_id == folder]
        assert numbers == list(range(1, int(row["slices"]) + 1))
        tumour = [r for r in tiny_records if r.patient_id == folder and r.has_tumour]
        assert len(tumour) == int(row["tumour_slices"])
    for record in tiny_records:
        raw = cv2.imread(str(record.mask_path), cv2.IMREAD_UNCHANGED)
        assert record.tumour_pixels == np.count_nonzero(raw)


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_channels_come_back_in_stored_order(tmp_path, suffix):
    # Pillow stores channels in the order given: pre = 10, FLAIR = 20, post = 30.
    stored = np.zeros((4, 4, 3), np.uint8)
    stored[...] = (10, 20, 30)
    Image.fromarray(stored).save(tmp_path / f"slice{suffix}")
    image = data.read_image(tmp_path / f"slice{suffix}")
    assert image.shape == (4, 4, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [10, 20, 30]
    # OpenCV alone would give them reversed (BGR).
    assert cv2.imread(str(tmp_path / f"slice{suffix}"))[0, 0].tolist() == [30, 20, 10]


def test_read_mask_maps_255_to_1(tmp_path):
    cv2.imwrite(str(tmp_path / "m.png"), make_mask(6))
    mask = data.read_mask(tmp_path / "m.png")
    assert mask.dtype == np.uint8 and mask.shape == (SIZE, SIZE)
    assert np.unique(mask).tolist() == [0, 1] and int(mask.sum()) == 6


# --- reading the article layout ------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "num_classes", "labels"),
    [("0/1", 2, {0, 1}), ("0/255", 2, {0, 1}), ("0/1/2", 3, {0, 1, 2})],
)
def test_article_layout_pairs_by_stem(tmp_path, style, num_classes, labels):
    make_article(tmp_path / "images", tmp_path / "masks", style)
    records = data.find_slices(tmp_path, num_classes=num_classes, progress=False)
    assert data.detect_layout(tmp_path) == ("article", tmp_path)
    assert [(r.patient_id, r.slice_index, r.tumour_pixels) for r in records] == [
        ("P1", 1, 0),
        ("P1", 2, 5),
        ("TCGA_CS_4943_20000902", 12, 7),
        ("scan", 0, 11),  # no "_<n>": the stem is the patient
    ]
    for record in records:
        assert record.image_path.stem == record.mask_path.stem
        assert record.image_path.parent.name == "images"
        mask = data.read_mask(record.mask_path, num_classes=num_classes)
        assert set(np.unique(mask).tolist()) <= labels
    read = data.read_mask(tmp_path / "masks" / "scan.png", num_classes=num_classes)
    assert set(np.unique(read).tolist()) == labels


def test_find_pairs_on_separate_folders(tmp_path):
    make_article(tmp_path / "train_images", tmp_path / "train_annotations")
    records = data.find_pairs(
        tmp_path / "train_images", tmp_path / "train_annotations", progress=False
    )
    assert [r.image_path.name for r in records] == [f"{s}.png" for s in ARTICLE_SLICES]
    assert [r.mask_path.parent.name for r in records] == ["train_annotations"] * 4
    assert [r.tumour_pixels for r in records] == list(ARTICLE_SLICES.values())


def test_find_pairs_names_a_missing_folder_and_an_unpaired_image(tmp_path):
    make_article(tmp_path / "images", tmp_path / "masks")
    with pytest.raises(DatasetError, match="folder not found") as error:
        data.find_pairs(tmp_path / "images", tmp_path / "labels", progress=False)
    assert str(tmp_path / "labels") in str(error.value)
    assert "Pass the folders that hold the images and the masks" in str(error.value)

    (tmp_path / "masks" / "P1_2.png").unlink()
    with pytest.raises(DatasetError) as error:
        data.find_pairs(tmp_path / "images", tmp_path / "masks", progress=False)
    assert error.value.problems == [
        f"{tmp_path / 'images' / 'P1_2.png'}: image without mask "
        f"(expected {tmp_path / 'masks' / 'P1_2'}.png); add the mask or remove the image"
    ]


# --- bad input: one problem per test, named with its file and its fix ----------------------


def remove_mask(root: Path) -> Path:
    (root / "P1" / "P1_2_mask.tif").unlink()
    return root / "P1" / "P1_2.tif"


def remove_image(root: Path) -> Path:
    (root / "P1" / "P1_2.tif").unlink()
    return root / "P1" / "P1_2_mask.tif"


def slice_without_number(root: Path) -> Path:
    for suffix in ("", "_mask"):
        (root / "P1" / f"P1_2{suffix}.tif").rename(root / "P1" / f"P1_second{suffix}.tif")
    return root / "P1" / "P1_second.tif"


def garbage_image(root: Path) -> Path:
    (root / "P2" / "P2_1.tif").write_bytes(b"not an image at all " * 8)
    return root / "P2" / "P2_1.tif"


def empty_mask(root: Path) -> Path:
    (root / "P2" / "P2_3_mask.tif").write_bytes(b"")
    return root / "P2" / "P2_3_mask.tif"


def small_mask(root: Path) -> Path:
    cv2.imwrite(str(root / "P1" / "P1_1_mask.tif"), np.zeros((8, 8), np.uint8))
    return root / "P1" / "P1_1.tif"


def grayscale_image(root: Path) -> Path:
    cv2.imwrite(str(root / "P1" / "P1_1.tif"), make_image(0)[..., 0])
    return root / "P1" / "P1_1.tif"


def rgba_image(root: Path) -> Path:
    cv2.imwrite(str(root / "P1" / "P1_1.tif"), np.dstack([make_image(0), make_mask(0)]))
    return root / "P1" / "P1_1.tif"


def image_16_bit(root: Path) -> Path:
    cv2.imwrite(str(root / "P1" / "P1_1.tif"), make_image(0).astype(np.uint16) * 256)
    return root / "P1" / "P1_1.tif"


def mask_label_7(root: Path) -> Path:
    mask = make_mask(4, value=1)
    mask[-1, -1] = 7
    cv2.imwrite(str(root / "P2" / "P2_1_mask.tif"), mask)
    return root / "P2" / "P2_1_mask.tif"


def mask_3_differing_channels(root: Path) -> Path:
    mask = np.dstack([make_mask(3), make_mask(4), make_mask(5)])
    cv2.imwrite(str(root / "P2" / "P2_1_mask.tif"), mask)
    return root / "P2" / "P2_1_mask.tif"


@pytest.mark.parametrize(
    ("break_dataset", "expected"),
    [
        (remove_mask, ["image without mask (expected P1_2_mask.tif)", "restore the mask"]),
        (remove_image, ["mask without image (expected P1_2.tif)", "restore the image"]),
        (slice_without_number, ["name does not end in _<slice number>", "rename it P1_<n>.tif"]),
        (garbage_image, ["not a readable image", "Fix or remove these files"]),
        (empty_mask, ["file is empty", "re-download or re-export it"]),
        (small_mask, ["image is 16x16 but its mask P1_1_mask.tif is 8x8", "they must match"]),
        (grayscale_image, ["grayscale image, expected 3 channels", "cv2.cvtColor"]),
        (rgba_image, ["RGBA image, expected 3 channels", "save it with exactly 3 channels"]),
        (image_16_bit, ["pixel type uint16, expected 8-bit", "save as uint8"]),
        (mask_label_7, ["mask values [7] are outside the label set (0/1 or 0/255)", "num_classes"]),
        (mask_3_differing_channels, ["mask has 3 differing channels", "save one label channel"]),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_bad_file_is_named_with_its_fix(kaggle, break_dataset, expected):
    offending = break_dataset(kaggle)
    with pytest.raises(DatasetError) as error:
        data.find_slices(kaggle, progress=False)
    assert isinstance(error.value, ValueError)
    assert len(error.value.problems) == 1
    problem = error.value.problems[0]
    assert problem.startswith(f"{offending}: ")
    message = str(error.value)
    assert message.startswith("1 problem(s) in the dataset:")
    for fragment in expected:
        assert fragment in message


def empty_folder(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


def missing_folder(tmp_path: Path) -> Path:
    return tmp_path / "no_such_folder"


def random_files(tmp_path: Path) -> Path:
    (tmp_path / "data" / "notes").mkdir(parents=True)
    (tmp_path / "data" / "readme.txt").write_text("hello")
    write_image(tmp_path / "data" / "notes" / "photo.png", make_image(0))
    return tmp_path / "data"


@pytest.mark.parametrize(
    ("make_folder", "expected"),
    [
        (empty_folder, ["is empty", "Run `pspseg synth DIR` for example data"]),
        (missing_folder, ["folder not found", "Pass the folder that holds kaggle_3m/"]),
        (random_files, ["is in neither known layout", "Expected kaggle_3m/<patient>/"]),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_bad_folder_is_named_with_its_fix(tmp_path, make_folder, expected):
    folder = make_folder(tmp_path)
    with pytest.raises(DatasetError) as error:
        data.find_slices(folder, progress=False)
    assert error.value.problems[0].startswith(f"{folder}: ")
    for fragment in expected:
        assert fragment in str(error.value)


def test_empty_article_folders_are_reported(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DatasetError, match="no image/mask pairs found"):
        data.find_slices(tmp_path, progress=False)


def test_all_problems_are_reported_together(kaggle):
    garbage = garbage_image(kaggle)
    unpaired = remove_mask(kaggle)
    with pytest.raises(DatasetError) as error:
        data.find_slices(kaggle, progress=False)
    assert len(error.value.problems) == 2
    assert str(error.value).startswith("2 problem(s) in the dataset:")
    for path in (garbage, unpaired):
        assert str(path) in str(error.value)


def test_long_problem_lists_are_cut_but_counted():
    error = DatasetError([f"file{i}.tif: bad" for i in range(25)], hint="Fix them.")
    lines = str(error).splitlines()
    assert lines[0] == "25 problem(s) in the dataset:"
    assert lines[1] == "  - file0.tif: bad" and lines[20] == "  - file19.tif: bad"
    assert lines[21:] == ["  ... and 5 more", "Fix them."]
    assert len(error.problems) == 25


def test_nothing_is_dropped_silently(kaggle):
    # Files that are not slices (the clinical table, notes) are not pairs and are ignored ...
    (kaggle / "data.csv").write_text("Patient\nP1\nP2\n")
    (kaggle / "P1" / "notes.txt").write_text("scanned twice")
    assert len(data.find_slices(kaggle, progress=False)) == 5  # = sum of KAGGLE_SLICES lengths
    # ... but one bad pair fails the whole dataset instead of leaving 4 records.
    empty_mask(kaggle)
    with pytest.raises(DatasetError):
        data.find_slices(kaggle, progress=False)


def test_num_classes_below_2_is_refused(kaggle):
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        data.find_slices(kaggle, num_classes=1, progress=False)


def test_summarize(kaggle):
    summary = data.summarize(data.find_slices(kaggle, progress=False), layout="kaggle")
    assert summary.as_dict() == {
        "layout": "kaggle",
        "patients": 2,
        "slices": 5,
        "tumour_slices": 3,
        "image_shape": (SIZE, SIZE, 3),
    }


# --- patient-level split -------------------------------------------------------------------


def fake_records(burdens: dict[str, int], slices: int = 2) -> list[SliceRecord]:
    """`slices` records per patient sharing the patient's tumour burden equally."""
    return [
        SliceRecord(
            patient, n, Path(f"{patient}_{n}.png"), Path(f"{patient}_{n}m.png"), b // slices
        )
        for patient, b in burdens.items()
        for n in range(1, slices + 1)
    ]


# 20 patients, burdens 0, 100, ..., 400 four times each: ties that only the seed orders.
TWENTY = fake_records({f"P{i:02d}": (i % 5) * 100 for i in range(20)})


@pytest.mark.parametrize(
    ("patients", "val_fraction", "test_fraction", "sizes"),
    [
        (20, 0.15, 0.15, (14, 3, 3)),
        (20, 0.1, 0.2, (14, 2, 4)),
        (20, 0.0, 0.25, (15, 0, 5)),
        (10, 0.04, 0.04, (8, 1, 1)),  # round(0.4) = 0, but a fraction > 0 gets one patient
        (3, 0.2, 0.2, (1, 1, 1)),
    ],
)
def test_split_sizes_and_disjoint(patients, val_fraction, test_fraction, sizes):
    records = fake_records({f"P{i:02d}": i * 10 for i in range(patients)})
    split = data.split_patients(
        records, val_fraction=val_fraction, test_fraction=test_fraction, seed=0
    )
    assert tuple(len(split[name]) for name in ("train", "val", "test")) == sizes
    train, val, test = (set(split[name]) for name in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    assert train | val | test == {r.patient_id for r in records}
    assert all(split[name] == sorted(split[name]) for name in split)


def test_split_is_seeded():
    first = data.split_patients(TWENTY, seed=0)
    assert data.split_patients(TWENTY, seed=0) == first
    assert data.split_patients(list(reversed(TWENTY)), seed=0) == first  # order of records
    assert data.split_patients(TWENTY, seed=1) != first


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_split_is_stratified_by_tumour_burden(seed):
    split = data.split_patients(fake_records({f"P{b:02d}": b for b in range(1, 31)}, 1), seed=seed)

    def mean_burden(name: str) -> float:
        return float(np.mean([int(p[1:]) for p in split[name]]))

    assert len(split["test"]) == len(split["val"]) == 4  # round(30 * 0.15) = round(4.5) = 4
    assert abs(mean_burden("test") - mean_burden("train")) < 0.3 * mean_burden("train")
    assert abs(mean_burden("val") - mean_burden("train")) < 0.3 * mean_burden("train")


@pytest.mark.parametrize(
    ("val_fraction", "test_fraction", "message"),
    [
        (-0.1, 0.15, "val_fraction must be in"),
        (0.15, 1.0, "test_fraction must be in"),
        (0.5, 0.5, "must be < 1"),
    ],
)
def test_split_refuses_bad_fractions(val_fraction, test_fraction, message):
    with pytest.raises(ValueError, match=message):
        data.split_patients(TWENTY, val_fraction=val_fraction, test_fraction=test_fraction)


def test_split_refuses_too_few_patients():
    with pytest.raises(ValueError, match="2 patient\\(s\\) cannot be split"):
        data.split_patients(fake_records({"A": 1, "B": 2}))


def _records_with_burden(burdens: dict[str, int]) -> list[data.SliceRecord]:
    return [data.SliceRecord(p, 0, Path(f"{p}.tif"), Path(f"{p}_mask.tif"), b)
            for p, b in burdens.items()]  # fmt: skip


def test_patient_folds_partition_the_patients_stratified_by_burden():
    burdens = {f"P{i:02d}": i * 100 for i in range(11)}  # P00 smallest ... P10 largest
    folds = data.patient_folds(_records_with_burden(burdens), folds=5, seed=3)
    assert sorted(p for fold in folds for p in fold) == sorted(burdens)  # each patient once
    assert sorted(len(fold) for fold in folds) == [2, 2, 2, 2, 3]
    smallest, largest = {"P00", "P01", "P02", "P03", "P04"}, {"P05", "P06", "P07", "P08", "P09"}
    assert all(len(set(fold) & smallest) == 1 == len(set(fold) & largest) for fold in folds)
    assert folds == data.patient_folds(_records_with_burden(burdens), folds=5, seed=3)


@pytest.mark.parametrize("folds", [1, 12])
def test_patient_folds_need_between_2_and_all_patients(folds):
    records = _records_with_burden({f"P{i}": i for i in range(11)})
    with pytest.raises(ValueError, match=f"got {folds} folds of 11"):
        data.patient_folds(records, folds=folds)


def test_select_patients_keeps_order():
    chosen = data.select_patients(TWENTY, ["P03", "P01"])
    assert [(r.patient_id, r.slice_index) for r in chosen] == [
        ("P01", 1),
        ("P01", 2),
        ("P03", 1),
        ("P03", 2),
    ]


# --- arrays and the tf.data pipeline -------------------------------------------------------


def test_load_arrays_keeps_the_files_values(tiny_records):
    records = tiny_records[:5]
    images, masks = data.load_arrays(records, progress=False)
    assert images.shape == (5, 64, 64, 3) and images.dtype == np.uint8
    assert masks.shape == (5, 64, 64) and masks.dtype == np.uint8
    for image, mask, record in zip(images, masks, records, strict=True):
        np.testing.assert_array_equal(image, data.read_image(record.image_path))
        assert int(mask.sum()) == record.tumour_pixels  # 0/255 on disk -> 0/1


def test_load_arrays_resizes_and_keeps_masks_binary(tiny_records):
    biggest = max(tiny_records, key=lambda r: r.tumour_pixels)
    images, masks = data.load_arrays([biggest], image_size=32, progress=False)
    assert images.shape == (1, 32, 32, 3) and masks.shape == (1, 32, 32)
    assert set(np.unique(masks).tolist()) == {0, 1}
    # Nearest neighbour at half size keeps about a quarter of the tumour pixels.
    assert 0.5 < masks.sum() / (biggest.tumour_pixels / 4) < 1.5


def test_load_arrays_resizes_to_height_and_width(tiny_records):
    images, masks = data.load_arrays(tiny_records[:2], image_size=(32, 48), progress=False)
    assert images.shape == (2, 32, 48, 3) and masks.shape == (2, 32, 48)
    with pytest.raises(ValueError, match=r"image_size must be a side or \(height, width\), got"):
        data.load_arrays(tiny_records[:2], image_size=(32, 48, 3), progress=False)


def test_load_arrays_refuses_nothing_and_mixed_sizes(tmp_path):
    with pytest.raises(ValueError, match="no records"):
        data.load_arrays([], progress=False)
    write_image(tmp_path / "a.png", make_image(0, size=16))
    write_image(tmp_path / "b.png", make_image(1, size=8))
    cv2.imwrite(str(tmp_path / "am.png"), make_mask(0, size=16))
    cv2.imwrite(str(tmp_path / "bm.png"), make_mask(0, size=8))
    records = [
        SliceRecord("a", 1, tmp_path / "a.png", tmp_path / "am.png", 0),
        SliceRecord("b", 1, tmp_path / "b.png", tmp_path / "bm.png", 0),
    ]
    with pytest.raises(DatasetError, match="pass image_size"):
        data.load_arrays(records, progress=False)
    images, _ = data.load_arrays(records, image_size=8, progress=False)
    assert images.shape == (2, 8, 8, 3)


# --- context slices: a slice with its neighbours as channels ---------------------------------


def test_context_offsets_put_the_slice_first_then_its_neighbours():
    assert data.context_offsets(0) == [0]
    assert data.context_offsets(1) == [0, -1, 1]
    assert data.context_offsets(2) == [0, -1, 1, -2, 2]


@pytest.mark.parametrize("context_slices", [-1, 1.5, True, "1"])
def test_context_offsets_refuse_anything_but_an_int_from_0(context_slices):
    with pytest.raises(
        ValueError, match=f"context_slices must be an integer >= 0, got {context_slices!r}"
    ):
        data.context_offsets(context_slices)


# Patient A has slices 1, 2, 3, 5 (4 is missing), B has 1 and 2.
GAPPED = [
    SliceRecord(patient, n, Path(f"{patient}_{n}.png"), Path(f"{patient}_{n}_mask.png"), 0)
    for patient, n in [("A", 1), ("A", 2), ("A", 3), ("A", 5), ("B", 1), ("B", 2)]
]


@pytest.mark.parametrize(
    ("context_slices", "expected"),
    [
        (0, [[0], [1], [2], [3], [4], [5]]),
        # Past either end of a volume (and across A's gap) the slice stands in for itself;
        # never another patient's.
        (1, [[0, 0, 1], [1, 0, 2], [2, 1, 2], [3, 3, 3], [4, 4, 5], [5, 4, 5]]),
        # Two away missing -> the one between (A_1's -2 -> A_1, A_2's +2 -> A_3); A_5's
        # neighbours 1 away are missing, so it stands in for them, but A_3 is 2 away.
        (2, [[0, 0, 1, 0, 2], [1, 0, 2, 0, 2], [2, 1, 2, 0, 3], [3, 3, 3, 2, 3],
             [4, 4, 5, 4, 5], [5, 4, 5, 4, 5]]),
    ],
)  # fmt: skip
def test_neighbour_positions_by_hand(context_slices, expected):
    assert data.neighbour_positions(GAPPED, context_slices).tolist() == expected


def test_stack_context_puts_each_neighbour_in_its_own_three_channels():
    images = np.arange(3, dtype=np.uint8)[:, None, None, None] * np.ones((3, 2, 2, 3), np.uint8)
    stacked = data.stack_context(images, np.array([[0, 0, 1], [1, 0, 2], [2, 1, 2]]))
    assert stacked.shape == (3, 2, 2, 9) and stacked.dtype == np.uint8
    assert stacked[:, 0, 0].tolist() == [[0] * 3 + [0] * 3 + [1] * 3, [1] * 3 + [0] * 3 + [2] * 3,
                                         [2] * 3 + [1] * 3 + [2] * 3]  # fmt: skip


def test_load_arrays_with_context_slices(tiny_records):
    first = [r for r in tiny_records if r.patient_id == tiny_records[0].patient_id]
    images, masks = data.load_arrays(first, context_slices=1, progress=False)
    plain, plain_masks = data.load_arrays(first, progress=False)
    assert images.shape == (len(first), 64, 64, 9) and images.dtype == np.uint8
    np.testing.assert_array_equal(masks, plain_masks)  # the middle slice's masks
    np.testing.assert_array_equal(images[:, ..., :3], plain)
    np.testing.assert_array_equal(images[1:, ..., 3:6], plain[:-1])  # the previous slice
    np.testing.assert_array_equal(images[:-1, ..., 6:], plain[1:])  # the next slice
    np.testing.assert_array_equal(images[0, ..., 3:6], plain[0])  # none before the first
    np.testing.assert_array_equal(images[-1, ..., 6:], plain[-1])  # none after the last


def test_read_slice_finds_neighbours_by_name(tiny_records):
    patient = [r for r in tiny_records if r.patient_id == tiny_records[0].patient_id]
    first, second, third = (data.read_image(r.image_path) for r in patient[:3])
    np.testing.assert_array_equal(
        data.read_slice(patient[1].image_path, context_slices=1),
        np.concatenate([second, first, third], axis=-1),
    )
    np.testing.assert_array_equal(
        data.read_slice(patient[0].image_path, context_slices=1),
        np.concatenate([first, first, second], axis=-1),
    )
    np.testing.assert_array_equal(data.read_slice(patient[0].image_path), first)


def test_read_slice_without_a_slice_number_repeats_the_slice(tmp_path):
    image = make_image(0)
    write_image(tmp_path / "scan.png", image)
    np.testing.assert_array_equal(
        data.read_slice(tmp_path / "scan.png", context_slices=1), np.tile(image, (1, 1, 3))
    )


@pytest.mark.parametrize(
    "names",
    [
        ("scan_009", "scan_010", "scan_011"),  # zero-padded
        ("scan_099", "scan_100", "scan_101"),  # padded, though 100 itself has no leading zero
        ("P_9", "P_10", "P_11"),  # Kaggle's: 9 is not written "09"
    ],
)
def test_read_slice_finds_neighbours_with_or_without_leading_zeros(tmp_path, names):
    below, middle, above = (make_image(seed) for seed in range(3))
    for name, image in zip(names, (below, middle, above), strict=True):
        write_image(tmp_path / f"{name}.png", image)
    np.testing.assert_array_equal(
        data.read_slice(tmp_path / f"{names[1]}.png", context_slices=1),
        np.concatenate([middle, below, above], axis=-1),
    )


@pytest.mark.parametrize("context_slices", [0, 1])
def test_read_slice_of_a_zero_padded_name_reads_that_file(tmp_path, context_slices):
    # scan_007.png is read as named, not as scan_7.png; it has no neighbours (scan_006.png,
    # scan_6.png, ...), so it stands in for them.
    image = make_image(0)
    write_image(tmp_path / "scan_007.png", image)
    np.testing.assert_array_equal(
        data.read_slice(tmp_path / "scan_007.png", context_slices=context_slices),
        np.tile(image, (1, 1, 1 + 2 * context_slices)),
    )


def test_read_slice_refuses_neighbours_of_another_size(tmp_path):
    write_image(tmp_path / "P_1.png", make_image(0, size=16))
    write_image(tmp_path / "P_2.png", make_image(1, size=8))
    with pytest.raises(DatasetError, match="P_2.png: 8x8, but its neighbour P_1.png is 16x16"):
        data.read_slice(tmp_path / "P_1.png", context_slices=1)


def test_augmentation_moves_and_shades_every_slice_alike():
    slice_a = np.stack([np.full((8, 8), v, np.uint8) for v in (10, 200, 30)], axis=-1)
    slice_b = np.stack([np.full((8, 8), v, np.uint8) for v in (20, 100, 40)], axis=-1)
    slice_a[2:5, 3:7] = slice_b[2:5, 3:7] = 250  # a bright block that the warp moves
    image = np.concatenate([slice_a, slice_b, slice_a], axis=-1)
    turn = np.array([0.9, -0.2, 1.0, 0.2, 0.9, -0.5])
    gain, gamma = np.array([1.1, 0.9, 1.0]), np.array([0.8, 1.2, 1.0])
    mask = np.zeros((8, 8), np.uint8)
    out, _ = pipeline._augment_arrays(image, mask, True, turn, gain, gamma, np.zeros(3, bool))
    one, _ = pipeline._augment_arrays(slice_a, mask, True, turn, gain, gamma, np.zeros(3, bool))
    assert out.shape == (8, 8, 9)
    np.testing.assert_array_equal(out[..., :3], one)
    np.testing.assert_array_equal(out[..., 6:], one)
    np.testing.assert_array_equal(out[..., 3:6] >= 240, one >= 240)  # moved alike
    # FLAIR takes the place of pre-contrast in every slice, each its own FLAIR.
    unmoved = [1, 0, 0, 0, 1, 0]
    out, _ = pipeline._augment_arrays(image, mask, False, unmoved, np.ones(3), np.ones(3),
                                      np.array([True, False, False]))  # fmt: skip
    assert out[0, 0].tolist() == [200, 200, 30, 100, 100, 40, 200, 200, 30]


def test_make_dataset_augments_images_with_context_slices(tiny_records):
    images, masks = data.load_arrays(tiny_records[:8], context_slices=1, progress=False)
    dataset = data.make_dataset(images, masks, batch_size=8, augment=True, seed=1)
    assert dataset.element_spec[0].shape.as_list() == [None, 64, 64, 9]
    x = next(iter(dataset))[0].numpy()
    assert x.shape == (8, 64, 64, 9) and not np.array_equal(x, images)


def numbered(count: int = 10, size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Image i is filled with the value i and its mask with i % 2."""
    images = np.repeat(np.arange(count, dtype=np.uint8), size * size * 3)
    images = images.reshape(count, size, size, 3)
    return images, (images[..., 0] % 2).astype(np.uint8)


def first_values(dataset, batches: int | None = None) -> list[list[int]]:
    """The image numbers of each batch."""
    if batches is not None:
        dataset = dataset.take(batches)
    return [x[:, 0, 0, 0].numpy().astype(int).tolist() for x, _ in dataset]


def test_make_dataset_batches_in_order():
    images, masks = numbered()
    dataset = data.make_dataset(images, masks, batch_size=4)
    batches = list(dataset)
    assert [x.shape for x, _ in batches] == [(4, 4, 4, 3), (4, 4, 4, 3), (2, 4, 4, 3)]
    assert [y.shape for _, y in batches] == [(4, 4, 4, 1), (4, 4, 4, 1), (2, 4, 4, 1)]
    assert {x.dtype.name for x, y in batches} == {y.dtype.name for x, y in batches} == {"float32"}
    assert first_values(dataset) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert batches[2][1].numpy()[:, 0, 0, 0].tolist() == [0.0, 1.0]  # masks of 8 and 9
    assert first_values(data.make_dataset(images, masks, batch_size=4, drop_remainder=True)) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
    ]


def test_make_dataset_repeat_and_shuffle():
    images, masks = numbered()
    repeated = first_values(data.make_dataset(images, masks, batch_size=5, repeat=True), 4)
    assert repeated == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]] * 2

    shuffled = data.make_dataset(images, masks, batch_size=10, shuffle=True, seed=3)
    (first_epoch,) = first_values(shuffled)
    assert sorted(first_epoch) == list(range(10)) and first_epoch != list(range(10))
    assert first_values(shuffled) == [first_epoch]  # the same pass each time it is read
    again = data.make_dataset(images, masks, batch_size=10, shuffle=True, seed=3)
    assert first_values(again) == [first_epoch]

    endless = data.make_dataset(images, masks, batch_size=10, shuffle=True, repeat=True, seed=3)
    epochs = first_values(endless, 3)
    assert epochs[0] == first_epoch
    assert all(sorted(epoch) == list(range(10)) for epoch in epochs)  # each epoch whole
    assert epochs[1] != epochs[0]  # reshuffled on each pass


def test_slice_batches_run_on_across_passes_when_repeated():
    images, masks = numbered()
    batches = data.SliceBatches(images, masks, batch_size=4, shuffle=True, repeat=True, seed=3)
    assert batches.num_batches is None
    first, second = batches.order(0), batches.order(1)
    # Batch 2 holds positions 8-11: the last two of pass 0, then the first two of pass 1.
    x, y = batches[2]
    assert x[:, 0, 0, 0].astype(int).tolist() == [*first[8:], *second[:2]]
    assert y[:, 0, 0, 0].tolist() == [float(i % 2) for i in [*first[8:], *second[:2]]]
    assert (x.dtype, y.dtype, y.shape) == (np.float32, np.float32, (4, 4, 4, 1))


def test_slice_batches_count_one_pass_without_repeat():
    images, masks = numbered()
    assert data.SliceBatches(images, masks, batch_size=4).num_batches == 3
    assert data.SliceBatches(images, masks, batch_size=4, drop_remainder=True).num_batches == 2
    batches = data.SliceBatches(images, masks, batch_size=4)
    assert batches[2][0][:, 0, 0, 0].tolist() == [8.0, 9.0]
    with pytest.raises(IndexError, match="batch 3 of a stream of 3 batches"):
        batches[3]


def test_make_dataset_from_a_later_batch_is_the_rest_of_the_stream(tiny_arrays):
    settings = dict(batch_size=4, augment=True, shuffle=True, repeat=True, seed=5)
    whole = [x.numpy() for x, _ in data.make_dataset(*tiny_arrays, **settings).take(5)]
    rest = data.make_dataset(*tiny_arrays, first_batch=3, **settings).take(2)
    for expected, (x, _) in zip(whole[3:], rest, strict=True):
        np.testing.assert_array_equal(x.numpy(), expected)


def test_slice_batches_augment_alike_with_threads(tiny_arrays):
    settings = dict(batch_size=6, augment=True, shuffle=True, repeat=True, seed=2)
    alone = data.SliceBatches(*tiny_arrays, **settings)
    threaded = data.SliceBatches(*tiny_arrays, workers=3, **settings)
    for index in (0, 5):
        for expected, got in zip(alone[index], threaded[index], strict=True):
            np.testing.assert_array_equal(got, expected)


def test_slice_batches_keep_one_set_of_threads(tiny_arrays):
    def stream_threads():
        return {t for t in threading.enumerate() if t.name.startswith("slice-batches")}

    others = stream_threads()
    batches = data.SliceBatches(*tiny_arrays, batch_size=6, augment=True, repeat=True, workers=2)
    kept = set()
    for index in range(6):
        batches[index]
        alive = stream_threads() - others
        assert kept <= alive, f"batch {index} replaced the stream's threads"
        kept = alive
    assert 1 <= len(kept) <= 2


def test_slice_batches_reject_bad_arguments():
    images, masks = numbered()
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        data.SliceBatches(images, masks, seed=-1)
    with pytest.raises(ValueError, match="no images to make batches of"):
        data.SliceBatches(images[:0], masks[:0])


def test_make_dataset_refuses_bad_arguments():
    images, masks = numbered()
    with pytest.raises(ValueError, match="10 images but 9 masks"):
        data.make_dataset(images, masks[:9])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        data.make_dataset(images, masks, batch_size=0)


@pytest.fixture(scope="module")
def tiny_arrays(tiny_records):
    return data.load_arrays(tiny_records[:12], progress=False)


def augmented(arrays, seed: int, batches: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    dataset = data.make_dataset(
        *arrays, batch_size=4, augment=True, shuffle=True, repeat=True, seed=seed
    )
    return [(x.numpy(), y.numpy()) for x, y in dataset.take(batches)]


def test_augmentation_is_deterministic_per_seed(tiny_arrays):
    first, again, other = (
        augmented(tiny_arrays, 5),
        augmented(tiny_arrays, 5),
        augmented(tiny_arrays, 6),
    )
    for (x, y), (x_again, y_again) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, x_again)
        np.testing.assert_array_equal(y, y_again)
    assert not np.array_equal(first[0][0], other[0][0])


def test_augmentation_changes_images_and_keeps_masks_binary(tiny_arrays):
    images, masks = tiny_arrays
    plain = data.make_dataset(images, masks, batch_size=12)
    changed = data.make_dataset(images, masks, batch_size=12, augment=True)
    # Static shapes survive augmentation (Keras checks them against the model's input).
    assert changed.element_spec[0].shape.as_list() == [None, 64, 64, 3]
    assert changed.element_spec[1].shape.as_list() == [None, 64, 64, 1]
    (x, y), (x_aug, y_aug) = next(iter(plain)), next(iter(changed))
    assert x_aug.shape == (12, 64, 64, 3) and y_aug.shape == (12, 64, 64, 1)
    assert x_aug.dtype.name == y_aug.dtype.name == "float32"
    x_aug, y_aug = x_aug.numpy(), y_aug.numpy()
    assert x_aug.min() >= 0.0 and x_aug.max() <= 255.0
    assert set(np.unique(y_aug).tolist()) <= {0.0, 1.0}
    assert np.any(y_aug) and np.any(y)  # tumours survive
    for before, after in zip(x.numpy(), x_aug, strict=True):
        assert np.abs(before - after).mean() > 1.0


def test_augmentation_turns_and_scales_a_wide_slice_about_its_own_centre():
    # A centred rectangle stays centred under any flip, rotation and scale about the centre; a
    # centre taken from the height alone would move it sideways by up to 0.1 x (W - H) / 2.
    height, width = 32, 96
    images = np.zeros((1, height, width, 3), np.uint8)
    masks = np.zeros((1, height, width), np.uint8)
    masks[0, 12:20, 40:56] = 1
    dataset = data.make_dataset(images, masks, batch_size=1, augment=True, repeat=True, seed=3)
    for _, mask in dataset.take(40):
        rows, columns = np.nonzero(mask.numpy()[0, ..., 0])
        assert abs(columns.mean() - (width - 1) / 2) < 0.75
        assert abs(rows.mean() - (height - 1) / 2) < 0.75


def test_augmentation_accepts_float_arrays(tiny_arrays):
    images, masks = tiny_arrays
    as_uint8 = data.make_dataset(images, masks, batch_size=12, augment=True, seed=2)
    as_float = data.make_dataset(
        images.astype(np.float32), masks.astype(np.float32), batch_size=12, augment=True, seed=2
    )
    for expected, got in zip(next(iter(as_uint8)), next(iter(as_float)), strict=True):
        np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_augmentation_moves_image_and_mask_together():
    # The image is bright exactly where the mask is 1, so after any flip/rotation/scale the two
    # must still overlap: intensity changes keep 200 well above 100.
    yy, xx = np.mgrid[:64, :64]
    masks = np.stack([((yy - 20) ** 2 + (xx - 40 - k) ** 2 < 100) for k in range(8)])
    masks = masks.astype(np.uint8)
    images = np.repeat(masks[..., None] * 200, 3, axis=-1).astype(np.uint8)
    dataset = data.make_dataset(images, masks, batch_size=8, augment=True, seed=1)
    x, y = (t.numpy() for t in next(iter(dataset)))
    for image, mask in zip(x, y, strict=True):
        bright, label = image[..., 1] > 100, mask[..., 0] > 0
        assert (bright & label).sum() / (bright | label).sum() > 0.85
    assert not np.array_equal(y[..., 0], masks)  # they did move


def test_flair_takes_the_place_of_the_sequences_named():
    image = np.stack([np.full((4, 4), v, np.uint8) for v in (10, 200, 30)], axis=-1)
    identity = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    unchanged = (False, identity, np.ones(3), np.ones(3))
    mask = np.zeros((4, 4), np.uint8)
    for replaced, expected in [
        ([False, False, False], (10, 200, 30)),
        ([True, False, False], (200, 200, 30)),
        ([True, False, True], (200, 200, 200)),
    ]:
        out, _ = pipeline._augment_arrays(image, mask, *unchanged, np.array(replaced))
        assert out[2, 2].tolist() == list(expected)


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_missing_sequence_rate_sets_how_many_slices_have_flair_in_place(tiny_arrays, rate):
    images, masks = tiny_arrays
    images = images.copy()
    images[..., 0], images[..., 2] = 40, 90  # sequences that never equal FLAIR by chance
    dataset = data.make_dataset(
        images, masks, batch_size=12, augment=True, seed=3, missing_sequence_rate=rate
    )
    x = next(iter(dataset))[0].numpy()
    pre, post = ((x[..., channel] == x[..., 1]).all(axis=(1, 2)) for channel in (0, 2))
    if rate == 0.0:
        assert not pre.any() and not post.any()
    else:  # every slice has FLAIR in place of pre, post or both, and all three occur in 12
        assert (pre | post).all()
        assert (pre & ~post).any() and (~pre & post).any() and (pre & post).any()


@pytest.mark.parametrize("max_gamma", [1.0, 3.0])
def test_max_gamma_bounds_how_far_contrast_is_bent(max_gamma):
    # A flat grey 128 stays 128 under the warp inside the image; gain alone moves it by at most
    # 10% (115-141), and a gamma of up to 3 darkens it at most to 255 (0.9 * 128 / 255)^3 = 23.5.
    images = np.full((24, 16, 16, 3), 128, np.uint8)
    masks = np.zeros((24, 16, 16), np.uint8)
    dataset = data.make_dataset(images, masks, batch_size=24, augment=True, max_gamma=max_gamma)
    centres = next(iter(dataset))[0].numpy()[:, 8, 8, :]
    within_gain = (centres >= 115) & (centres <= 141)
    assert within_gain.all() if max_gamma == 1.0 else not within_gain.all()
    assert centres.min() >= 255 * (0.9 * 128 / 255) ** max_gamma - 0.1


def test_max_gamma_below_1_is_a_value_error(tiny_arrays):
    with pytest.raises(ValueError, match="max_gamma must be >= 1, got 0.8"):
        data.make_dataset(*tiny_arrays, augment=True, max_gamma=0.8)


def test_missing_sequence_rate_outside_0_1_is_refused(tiny_arrays):
    with pytest.raises(ValueError, match="missing_sequence_rate must be in \\[0, 1\\], got 2"):
        data.make_dataset(*tiny_arrays, augment=True, missing_sequence_rate=2)


def test_vary_scanner_multiplies_blurs_and_adds_noise_as_given():
    image = np.full((6, 8, 6), 100.0, np.float32)  # two slices of three sequences, flat grey
    no_bias, no_noise = np.zeros((3, 3, 3)), np.zeros_like(image)
    double_first = no_bias.copy()
    double_first[..., 0] = np.log(2.0)
    out = data.vary_scanner(image, double_first, 0.0, no_noise)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(out[..., [0, 3]], 200.0, rtol=1e-5)  # each slice's first sequence
    np.testing.assert_allclose(out[..., [1, 2, 4, 5]], 100.0, rtol=1e-5)
    np.testing.assert_allclose(data.vary_scanner(image, no_bias, 1.0, no_noise), 100.0, rtol=1e-5)
    noise = np.full_like(image, 5.0)
    noise[0, 0, 0] = 500.0  # clipped to the grey range
    out = data.vary_scanner(image, no_bias, 0.0, noise)
    assert out[0, 0, 0] == 255.0 and out[1, 1, 1] == 105.0
    # A field from x1.4 at the left edge to /1.4 at the right: smooth, within its bounds.
    ramp = np.zeros((3, 3, 3))
    ramp[:, 0], ramp[:, 2] = np.log(1.4), -np.log(1.4)
    row = data.vary_scanner(image, ramp, 0.0, no_noise)[3, :, 1]
    assert (np.diff(row) < 0).all()
    assert row.min() >= 100 / 1.4 - 1e-3 and row.max() <= 140 + 1e-3


def test_scanner_variation_changes_the_image_only_where_drawn():
    rng = np.random.default_rng(0)
    image = rng.integers(20, 200, (16, 16, 3), dtype=np.uint8)
    mask = np.zeros((16, 16, 1), np.uint8)
    mask[4:9, 5:11] = 1
    plain = pipeline.augment_pair(image, mask, (3, 1, 7), 0.15, 2.0)
    unvaried = pipeline.augment_pair(image, mask, (3, 1, 7), 0.15, 2.0, scanner_variation_rate=0)
    varied = pipeline.augment_pair(image, mask, (3, 1, 7), 0.15, 2.0, scanner_variation_rate=1)
    np.testing.assert_array_equal(unvaried[0], plain[0])  # the other draws are as they were
    np.testing.assert_array_equal(varied[1], plain[1])  # moved alike: the same mask
    assert np.abs(varied[0] - plain[0]).mean() > 1.0
    assert varied[0].min() >= 0 and varied[0].max() <= 255


def test_scanner_variation_rate_outside_0_1_is_a_value_error(tiny_arrays):
    with pytest.raises(ValueError, match="scanner_variation_rate must be in \\[0, 1\\], got 1.5"):
        data.SliceBatches(*tiny_arrays, augment=True, scanner_variation_rate=1.5)


# --- finding the data ----------------------------------------------------------------------


def test_resolve_given_path_and_environment(kaggle, tmp_path):
    folder = kaggle.parent
    assert data.resolve_data_dir(folder, environ={}) == (folder, "given")
    environ = {"PSPSEG_DATA_DIR": str(folder)}
    assert data.resolve_data_dir(environ=environ, download=False) == (folder, "given")


def test_resolve_missing_given_path_raises(tmp_path):
    with pytest.raises(DatasetError, match="folder not found"):
        data.resolve_data_dir(tmp_path / "nowhere", environ={})
    with pytest.raises(DatasetError, match="folder not found"):
        data.resolve_data_dir(environ={"PSPSEG_DATA_DIR": str(tmp_path / "nowhere")})


def test_resolve_generates_synthetic_data_once(tmp_path, capsys):
    target = tmp_path / "synthetic"
    found = data.resolve_data_dir(
        environ={}, download=False, synthetic_dir=target, synthetic_patients=3
    )
    assert found == (target, "synthetic")
    assert "generating a synthetic" in capsys.readouterr().out
    patients = sorted(path.name for path in (target / "kaggle_3m").iterdir() if path.is_dir())
    assert len(patients) == 3
    # A second call reuses it.
    assert data.resolve_data_dir(environ={}, download=False, synthetic_dir=target) == found
    assert capsys.readouterr().out == ""


def test_resolve_falls_back_quickly_when_kaggle_is_unreachable(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "_kaggle_reachable", lambda timeout: False)
    (tmp_path / "synthetic" / "kaggle_3m").mkdir(parents=True)  # already generated
    start = time.monotonic()
    found = data.resolve_data_dir(environ={}, download=True, synthetic_dir=tmp_path / "synthetic")
    assert found == (tmp_path / "synthetic", "synthetic")
    assert time.monotonic() - start < 3.0


def test_resolve_falls_back_when_the_download_fails(tmp_path, monkeypatch, capsys):
    class FailingKagglehub:
        @staticmethod
        def dataset_download(handle):
            raise ConnectionError(f"cannot fetch {handle}")

    monkeypatch.setattr(sources, "_kaggle_reachable", lambda timeout: True)
    monkeypatch.setitem(__import__("sys").modules, "kagglehub", FailingKagglehub)
    (tmp_path / "synthetic" / "kaggle_3m").mkdir(parents=True)
    found = data.resolve_data_dir(environ={}, synthetic_dir=tmp_path / "synthetic")
    assert found == (tmp_path / "synthetic", "synthetic")
    out = capsys.readouterr().out
    assert "Kaggle download failed (ConnectionError" in out
    assert "cannot fetch mateuszbuda/lgg-mri-segmentation" in out


def test_kaggle_reachable_answers_within_its_timeout():
    start = time.monotonic()
    answer = sources._kaggle_reachable(timeout=1.0)
    assert isinstance(answer, bool)
    assert time.monotonic() - start < 5.0


def test_kaggle_reachable_does_not_wait_for_a_hanging_dns_lookup(monkeypatch):
    release = threading.Event()

    def hanging_lookup(*args, **kwargs):
        release.wait(30)  # like a resolver that never answers
        raise socket.gaierror("no answer")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
    try:
        start = time.monotonic()
        assert sources._kaggle_reachable(timeout=0.5) is False
        assert time.monotonic() - start < 2.0
    finally:
        release.set()


# --- converting the Kaggle layout to the article's -----------------------------------------


def test_prepare_writes_png_pairs(tiny_kaggle_dir, tiny_records, tiny_article_dir):
    expected = sorted(f"{r.patient_id}_{r.slice_index}.png" for r in tiny_records)
    assert sorted(p.name for p in (tiny_article_dir / "images").iterdir()) == expected
    assert sorted(p.name for p in (tiny_article_dir / "masks").iterdir()) == expected
    converted = data.find_slices(tiny_article_dir, progress=False)
    assert [(r.patient_id, r.slice_index, r.tumour_pixels) for r in converted] == [
        (r.patient_id, r.slice_index, r.tumour_pixels) for r in tiny_records
    ]
    for before, after in zip(tiny_records[:8], converted[:8], strict=True):
        np.testing.assert_array_equal(
            data.read_image(after.image_path), data.read_image(before.image_path)
        )
        raw = cv2.imread(str(after.mask_path), cv2.IMREAD_UNCHANGED)
        assert raw.ndim == 2 and set(np.unique(raw).tolist()) <= {0, 1}
        assert int(raw.sum()) == before.tumour_pixels


def test_prepare_returns_the_written_records(kaggle, tmp_path):
    records = data.prepare(kaggle, tmp_path / "out", progress=False)
    assert [r.image_path.name for r in records] == [
        "P1_1.png",
        "P1_2.png",
        "P2_1.png",
        "P2_2.png",
        "P2_3.png",
    ]
    assert [r.tumour_pixels for r in records] == [0, 3, 5, 0, 9]


def test_prepare_refuses_a_non_empty_output(kaggle, tmp_path):
    (tmp_path / "out" / "masks").mkdir(parents=True)
    (tmp_path / "out" / "masks" / "old.png").write_bytes(b"")
    with pytest.raises(
        FileExistsError, match="masks is not empty; choose a new OUT_DIR or empty it"
    ):
        data.prepare(kaggle, tmp_path / "out", progress=False)
    assert [p.name for p in (tmp_path / "out" / "masks").iterdir()] == ["old.png"]


def test_prepare_refuses_the_article_layout(tiny_article_dir, tmp_path):
    with pytest.raises(DatasetError, match="already in the article layout"):
        data.prepare(tiny_article_dir, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_prepare_refuses_a_broken_kaggle_dataset(kaggle, tmp_path):
    shutil.rmtree(kaggle / "P2")
    empty_mask_path = kaggle / "P1" / "P1_1_mask.tif"
    empty_mask_path.write_bytes(b"")
    with pytest.raises(DatasetError, match="file is empty"):
        data.prepare(kaggle, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
