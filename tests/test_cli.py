"""Tests of the `pspseg` command line, run in-process through `cli.main(argv)` (which returns the
exit status when given argv), plus one real `python -m pspseg_utils` subprocess."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import pytest

from pspseg_utils import cli, config, data, rules


def test_synth_writes_a_dataset(tmp_path, capsys):
    status = cli.main(
        ["synth", str(tmp_path / "syn"), "--patients", "2", "--image-size", "64", "--seed", "3"]
    )
    assert status == 0
    records = data.find_slices(tmp_path / "syn", progress=False)
    assert len({r.patient_id for r in records}) == 2
    assert data.read_image(records[0].image_path).shape == (64, 64, 3)
    out = capsys.readouterr().out
    assert out.startswith(f"Wrote 2 synthetic patients, {len(records)} slices (")
    assert str(tmp_path / "syn" / "kaggle_3m") in out


def test_synth_refuses_a_bad_size(tmp_path, capsys):
    assert cli.main(["synth", str(tmp_path / "syn"), "--image-size", "30"]) == 2
    assert "image_size" in capsys.readouterr().err


def test_check_prints_counts(tiny_kaggle_dir, tiny_records, capsys):
    assert cli.main(["check", str(tiny_kaggle_dir)]) == 0
    out = capsys.readouterr().out
    tumour = sum(r.has_tumour for r in tiny_records)
    assert f"OK: {tiny_kaggle_dir} (kaggle layout)" in out
    assert "patients:      6\n" in out
    assert f"slices:        {len(tiny_records)}\n" in out
    assert f"tumour slices: {tumour} ({tumour / len(tiny_records):.0%})" in out
    assert "image shape:   64x64x3" in out


def test_check_json_prints_one_object(tiny_kaggle_dir, tiny_records, capsys):
    assert cli.main(["check", str(tiny_kaggle_dir), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert json.loads(out) == {
        "layout": "kaggle",
        "patients": 6,
        "slices": len(tiny_records),
        "tumour_slices": sum(r.has_tumour for r in tiny_records),
        "image_shape": [64, 64, 3],
    }


def test_check_article_layout(tiny_article_dir, tiny_records, capsys):
    assert cli.main(["check", str(tiny_article_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["layout"], summary["slices"]) == ("article", len(tiny_records))


def test_check_broken_dataset_lists_every_problem(tiny_kaggle_dir, tmp_path, capsys):
    patient = sorted(path for path in tiny_kaggle_dir.iterdir() if path.is_dir())[0]
    copy = tmp_path / "kaggle_3m" / patient.name
    shutil.copytree(patient, copy)
    garbage, unpaired = copy / f"{patient.name}_1.tif", copy / f"{patient.name}_2_mask.tif"
    garbage.write_bytes(b"garbage" * 20)
    unpaired.unlink()

    assert cli.main(["check", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error: 2 problem(s) in the dataset:" in captured.err  # after the progress bar
    assert f"{garbage}: not a readable image" in captured.err
    assert f"{copy / f'{patient.name}_2.tif'}: image without mask" in captured.err
    assert "Traceback" not in captured.err


def test_check_missing_folder(tmp_path, capsys):
    assert cli.main(["check", str(tmp_path / "nowhere")]) == 1
    assert f"{tmp_path / 'nowhere'}: folder not found" in capsys.readouterr().err


def test_prepare_converts(tiny_kaggle_dir, tiny_records, tmp_path, capsys):
    out_dir = tmp_path / "png"
    assert cli.main(["prepare", str(tiny_kaggle_dir), str(out_dir)]) == 0
    assert f"Wrote {len(tiny_records)} image/mask PNG pairs" in capsys.readouterr().out
    assert len(list((out_dir / "images").glob("*.png"))) == len(tiny_records)
    assert len(list((out_dir / "masks").glob("*.png"))) == len(tiny_records)
    # Converting again into the same folder is refused with exit status 2.
    assert cli.main(["prepare", str(tiny_kaggle_dir), str(out_dir)]) == 2
    assert "is not empty" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "pspseg synth data/synthetic"),
        (["synth"], "Write an LGG-like dataset in the Kaggle layout"),
        (["check"], "Read every image and mask of a dataset"),
        (["prepare"], "Write images/<patient>_<n>.png and masks/<patient>_<n>.png"),
    ],
)
def test_help(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0
    assert expected in capsys.readouterr().out


def test_missing_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([])
    assert exit_.value.code == 2
    assert "usage: pspseg" in capsys.readouterr().err


def test_python_dash_m_help():
    result = subprocess.run(
        [sys.executable, "-m", "pspseg_utils", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: pspseg")
    for command in ("synth", "check", "prepare"):
        assert command in result.stdout


def test_backbone_choices_are_the_models_backbones():
    from pspseg_utils.models import BACKBONES

    assert list(BACKBONES) == list(rules.BACKBONE_NAMES)


def test_clean_up_threshold_and_scales_are_the_evaluations():
    from pspseg_utils import evaluation

    assert cli.CLEAN_UP_THRESHOLD == evaluation.CLEAN_UP_THRESHOLD
    assert cli.CLEAN_UP_SCALES == evaluation.CLEAN_UP_SCALES


@pytest.mark.parametrize(
    ("command", "flags", "scales"),
    [
        ("evaluate", [], None),
        ("evaluate", ["--scales", "1"], [1.0]),
        ("predict", [], (1.0,)),
        ("predict", ["--scales", "1", "1.25", "2"], [1.0, 1.25, 2.0]),
    ],
)
def test_scales_flag(command, flags, scales):
    out = ["--out", "o"] if command == "predict" else ["--data", "d"]
    inputs = ["scan.tif"] if command == "predict" else []
    args = cli.build_parser().parse_args([command, "--model", "m", *out, *inputs, *flags])
    assert args.scales == scales


@pytest.mark.parametrize("value", ["0", "-1", "big"])
def test_scales_flag_takes_positive_numbers(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(
            ["evaluate", "--model", "m", "--data", "d", "--scales", value]
        )
    assert exit_.value.code == 2
    assert "--scales" in capsys.readouterr().err


def _train_settings(*flags: str) -> dict:
    args = cli.build_parser().parse_args(["train", "--data", "d", "--out", "o", *flags])
    return config.from_cli({name: getattr(args, name) for _, name, _ in config.cli_options()})


def test_train_flags_reach_their_settings_and_unset_ones_keep_the_recipes():
    assert _train_settings() == {}
    settings = _train_settings(
        "--lr", "0.01", "--weights", "none", "--xla", "--max-gamma", "2", "--backbone", "vgg16",
        "--time-budget", "12.5", "--steps-per-epoch", "3",
    )  # fmt: skip
    assert settings == {
        "learning_rate": 0.01, "backbone_weights": None, "jit_compile": True, "max_gamma": 2.0,
        "backbone": "vgg16", "time_budget_minutes": 12.5, "steps_per_epoch": 3,
    }  # fmt: skip
    config.TrainConfig(**settings)  # every flag's value is a valid setting


def test_every_declared_setting_has_its_flag_in_train_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    shown = capsys.readouterr().out
    declared = [f for f in dataclasses.fields(config.TrainConfig) if "cli" in f.metadata]
    assert len(declared) >= 20
    for flag, _, _ in config.cli_options():
        assert f"{flag} " in shown or f"{flag}\n" in shown


def test_a_backbone_flag_outside_the_choices_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _train_settings("--backbone", "resnet18")
    assert exit_info.value.code == 2
    assert "invalid choice: 'resnet18'" in capsys.readouterr().err
