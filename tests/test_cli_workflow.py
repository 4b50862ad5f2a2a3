"""The whole `pspseg` workflow in-process, through `cli.main(argv)`: train -> evaluate -> predict
-> export on the tiny dataset, and the errors a user meets on the way (exit status and message).
"""

from __future__ import annotations

import csv
import json
import shutil

import cv2
import keras
import numpy as np
import pytest

from pspseg_utils import cli, data

SUMMARY_KEYS = {"patients", "slices", "patient_dice_mean", "patient_dice_median", "slice_dice_mean"}
RUN_FILES = ("config.json", "split.json", "last.keras", "best.keras", "best.json", "log.csv")


def _csv_rows(path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_train_evaluate_predict_export(tiny_kaggle_dir, tiny_records, tmp_path, capsys):
    keras.utils.set_random_seed(0)
    data_dir, run = tmp_path / "D", tmp_path / "R"
    shutil.copytree(tiny_kaggle_dir, data_dir / "kaggle_3m")

    # train --quick: 2 tiny epochs; the run folder is complete.
    argv = [
        "train",
        "--data",
        str(data_dir),
        "--out",
        str(run),
        "--quick",
        "--precision",
        "float32",
        "--aux-loss-weight",
        "0",
        "--context-slices",  # each slice with its neighbours: the rest finds them by file name
        "1",
        "--skip-channels",  # the stride-4 decoder: predict, evaluate and export must carry it
        "4",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "Trained 2 epoch(s). Run folder: " in out
    assert f"Next: pspseg evaluate --model {run} --data {data_dir} --split test" in out
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    assert [row["epoch"] for row in _csv_rows(run / "log.csv")] == ["0", "1"]
    split = json.loads((run / "split.json").read_text())
    assert json.loads((run / "config.json").read_text())["config"]["aux_loss_weight"] == 0
    model = keras.saving.load_model(run / "best.keras")
    assert model.aux_loss_weight is None  # no aux head
    assert model.skip_channels == 4
    assert json.loads((run / "config.json").read_text())["config"]["context_slices"] == 1
    assert model.input_shape[-1] == 9

    # evaluate --split test --json: one JSON object over the run's test patients.
    argv = ["evaluate", "--model", str(run), "--data", str(data_dir), "--split", "test", "--json"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    summary = json.loads(out)
    assert set(summary) >= SUMMARY_KEYS
    for key in ("patient_dice_mean", "patient_dice_median", "slice_dice_mean"):
        assert 0.0 <= summary[key] <= 1.0, key
    test_records = data.select_patients(tiny_records, split["test"])
    assert summary["patients"] == len(split["test"]) >= 1
    assert summary["slices"] == len(test_records)

    # evaluate --split all --out X.csv: every patient, and both tables written.
    table = tmp_path / "tables" / "X.csv"
    argv = ["evaluate", "--model", str(run), "--data", str(data_dir), "--split", "all"]
    assert cli.main([*argv, "--out", str(table)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"6 patients, {len(tiny_records)} slices (all)\n")
    assert "Dice per patient: mean " in out
    assert f"Tables: {table}, {tmp_path / 'tables' / 'X_patients.csv'}" in out
    slices = _csv_rows(table)
    patients = _csv_rows(tmp_path / "tables" / "X_patients.csv")
    assert len(slices) == len(tiny_records)
    assert sorted(row["patient"] for row in patients) == sorted(
        {r.patient_id for r in tiny_records}
    )
    assert all(0.0 <= float(row["dice"]) <= 1.0 for row in slices + patients)

    # predict a patient folder: a mask and an overlay per slice, at the slice's size.
    patient = sorted(p for p in (data_dir / "kaggle_3m").iterdir() if p.is_dir())[0]
    images = sorted(p for p in patient.glob("*.tif") if not p.stem.endswith("_mask"))
    predictions = tmp_path / "P"
    assert cli.main(["predict", "--model", str(run), str(patient), "--out", str(predictions)]) == 0
    out = capsys.readouterr().out
    assert f"Wrote {len(images)} masks to {predictions}/masks" in out
    masks = sorted((predictions / "masks").glob("*.png"))
    assert [p.stem for p in masks] == [p.stem for p in images]
    assert len(list((predictions / "overlays").glob("*.png"))) == len(images)
    for path in masks:
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (64, 64)
        assert set(np.unique(mask).tolist()) <= {0, 1}

    # export: both formats, their sizes printed.
    exported = tmp_path / "E"
    assert cli.main(["export", "--model", str(run), "--out", str(exported)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{exported / 'model.keras'}: ") and lines[0].endswith(" MB")
    assert lines[1].startswith(f"{exported / 'saved_model'}: ") and lines[1].endswith(" MB")
    assert (exported / "model.keras").is_file()
    assert (exported / "saved_model" / "saved_model.pb").is_file()


# ---------------------------------------------------------------------------------------------
# Errors: a non-zero exit status and a message that says what to do, never a traceback
# ---------------------------------------------------------------------------------------------


def _fails(argv, capsys, status: int, *expected: str) -> None:
    assert cli.main(argv) == status
    captured = capsys.readouterr()
    for text in expected:
        assert text in captured.err
    assert "Traceback" not in captured.err


def test_evaluate_split_without_a_run_folder(tiny_kaggle_dir, tmp_path, capsys):
    loose = tmp_path / "models" / "model.keras"  # not inside a run folder: no split.json
    argv = ["evaluate", "--model", str(loose), "--data", str(tiny_kaggle_dir), "--split", "test"]
    _fails(
        argv,
        capsys,
        2,
        f"{tmp_path / 'models'}/split.json not found",
        "use --split all to evaluate every patient in --data",
    )


def test_evaluate_split_of_a_run_on_other_data(tiny_kaggle_dir, tmp_path, capsys):
    (tmp_path / "split.json").write_text(json.dumps({"train": ["A"], "val": ["B"], "test": ["C"]}))
    inputs = keras.Input((8, 8, 3))
    keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs)).save(tmp_path / "best.keras")
    argv = ["evaluate", "--model", str(tmp_path), "--data", str(tiny_kaggle_dir), "--split", "val"]
    _fails(argv, capsys, 2, "none of the run's val patients are in", "Use --split all")


def test_evaluate_the_test_split_of_a_run_that_held_out_none(tiny_kaggle_dir, tmp_path, capsys):
    (tmp_path / "split.json").write_text(json.dumps({"train": ["A"], "val": ["B"], "test": []}))
    argv = ["evaluate", "--model", str(tmp_path), "--data", str(tiny_kaggle_dir), "--split", "test"]
    _fails(argv, capsys, 2, "held out no test patients", "--test-fraction 0, as the recipe does",
           "use --split val, or --split all")  # fmt: skip


def test_evaluate_without_a_model(tiny_kaggle_dir, tmp_path, capsys):
    argv = ["evaluate", "--model", str(tmp_path), "--data", str(tiny_kaggle_dir), "--split", "all"]
    _fails(argv, capsys, 2, "has no best.keras or last.keras; train first")


def test_predict_a_missing_input(tmp_path, capsys):
    missing = tmp_path / "nowhere.png"
    argv = ["predict", "--model", str(tmp_path), str(missing), "--out", str(tmp_path / "P")]
    _fails(argv, capsys, 2, f"{missing}: no such file or folder")
    assert not (tmp_path / "P").exists()


def test_predict_a_folder_without_images(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    argv = ["predict", "--model", str(tmp_path), str(tmp_path / "in"), "--out", str(tmp_path / "P")]
    _fails(argv, capsys, 2, "no images among the inputs")


def test_train_on_an_empty_folder(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["train", "--data", str(empty), "--out", str(tmp_path / "R"), "--quick"]
    _fails(argv, capsys, 1, f"{empty}: is empty", "pspseg synth")
    assert not (tmp_path / "R").exists()


def test_train_offline_with_imagenet_weights_says_to_train_from_scratch(
    tiny_kaggle_dir, tmp_path, capsys, offline
):
    run = tmp_path / "R"
    argv = ["train", "--data", str(tiny_kaggle_dir), "--out", str(run), "--quick"]
    _fails([*argv, "--weights", "imagenet"], capsys, 1, "seems offline", "--weights none")
    assert not run.exists()  # refused before the data was read or anything written


def test_train_at_a_size_the_network_cannot_take(tiny_kaggle_dir, tmp_path, capsys):
    run = tmp_path / "R"
    argv = ["train", "--data", str(tiny_kaggle_dir), "--out", str(run), "--quick"]
    _fails([*argv, "--image-size", "100"], capsys, 2, "got 100")
    assert not run.exists()


# Operating-system faults and interruptions: one line with the file and the fix, never a traceback


def _predict_first_patient(model, data_dir, out) -> list[str]:
    patient = sorted(p for p in data_dir.iterdir() if p.is_dir())[0]
    return ["predict", "--model", str(model), str(patient), "--out", str(out)]


def test_predict_on_a_full_disk_fails_naming_the_file(
    tiny_kaggle_dir, tmp_path, capsys, monkeypatch
):
    inputs = keras.Input((48, 48, 3))
    keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs)).save(
        tmp_path / "model.keras"
    )
    real = type(tmp_path).write_bytes

    def full_disk(self, content):
        if self.name.startswith(".") and self.name.endswith(".png.tmp"):
            raise OSError(28, "No space left on device", str(self))
        return real(self, content)

    monkeypatch.setattr(type(tmp_path), "write_bytes", full_disk)
    argv = _predict_first_patient(tmp_path / "model.keras", tiny_kaggle_dir, tmp_path / "P")
    _fails(argv, capsys, 1, f"could not write {tmp_path / 'P' / 'masks'}", "the disk is full")
    assert list((tmp_path / "P" / "masks").iterdir()) == []


def test_predict_with_a_classifier_says_what_the_model_is(tiny_kaggle_dir, tmp_path, capsys):
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    keras.Model(inputs, keras.layers.Dense(10)(pooled)).save(tmp_path / "classifier.keras")
    argv = _predict_first_patient(tmp_path / "classifier.keras", tiny_kaggle_dir, tmp_path / "P")
    _fails(argv, capsys, 2, "is not a segmentation model", "gives (None, 10)")


def test_prepare_into_a_file_fails_in_one_line(tiny_kaggle_dir, tmp_path, capsys):
    (tmp_path / "taken").write_text("a file, not a folder")
    argv = ["prepare", str(tiny_kaggle_dir), str(tmp_path / "taken")]
    _fails(argv, capsys, 1, str(tmp_path / "taken"), "check the path")


def test_evaluate_checks_its_output_before_scoring(tiny_kaggle_dir, tmp_path, capsys, monkeypatch):
    (tmp_path / "taken").write_text("a file, not a folder")
    monkeypatch.setattr(cli.data, "find_slices", lambda *a, **k: pytest.fail("scored first"))
    argv = ["evaluate", "--model", str(tmp_path), "--data", str(tiny_kaggle_dir), "--split", "all",
            "--out", str(tmp_path / "taken" / "slices.csv")]  # fmt: skip
    _fails(argv, capsys, 2, f"could not write {tmp_path / 'taken' / 'slices.csv'}", "a file stands")


def test_ctrl_c_during_training_says_how_to_resume(tiny_kaggle_dir, tmp_path, capsys, monkeypatch):
    from pspseg_utils import training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    argv = ["train", "--data", str(tiny_kaggle_dir), "--out", str(tmp_path / "R"), "--quick"]
    _fails(argv, capsys, 130, "Interrupted. Run the same command to resume.")


@pytest.mark.parametrize("threshold", ["0", "1.5", "half"])
def test_a_threshold_out_of_range_is_refused_before_the_model_loads(tmp_path, capsys, threshold):
    argv = [
        "predict",
        "--model",
        str(tmp_path / "missing.keras"),
        str(tmp_path),
        "--threshold",
        threshold,
    ]
    with pytest.raises(SystemExit) as raised:
        cli.main(argv)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert "--threshold" in err and "between 0 and 1" in err and "missing.keras" not in err
