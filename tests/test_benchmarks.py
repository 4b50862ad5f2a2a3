"""Smoke tests of the benchmark scripts: they run and print the JSON lines the README quotes.

Tiny sizes and one timed step: these check the plumbing, never the speed (speed is measured by
running the scripts themselves, see the README's Performance section).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pspseg_utils import data

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> list[dict]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # The scripts' promise: stdout holds JSON lines only (progress and logs go to stderr).
    return [json.loads(line) for line in result.stdout.splitlines()]


def _import_benchmark(name: str):
    """A script of benchmarks/ as a module (the scripts import each other by bare name)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_host_cpu_names_the_widest_vector_unit():
    host_cpu = _import_benchmark("machine").host_cpu
    cores = len(os.sched_getaffinity(0))
    zen5 = "model name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
    zen3 = "model name\t: AMD EPYC\nflags\t\t: fpu avx2 fma\n"
    assert host_cpu(zen5) == f"AMD EPYC (AVX-512 BF16), {cores} cores"
    assert host_cpu(zen3) == f"AMD EPYC (AVX2), {cores} cores"
    assert host_cpu("model name\t: Old\nflags\t\t: fpu sse2\n") == f"Old, {cores} cores"


def test_throughput_pipeline_line():
    (line,) = _run("throughput.py", "--what", "pipeline", "--image-size", "32", "--batch", "4",
                   "--steps", "1")  # fmt: skip
    assert line["what"] == "pipeline" and line["image_size"] == 32 and line["batch"] == 4
    assert line["img_per_s"] > 0 and line["ms_per_step"] > 0 and line["peak_host_mem_mb"] > 0


def test_throughput_inference_line():
    # --seconds 0: the time box ends the timing at its floor of two steps, not at --steps.
    args = ["--what", "infer", "--backbone", "mobilenetv2_035", "--image-size", "96",
            "--batch", "1", "--warmup", "1", "--steps", "5", "--seconds", "0",
            "--output-stride", "16", "--skip-channels", "8"]  # fmt: skip
    (line,) = _run("throughput.py", *args)
    assert (line["what"], line["backbone"], line["device"]) == ("infer", "mobilenetv2_035", "cpu")
    assert line["output_stride"] == 16 and line["skip_channels"] == 8
    assert line["host_cpu"].endswith(" cores")
    assert line["img_per_s"] > 0 and line["ms_per_step"] > 0 and line["steps_timed"] == 2


def test_throughput_refuses_no_warmup():
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "throughput.py"), "--warmup", "0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and "--warmup must be at least 1" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("cached", [False, True])
def test_throughput_training_line(cached):
    args = ["--what", "train", "--backbone", "mobilenetv2_035", "--image-size", "48",
            "--batch", "2", "--warmup", "1", "--steps", "4", "--seconds", "0",
            "--precision", "float32"]  # fmt: skip
    (line,) = _run("throughput.py", *args, *(["--cached"] if cached else []))
    assert line["input"] == ("cached" if cached else "pipeline")
    assert line["what"] == "train" and line["img_per_s"] > 0 and line["steps_timed"] == 2


@pytest.mark.slow
def test_cpu_recipe_line(tiny_kaggle_dir, tmp_path):
    # A budget of 0.06 s: the recipe's defaults, stopped after its first epoch.
    (line,) = _run("cpu_recipe.py", "--data", str(tiny_kaggle_dir), "--out", str(tmp_path / "run"),
                   "--time-budget", "0.001", "--seed", "1")  # fmt: skip
    assert line["what"] == "cpu_recipe" and line["epochs"] == 1
    assert line["command"].endswith("--time-budget 0.001 --seed 1")  # reproduces this split
    assert line["backbone"] == "mobilenetv2_050" and line["host_cpu"].endswith(" cores")
    assert line["test_patients"] >= 1 and 0.0 <= line["patient_dice_mean"] <= 1.0
    assert (tmp_path / "run" / "test_patients.csv").exists()

    # The run folder, as the threshold sweep takes it: its best.keras on its own split.
    lines = _run("threshold_sweep.py", "--data", str(tiny_kaggle_dir), str(tmp_path / "run"),
                 "--thresholds", "0.3", "0.5", "--scales", "1", "--scales", "1,1.5")  # fmt: skip
    per_run = [(x["split"], x["scales"], x["threshold"])
               for x in lines if x["what"] == "threshold_run"]  # fmt: skip
    assert per_run == [(split, scales, threshold) for split in ("val", "test")
                       for scales in ([1.0], [1.0, 1.5]) for threshold in (0.3, 0.5)]  # fmt: skip
    pooled = {(x["split"], tuple(x["scales"]), x["threshold"]): x
              for x in lines if x["what"] == "threshold_pooled"}  # fmt: skip
    test_at_half = pooled["test", (1.0,), 0.5]
    # Evaluated as cpu_recipe's default evaluation was, less the threshold: the same patients.
    assert test_at_half["patients"] == line["test_patients"]
    assert lines[-1]["what"] == "threshold_chosen_on_val" and lines[-1]["threshold"] in (0.3, 0.5)
    assert lines[-1]["scales"] in ([1.0], [1.0, 1.5])


