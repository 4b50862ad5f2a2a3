"""Tests of pspseg_utils.synthetic: layout, file formats, determinism, and that the data is a
real segmentation problem (tumour on about a third of the slices, bright on FLAIR, but not the
only bright thing on FLAIR). Small images keep the whole file to a few seconds."""

from __future__ import annotations

import csv
import re

import cv2
import numpy as np
import pytest

from pspseg_utils.rules import SEQUENCES
from pspseg_utils.synthetic import (
    generate_dataset,
    patient_folder_name,
    synthesize_patient,
)

SMALL = {"image_size": 64, "slices_per_patient": (6, 10), "progress": False}
FLAIR = SEQUENCES.index("FLAIR")


def read_image(path) -> np.ndarray:
    """A slice in dataset channel order (pre-contrast, FLAIR, post-contrast)."""
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1]


def read_mask(path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def file_bytes(root) -> dict:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("synthetic"), num_patients=4, seed=0, **SMALL)


@pytest.fixture(scope="module")
def patients():
    """12 patients at 64 x 64 with the default 20..40 slices, as generate_dataset draws them."""
    volumes = []
    for index in range(1, 13):
        rng = np.random.default_rng([0, index])
        num_slices = int(rng.integers(20, 41))
        volumes.append(synthesize_patient(rng, num_slices=num_slices, image_size=64))
    return volumes


def brain_and_surroundings(volume: np.ndarray, mask: np.ndarray) -> tuple:
    """Boolean (S, H, W) maps: brain (the head minus a margin that holds scalp and skull) and
    the tumour grown by two pixels (its partial-volume border is not 'other brain')."""
    head = (volume.max(axis=-1) > 0).astype(np.uint8)
    shrink, grow = np.ones((9, 9), np.uint8), np.ones((5, 5), np.uint8)
    brain = np.stack([cv2.erode(slice_, shrink) for slice_ in head]).astype(bool)
    near_tumour = np.stack([cv2.dilate(slice_, grow) for slice_ in mask]).astype(bool)
    return brain, near_tumour


# --- layout and formats --------------------------------------------------------------------


def test_layout_names_and_csv(dataset):
    assert dataset.name == "kaggle_3m"
    folders = sorted(path.name for path in dataset.iterdir() if path.is_dir())
    assert folders == sorted(
        [
            "SYN_AA_0001_20000101",
            "SYN_BB_0002_20000101",
            "SYN_CC_0003_20000101",
            "SYN_AA_0004_20000101",
        ]
    )
    assert patient_folder_name(3) == "SYN_CC_0003_20000101"

    with open(dataset / "data.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["Patient", "site", "slices", "tumour_slices"]
    patients = ["SYN_AA_0001", "SYN_BB_0002", "SYN_CC_0003", "SYN_AA_0004"]
    assert [row["Patient"] for row in rows] == patients
    assert [row["site"] for row in rows] == ["AA", "BB", "CC", "AA"]

    for row in rows:
        folder = dataset / f"{row['Patient']}_20000101"
        slices = int(row["slices"])
        assert 6 <= slices <= 10
        expected = {f"{folder.name}_{n}.tif" for n in range(1, slices + 1)}
        expected |= {f"{folder.name}_{n}_mask.tif" for n in range(1, slices + 1)}
        assert {path.name for path in folder.iterdir()} == expected
        masks = [read_mask(folder / f"{folder.name}_{n}_mask.tif") for n in range(1, slices + 1)]
        assert int(row["tumour_slices"]) == sum(bool(mask.any()) for mask in masks) > 0


def test_image_and_mask_formats(dataset):
    folder = dataset / "SYN_AA_0001_20000101"
    for path in sorted(folder.glob("*_mask.tif")):
        image = read_image(str(path).replace("_mask.tif", ".tif"))
        mask = read_mask(path)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert mask.shape == (64, 64) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
        assert not image[0, 0].any() and not image[-1, -1].any()  # black background


def test_files_hold_the_synthesized_volume_in_dataset_channel_order(dataset):
    rng = np.random.default_rng([0, 2])
    num_slices = int(rng.integers(6, 11))
    volume, mask = synthesize_patient(rng, num_slices=num_slices, image_size=64)
    folder = dataset / "SYN_BB_0002_20000101"
    for n in range(1, num_slices + 1):
        np.testing.assert_array_equal(read_image(folder / f"{folder.name}_{n}.tif"), volume[n - 1])
        np.testing.assert_array_equal(
            read_mask(folder / f"{folder.name}_{n}_mask.tif"), mask[n - 1]
        )
    # FLAIR is channel 1: the tumour is brightest there, relative to the rest of the brain.
    tumour = mask > 0
    brain = volume.max(axis=-1) > 0
    contrast = [volume[..., c][tumour].mean() / volume[..., c][brain].mean() for c in range(3)]
    assert int(np.argmax(contrast)) == FLAIR


def test_synthesize_patient_shapes_and_values():
    volume, mask = synthesize_patient(np.random.default_rng(5), num_slices=7, image_size=32)
    assert volume.shape == (7, 32, 32, 3) and volume.dtype == np.uint8
    assert mask.shape == (7, 32, 32) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255} and mask.any()
    assert not volume[:, 0, 0].any()  # outside the head
    assert volume[mask > 0].any()  # the tumour is inside the head


