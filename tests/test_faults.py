"""Faults that once gave wrong results without a word: a full disk, a resume on other data or
settings, two trainings in one run folder, a model of another kind, NaN pixels, two files for one
slice, damaged files. Each must now fail loudly, naming the file and the fix, and leave nothing
half-written."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from conftest import TINY_TRAINING as TINY

from pspseg_utils import data, inference, runlock, training
from pspseg_utils.synthetic import generate_dataset
from pspseg_utils.training import TrainConfig


@pytest.fixture(scope="module")
def trained_run(tiny_kaggle_dir, tmp_path_factory):
    """A finished one-epoch run folder on the tiny dataset (copy it before changing it)."""
    run_dir = tmp_path_factory.mktemp("faults") / "run"
    training.train(tiny_kaggle_dir, run_dir, TrainConfig(**TINY), progress=False)
    return run_dir


@pytest.fixture
def run_copy(trained_run, tmp_path):
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def _disk_full(monkeypatch, after: int = 0):
    """Make every Path.write_bytes after the first `after` fail as on a full disk, having
    written half its bytes (as a real full disk does)."""
    real, calls = Path.write_bytes, []

    def write_bytes(self, content):
        calls.append(self)
        if len(calls) > after:
            real(self, content[: len(content) // 2])
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, content)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


# --- 1. Writes are checked: a full disk is an error naming the file, with no partial file ---


def test_write_image_on_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    _disk_full(monkeypatch)
    target = tmp_path / "mask.png"
    with pytest.raises(OSError, match=f"could not write {target}: the disk is full"):
        data.write_image(target, np.zeros((8, 8), np.uint8))
    assert list(tmp_path.iterdir()) == []  # neither mask.png nor its temporary file


def test_write_image_writes_a_readable_file(tmp_path):
    mask = np.eye(8, dtype=np.uint8)
    data.write_image(tmp_path / "mask.png", mask)
    assert np.array_equal(data.read_mask(tmp_path / "mask.png"), mask)
    assert [p.name for p in tmp_path.iterdir()] == ["mask.png"]


def test_predict_files_stops_at_the_first_write_that_fails(
    trained_run, tiny_records, tmp_path, monkeypatch
):
    model = inference.load_model(trained_run)
    files = [r.image_path for r in tiny_records[:4]]
    _disk_full(monkeypatch, after=3)  # two masks and one overlay fit
    with pytest.raises(OSError, match="the disk is full"):
        inference.predict_files(model, files, tmp_path / "pred", progress=False)
    written = sorted(p.name for p in (tmp_path / "pred").rglob("*") if p.is_file())
    stems = [f.stem for f in files]
    assert written == sorted([f"{stems[0]}.png", f"{stems[0]}.png", f"{stems[1]}.png"])
    for path in (tmp_path / "pred").rglob("*.png"):
        assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None  # whole files only


def test_prepare_on_a_full_disk_blames_the_disk_not_the_dataset(
    tiny_kaggle_dir, tmp_path, monkeypatch
):
    _disk_full(monkeypatch, after=5)
    with pytest.raises(OSError, match="the disk is full") as raised:
        data.prepare(tiny_kaggle_dir, tmp_path / "png", progress=False)
    assert not isinstance(raised.value, data.DatasetError)


# --- 2. A resume must be of the same run: same data, same settings ---


def test_resuming_on_other_patients_is_refused(trained_run, tmp_path):
    other = generate_dataset(tmp_path / "other", num_patients=4, seed=1, image_size=64,
                             slices_per_patient=(6, 8), progress=False)  # fmt: skip
    run_dir = Path(shutil.copytree(trained_run, tmp_path / "run"))
    log_before = (run_dir / "log.csv").read_text()
    config = TrainConfig(**{**TINY, "epochs": 2})
    with pytest.raises(ValueError, match="is not the data .* was trained on") as raised:
        training.train(other, run_dir, config, progress=False)
    assert "--no-resume" in str(raised.value)
    assert (run_dir / "log.csv").read_text() == log_before  # not trained on


def test_resuming_with_other_settings_names_them(tiny_kaggle_dir, run_copy):
    config = TrainConfig(**{**TINY, "epochs": 2, "learning_rate": 0.01, "batch_size": 2})
    with pytest.raises(ValueError, match="batch_size 4 \\(asked: 2\\), learning_rate") as raised:
        training.train(tiny_kaggle_dir, run_copy, config, progress=False)
    assert "--no-resume" in str(raised.value)


def test_resuming_with_more_epochs_and_another_budget_is_allowed(tiny_kaggle_dir, run_copy):
    config = TrainConfig(**{**TINY, "epochs": 2, "time_budget_minutes": 60})
    assert training.train(tiny_kaggle_dir, run_copy, config, progress=False).epochs_done == 2


def test_epochs_that_schedule_json_overrides_are_said_so(tiny_kaggle_dir, run_copy, capsys):
    (run_copy / "schedule.json").write_text(json.dumps({"epochs": 1}))
    training.train(tiny_kaggle_dir, run_copy, TrainConfig(**{**TINY, "epochs": 5}), progress=False)
    said = capsys.readouterr().out
    assert "schedule.json holds this run at 1 epochs" in said
    assert "epochs=5 does not change that" in said


# --- 3. One run folder, one writer ---


def test_a_held_run_folder_is_refused_naming_its_holder(tmp_path):
    busy = pytest.raises(runlock.RunFolderBusy, match=f"process {os.getpid()} on ")
    with runlock.hold_run_folder(tmp_path), busy as raised, runlock.hold_run_folder(tmp_path):
        pass
    assert "another folder (--out)" in str(raised.value)
    with runlock.hold_run_folder(tmp_path):  # released when the block ends
        pass


def test_a_training_into_a_held_run_folder_writes_nothing(tiny_kaggle_dir, run_copy):
    log_before = (run_copy / "log.csv").read_text()
    with runlock.hold_run_folder(run_copy), pytest.raises(runlock.RunFolderBusy):
        config = TrainConfig(**{**TINY, "epochs": 2})
        training.train(tiny_kaggle_dir, run_copy, config, progress=False)
    assert (run_copy / "log.csv").read_text() == log_before


@pytest.mark.skipif(os.name == "nt", reason="kill -9")
def test_the_lock_of_a_killed_process_is_free_at_once(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pspseg_utils import runlock\n"
         f"with runlock.hold_run_folder({str(tmp_path)!r}):\n"
         "    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(runlock.RunFolderBusy), runlock.hold_run_folder(tmp_path):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with runlock.hold_run_folder(tmp_path):  # no stale lock after kill -9
        pass


# --- 4. A model of another kind is refused, saying what it is ---


def _classifier(path):
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(pooled)).save(path)
    return path


def test_a_classifier_is_not_taken_for_a_segmentation_model(tmp_path):
    path = _classifier(tmp_path / "classifier.keras")
    found = r"not a segmentation model: it takes .* gives \(None, 10\)"
    with pytest.raises(ValueError, match=found):
        inference.load_model(path)


def test_a_model_of_any_input_size_is_refused_with_the_fix(tmp_path):
    inputs = keras.Input((None, None, 3))
    keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs)).save(tmp_path / "any.keras")
    with pytest.raises(ValueError, match="takes any input size .* keras.Input"):
        inference.load_model(tmp_path / "any.keras")


# --- 5. NaN or infinite pixels ---


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_pixels_are_refused(trained_run, bad):
    image = np.full((48, 48, 3), 100.0, np.float32)
    image[:24] = bad
    with pytest.raises(ValueError, match="image 0 has 3456 NaN or infinite pixel values"):
        inference.predict(inference.load_model(trained_run), image)


# --- 6. Two files for one slice ---


def test_prepare_refuses_two_files_for_one_slice(tiny_kaggle_dir, tmp_path):
    source = Path(shutil.copytree(tiny_kaggle_dir, tmp_path / "kaggle_3m"))
    patient = sorted(p for p in source.iterdir() if p.is_dir())[0]
    for suffix in (".tif", "_mask.tif"):
        shutil.copy(patient / f"{patient.name}_5{suffix}", patient / f"{patient.name}_05{suffix}")
    with pytest.raises(data.DatasetError, match="would both be written as") as raised:
        data.prepare(source, tmp_path / "png", progress=False)
    assert f"{patient.name}_5.tif" in str(raised.value)
    assert f"{patient.name}_05.tif" in str(raised.value)
    assert not (tmp_path / "png").exists()


# --- 8. Damaged files are called damaged, with the fix ---


@pytest.mark.parametrize("damage", ["empty", "truncated", "bit flip"])
def test_a_damaged_keras_file_is_called_damaged(trained_run, tmp_path, damage):
    content = bytearray((trained_run / "best.keras").read_bytes())
    if damage == "empty":
        content = bytearray()
    elif damage == "truncated":
        content = content[: len(content) // 2]
    else:
        content[len(content) // 2 : len(content) // 2 + 64] = bytes(64)
    (tmp_path / "best.keras").write_bytes(bytes(content))
    with pytest.raises(ValueError, match="is not a complete .keras file .* copy or export it"):
        inference.load_model(tmp_path / "best.keras")


def test_a_damaged_checkpoint_on_resume_names_no_resume(tiny_kaggle_dir, run_copy):
    (run_copy / "last.keras").write_bytes(b"PK\x03\x04 not really a zip")
    config = TrainConfig(**{**TINY, "epochs": 2})
    with pytest.raises(ValueError, match="cannot be resumed from: it is damaged .* --no-resume"):
        training.train(tiny_kaggle_dir, run_copy, config, progress=False)


@pytest.mark.parametrize("name", ["config.json", "split.json"])
def test_a_damaged_run_file_is_named(tiny_kaggle_dir, run_copy, name):
    (run_copy / name).write_text('{"config": ')
    with pytest.raises(ValueError, match=f"{run_copy / name} is damaged"):
        training.train(tiny_kaggle_dir, run_copy, TrainConfig(**TINY), progress=False)


def test_upper_case_tiff_suffixes_are_read(tiny_kaggle_dir, tmp_path):
    source = Path(shutil.copytree(tiny_kaggle_dir, tmp_path / "kaggle_3m"))
    for path in source.rglob("*.tif"):
        path.rename(path.with_suffix(".TIF"))
    assert len(data.find_slices(source, progress=False)) == len(
        data.find_slices(tiny_kaggle_dir, progress=False)
    )


def test_images_without_any_mask_are_named(tiny_kaggle_dir, tmp_path):
    source = Path(shutil.copytree(tiny_kaggle_dir, tmp_path / "kaggle_3m"))
    for mask in source.rglob("*_mask.tif"):
        mask.unlink()
    with pytest.raises(data.DatasetError, match="image without mask \\(expected .*_mask.tif\\)"):
        data.find_slices(source, progress=False)


# --- 9. A failed checkpoint write leaves no partial file ---


def test_a_failed_checkpoint_write_leaves_no_temporary_file(trained_run, tmp_path, monkeypatch):
    model = inference.load_model(trained_run)

    def save_half_then_fail(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PK half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", save_half_then_fail)
    with pytest.raises(OSError):
        training.save_atomically(model, tmp_path / "last.keras")
    assert list(tmp_path.iterdir()) == []


def test_damaged_cached_imagenet_weights_say_which_file_to_delete(tmp_path, monkeypatch, offline):
    from pspseg_utils.models import backbones

    cache = tmp_path / "keras_home" / "models"
    cache.mkdir(parents=True)
    (cache / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"\x89HDF half")

    def no_download(*args, **kwargs):  # what an offline machine answers, at once
        raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", no_download)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", no_download)
    with pytest.raises(ValueError, match="could not be loaded .* Delete .*vgg16_weights_tf_dim"):
        backbones.build_backbone("vgg16", input_shape=(64, 64, 3), weights="imagenet")