def test_volume_dice_cuts_then_keeps_the_largest_region():
    volume_dice = _import_benchmark("threshold_sweep").volume_dice
    truth = np.zeros((2, 6, 6), bool)
    truth[:, :2, :2] = True  # 8 voxels through both slices
    probabilities = np.where(truth, 0.4, 0.1)
    probabilities[1, 4:, 4:] = 0.45  # a stray 2 x 2 blob: 4 voxels, not the largest region
    assert volume_dice(probabilities, truth, 0.3) == 1.0  # the blob is dropped
    assert volume_dice(probabilities, truth, 0.42) == 0.0  # only the blob is left: no overlap
    assert volume_dice(probabilities, truth, 0.5) == 0.0  # nothing predicted
    assert volume_dice(np.zeros((2, 6, 6)), np.zeros((2, 6, 6), bool), 0.3) == 1.0  # both empty


def test_article_baseline_writes_the_article_layout(tmp_path):
    # The baseline itself needs TensorFlow 2.15 in a venv of its own; its data step does not.
    import cv2

    images, masks = _import_benchmark("article_baseline").write_slices(tmp_path, 3)
    names = sorted(p.name for p in images.iterdir())
    assert names == ["0.png", "1.png", "2.png"] == sorted(p.name for p in masks.iterdir())
    assert cv2.imread(str(images / "0.png")).shape == (256, 256, 3)
    mask = cv2.imread(str(masks / "0.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (256, 256) and set(np.unique(mask)) == {0, 1}


def test_a_mask_through_a_coarse_grid():
    through_grid = _import_benchmark("resolution_ceiling").through_grid
    aligned = np.zeros((8, 8), np.uint8)
    aligned[:2, :2] = 1  # one whole cell of a 4 x 4 grid: 1, 0.75, 0.25, 0 across its edge
    np.testing.assert_array_equal(through_grid(aligned, 4), aligned.astype(bool))
    speck = np.zeros((8, 8), np.uint8)
    speck[5, 2] = 1  # a quarter of a cell: 0.25 at most after upsampling, under 0.5
    assert not through_grid(speck, 4).any()
    assert not through_grid(np.zeros((8, 8), np.uint8), 4).any()


def test_resolution_ceiling_lines(tiny_kaggle_dir, tiny_records):
    lines = _run("resolution_ceiling.py", "--data", str(tiny_kaggle_dir), "--grids", "64", "4")
    assert [line["grid"] for line in lines] == [64, 4]
    patients = len({r.patient_id for r in tiny_records})
    assert all(line["patients"] == patients for line in lines)
    # The slices are 64 px: a 64 x 64 grid keeps every mask as it is.
    assert lines[0]["patient_dice_mean"] == lines[0]["patient_dice_min"] == 1.0
    assert lines[1]["patient_dice_mean"] < 1.0


def test_gpu_set_rows_reach_their_child_process_intact():
    # The GPU set measures each row in a process of its own, from its command-line arguments.
    throughput = _import_benchmark("throughput")
    parser = throughput.build_parser()
    settings = parser.parse_args(["--set", "gpu", "--xla", "--steps", "7", "--seconds", "1.5"])
    rows = [throughput.Measurement(*fields) for fields in throughput.GPU_SET]
    assert any(row.cached for row in rows) and any(not row.cached for row in rows)
    for row in rows:
        child = parser.parse_args(throughput._row_arguments(row, settings))
        assert throughput.requested_row(child) == row
        assert (child.xla, child.steps, child.seconds) == (True, 7, 1.5)


def test_gpu_set_exits_non_zero_when_a_row_fails(monkeypatch):
    # A failed row must not pass for a complete set: the others still run, then the exit is 1.
    throughput = _import_benchmark("throughput")
    measured = []

    def fake_run(command):
        measured.append(command)
        return subprocess.CompletedProcess(command, returncode=1 if len(measured) == 2 else 0)

    monkeypatch.setattr(throughput.subprocess, "run", fake_run)
    monkeypatch.setattr(sys, "argv", ["throughput.py", "--set", "gpu"])
    with pytest.raises(SystemExit) as exit_info:
        throughput.main()
    assert len(measured) == len(throughput.GPU_SET)
    message = str(exit_info.value.code)
    assert message.startswith(f"1 of {len(throughput.GPU_SET)} rows failed")
    assert str(throughput.Measurement(*throughput.GPU_SET[1])) in message


def test_cross_validation_summary_counts_each_patient_once():
    cv = _import_benchmark("cross_validation")
    lines = [
        {"what": "cross_validation_fold", "fold": 0,
         "patient_dice": {"TCGA_CS_1_2000": 0.9, "TCGA_DU_2_2000": 0.1}},
        {"what": "cross_validation_fold", "fold": 1,
         "patient_dice": {"TCGA_DU_3_2000": 0.5, "TCGA_DU_4_2000": 0.7}},
    ]  # fmt: skip
    summary = cv.summarize(lines)
    assert summary["folds"] == [0, 1] and summary["patients"] == 4
    assert summary["patient_dice_mean"] == 0.55 and summary["patient_dice_median"] == 0.6
    assert summary["worst_decile_mean"] == 0.1  # the worst 10% of 4 patients: one
    assert summary["by_institution"] == {
        "CS": {"patients": 1, "mean": 0.9}, "DU": {"patients": 3, "mean": 0.4333}
    }  # fmt: skip


def test_cross_validation_summaries_keep_recipes_apart_and_compare_them_patient_by_patient():
    cv = _import_benchmark("cross_validation")
    command = "python benchmarks/cross_validation.py --data d --out o --fold 0 --epochs 16 --seed 0"
    lines = [
        {"what": "cross_validation_fold", "fold": 0, "scales": [1.0, 1.5], "command": command,
         "settings": {}, "patient_dice": {"TCGA_CS_1_2000": 0.5, "TCGA_DU_2_2000": 0.8}},
        {"what": "cross_validation_fold", "fold": 0, "command": command + " --set max_gamma=2.0",
         "scales": [1.0, 1.5], "settings": {"max_gamma": 2.0},
         "patient_dice": {"TCGA_CS_1_2000": 0.7, "TCGA_DU_2_2000": 0.78}},
    ]  # fmt: skip
    assert cv.recipe_of(lines[1]) == ("--epochs 16", '{"max_gamma": 2.0}')
    last = {**lines[0], "checkpoint": "last.keras"}
    assert cv.recipe_of(last) == ("--epochs 16", '{"checkpoint": "last.keras"}')
    assert cv.recipe_of({**lines[0], "checkpoint": "best.keras"}) == ("--epochs 16", "{}")
    # Lines scored before evaluate predicted at two scales have no "scales": one scale.
    single = {key: value for key, value in lines[0].items() if key != "scales"}
    assert cv.recipe_of(single) == ("--epochs 16", '{"scales": [1.0]}')
    plain, bent = cv.summarize_recipes(lines)  # the recipe without settings first
    assert (plain["settings"], plain["patient_dice_mean"]) == ({}, 0.65)
    assert "against_no_settings" not in plain
    assert bent["patient_dice_mean"] == 0.74
    # +0.2 and -0.02: a mean gain of 0.09, one patient gained more than 0.05, none lost as much.
    assert bent["against_no_settings"] == {
        "patients": 2, "mean_difference": 0.09, "gained_over_0.05": 1, "lost_over_0.05": 0
    }  # fmt: skip


def test_cross_validation_compares_with_the_baseline_named_by_its_settings():
    cv = _import_benchmark("cross_validation")
    command = "python benchmarks/cross_validation.py --data d --out o --fold 0 --epochs 16 --seed 0"
    lines = [
        {"what": "cross_validation_fold", "fold": 0, "scales": [1.0, 1.5], "command": command,
         "settings": {}, "patient_dice": {"TCGA_CS_1_2000": 0.5, "TCGA_DU_2_2000": 0.8}},
        {"what": "cross_validation_fold", "fold": 0, "scales": [1.0, 1.5], "command": command,
         "settings": {"max_gamma": 2.0},
         "patient_dice": {"TCGA_CS_1_2000": 0.7, "TCGA_DU_2_2000": 0.78}},
        {"what": "cross_validation_fold", "fold": 0, "scales": [1.0, 1.5], "command": command,
         "settings": {"loss": "bce_batch_tversky"},
         "patient_dice": {"TCGA_CS_1_2000": 0.6, "TCGA_DU_2_2000": 0.88}},
    ]  # fmt: skip
    plain, tversky, gamma = cv.summarize_recipes(
        lines, baseline='{"max_gamma": 2.0}'
    )  # by settings text
    assert "against_baseline" not in gamma and "against_no_settings" not in tversky
    # Against gamma 2: -0.1 and +0.1, a mean difference of 0, one patient up and one down.
    assert tversky["against_baseline"] == {
        "patients": 2, "mean_difference": 0.0, "gained_over_0.05": 1, "lost_over_0.05": 1
    }  # fmt: skip
    assert plain["against_baseline"]["mean_difference"] == -0.09


def test_cross_validation_compares_another_schedule_with_the_25_minute_recipe():
    cv = _import_benchmark("cross_validation")
    command = "python benchmarks/cross_validation.py --data d --out o --fold 0 --seed 0"
    lines = [
        {"what": "cross_validation_fold", "fold": 0, "command": command + " --time-budget 25.0",
         "scales": [1.0, 1.5], "settings": {},
         "patient_dice": {"TCGA_CS_1_2000": 0.5, "TCGA_DU_2_2000": 0.8}},
        {"what": "cross_validation_fold", "fold": 0, "command": command + " --time-budget 12.5",
         "scales": [1.0, 1.5], "settings": {},
         "patient_dice": {"TCGA_CS_1_2000": 0.4, "TCGA_DU_2_2000": 0.82}},
    ]  # fmt: skip
    short, recipe = cv.summarize_recipes(lines)  # sorted by schedule: "12.5" before "25.0"
    assert "against_25_minutes" not in recipe and "against_no_settings" not in short
    # -0.1 and +0.02: a mean loss of 0.04, one patient lost more than 0.05.
    assert short["against_25_minutes"] == {
        "patients": 2, "mean_difference": -0.04, "gained_over_0.05": 0, "lost_over_0.05": 1
    }  # fmt: skip


def test_cross_validation_settings_are_read_as_json_else_kept_as_text():
    cv = _import_benchmark("cross_validation")
    settings = cv.parse_settings(["max_gamma=2.0", "backbone=vgg16", "augment=false", "x=null"])
    assert settings == {"max_gamma": 2.0, "backbone": "vgg16", "augment": False, "x": None}
    with pytest.raises(ValueError, match="FIELD=VALUE, got 'max_gamma'"):
        cv.parse_settings(["max_gamma"])


def test_cross_validation_command_names_what_was_trained():
    cv = _import_benchmark("cross_validation")
    args = argparse.Namespace(
        data="d", out="o", fold=2, folds=5, epochs=16, time_budget=25.0, seed=0,
        set=["max_gamma=2.0"], checkpoint="best.keras",
    )  # fmt: skip
    assert cv.command_line(args) == (
        "python benchmarks/cross_validation.py --data d --out o --fold 2 --folds 5 --epochs 16 "
        "--seed 0 --set max_gamma=2.0"
    )
    args.epochs, args.checkpoint = None, "last.keras"
    assert cv.command_line(args).endswith(
        "--time-budget 25.0 --seed 0 --set max_gamma=2.0 --checkpoint last.keras"
    )


def test_cross_validation_folds_test_every_patient_once(tiny_records):
    cv = _import_benchmark("cross_validation")
    splits = [cv.fold_split(tiny_records, k, folds=3, val_fraction=0.15, seed=0) for k in range(3)]
    patients = sorted({r.patient_id for r in tiny_records})
    assert sorted(p for split in splits for p in split["test"]) == patients
    for split in splits:
        assert sorted(split["train"] + split["val"] + split["test"]) == patients
        assert len(split["val"]) == 1  # 15% of 6 patients, at least one


def test_failure_table_groups_patients_by_tumour_size_and_institution(tmp_path):
    failures = _import_benchmark("failures")
    header = "patient,dice,iou,precision,recall,hd95,tumour_pixels\n"
    (tmp_path / "a_patients.csv").write_text(header + (
        "TCGA_DU_1_2000,0.1,0,0.9,0.2,1,100\n"
        "TCGA_DU_2_2000,0.9,0,0.8,1.0,1,900\n"
        "TCGA_CS_3_2000,0.5,0,0.5,0.5,1,300\n"
    ))  # fmt: skip
    (tmp_path / "b_patients.csv").write_text(header + "TCGA_CS_4_2000,0.7,0,1.0,0.6,1,500\n")
    rows = failures.read_patients(sorted(str(p) for p in tmp_path.glob("*.csv")))
    table = failures.failure_table(rows, groups=2, below=0.6)
    smaller, larger = table["by_tumour_size"]  # sizes 100, 300 | 500, 900
    assert smaller == {"tumour_pixels": [100, 300], "patients": 2, "dice": 0.3, "recall": 0.35,
                       "precision": 0.7}  # fmt: skip
    assert larger["tumour_pixels"] == [500, 900] and larger["dice"] == 0.8
    assert table["all"]["patients"] == 4 and table["all"]["recall"] == 0.575
    assert table["by_institution"]["CS"]["dice"] == 0.6
    assert [r["patient"] for r in table["dice_below_0.6"]] == ["TCGA_DU_1_2000", "TCGA_CS_3_2000"]
    with pytest.raises(ValueError, match="no patients"):
        failures.failure_table([])


def test_pack_for_device_keeps_every_slice_and_mask(tiny_kaggle_dir, tiny_records, tmp_path):
    pack = _import_benchmark("pack_for_device").pack
    assert pack(tiny_kaggle_dir, tmp_path / "packed") == len(tiny_records)
    packed = data.find_slices(tmp_path / "packed", progress=False)
    assert [(r.patient_id, r.slice_index) for r in packed] == [
        (r.patient_id, r.slice_index) for r in tiny_records
    ]
    for original, copy in zip(tiny_records, packed, strict=True):
        assert copy.image_path.suffix == ".jpg" and copy.mask_path.suffix == ".png"
        np.testing.assert_array_equal(data.read_mask(copy.mask_path),
                                      data.read_mask(original.mask_path))  # fmt: skip
        error = np.abs(data.read_image(copy.image_path).astype(int)
                       - data.read_image(original.image_path)).mean()  # fmt: skip
        assert error < 4.0  # JPEG's loss at quality 95 on noisy 64 px slices


def test_pack_for_device_keeps_the_sequences_in_order(tmp_path):
    patient = tmp_path / "kaggle_3m" / "TCGA_XX_0001_20000101"
    patient.mkdir(parents=True)
    image = np.empty((32, 32, 3), np.uint8)
    image[...] = (40, 120, 200)  # pre-contrast, FLAIR, post-contrast, told apart by level
    mask = np.zeros((32, 32), np.uint8)
    mask[8:16, 8:16] = 255
    data.write_image(patient / f"{patient.name}_1.tif", image[..., ::-1])  # OpenCV's order
    data.write_image(patient / f"{patient.name}_1_mask.tif", mask)
    _import_benchmark("pack_for_device").pack(tmp_path / "kaggle_3m", tmp_path / "packed")
    (record,) = data.find_slices(tmp_path / "packed", progress=False)
    means = data.read_image(record.image_path).reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(means, [40, 120, 200], atol=2)
    assert data.read_mask(record.mask_path).sum() == 64