# --- determinism ---------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    options = {"num_patients": 2, **SMALL}
    first = file_bytes(generate_dataset(tmp_path / "a", seed=7, **options))
    again = file_bytes(generate_dataset(tmp_path / "b", seed=7, **options))
    other = file_bytes(generate_dataset(tmp_path / "c", seed=8, **options))
    assert first == again
    shared = first.keys() & other.keys()
    assert any(first[name] != other[name] for name in shared if name.endswith(".tif"))


def test_patients_do_not_depend_on_each_other(tmp_path):
    one = file_bytes(generate_dataset(tmp_path / "one", num_patients=1, seed=3, **SMALL))
    three = file_bytes(generate_dataset(tmp_path / "three", num_patients=3, seed=3, **SMALL))
    assert all(three[name] == data for name, data in one.items() if name.endswith(".tif"))


# --- realism -------------------------------------------------------------------------------


def test_about_a_third_of_slices_have_tumour_and_every_patient_has_some(patients):
    per_patient = [mask.any(axis=(1, 2)) for _, mask in patients]
    assert all(has_tumour.any() for has_tumour in per_patient)
    fraction = sum(h.sum() for h in per_patient) / sum(h.size for h in per_patient)
    assert 0.2 <= fraction <= 0.45


def test_tumour_spans_consecutive_slices(patients):
    for _, mask in patients:
        slices = np.flatnonzero(mask.any(axis=(1, 2)))
        assert slices[-1] - slices[0] + 1 == slices.size


def test_tumour_is_brighter_on_flair_than_the_brain_around_it(patients):
    for volume, mask in patients:
        brain, near_tumour = brain_and_surroundings(volume, mask)
        tumour_slices = mask.any(axis=(1, 2))[:, None, None]
        flair = volume[..., FLAIR].astype(np.float32)
        tumour_mean = flair[mask > 0].mean()
        around_mean = flair[brain & ~near_tumour & tumour_slices].mean()
        assert tumour_mean > 1.05 * around_mean


def test_thresholding_flair_does_not_solve_it(patients):
    """Some non-tumour brain pixels are brighter on FLAIR than the typical tumour pixel."""
    above, total = 0, 0
    for volume, mask in patients:
        brain, near_tumour = brain_and_surroundings(volume, mask)
        flair = volume[..., FLAIR]
        other = flair[brain & ~near_tumour]
        above += int(np.count_nonzero(other > np.median(flair[mask > 0])))
        total += other.size
    assert above / total > 0.001


# --- argument checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "quoted"),
    [
        ({"num_patients": 0}, "0"),
        ({"image_size": 24}, "24"),
        ({"image_size": 100}, "100"),
        ({"image_size": 64.0}, "64.0"),
        ({"slices_per_patient": (10, 6)}, "(10, 6)"),
        ({"slices_per_patient": (2, 6)}, "(2, 6)"),
        ({"slices_per_patient": (6,)}, "(6,)"),
        ({"slices_per_patient": "6-10"}, "'6-10'"),
        ({"seed": -1}, "-1"),
    ],
)
def test_bad_arguments_raise_value_error_quoting_them(tmp_path, options, quoted):
    arguments = {"num_patients": 1, **SMALL, **options}
    with pytest.raises(ValueError, match=re.escape(quoted)):
        generate_dataset(tmp_path, **arguments)
    assert not (tmp_path / "kaggle_3m").exists()


def test_synthesize_patient_checks_its_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="num_slices"):
        synthesize_patient(rng, num_slices=2, image_size=64)
    with pytest.raises(ValueError, match="63"):
        synthesize_patient(rng, num_slices=8, image_size=63)


def test_refuses_a_non_empty_output_folder(tmp_path):
    (tmp_path / "kaggle_3m").mkdir()
    (tmp_path / "kaggle_3m" / "leftover.txt").write_text("x")
    with pytest.raises(FileExistsError, match="kaggle_3m"):
        generate_dataset(tmp_path, num_patients=1, **SMALL)


def test_accepts_an_existing_empty_output_folder(tmp_path):
    (tmp_path / "kaggle_3m").mkdir()
    root = generate_dataset(tmp_path, num_patients=1, **SMALL)
    assert (root / "data.csv").exists()


def test_progress_bar_can_be_switched_off(tmp_path, capsys):
    generate_dataset(tmp_path, num_patients=1, **SMALL)
    assert "patient" not in capsys.readouterr().err
