"""Smoke tests of the benchmark scripts: they run and print the JSON lines the README quotes.

Tiny sizes and one timed step: these check the plumbing, never the speed (speed is measured by
running the scripts themselves, see the README's Performance section).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_throughput_pipeline_line():
    (line,) = _run("throughput.py", "--what", "pipeline", "--image-size", "32", "--batch", "4",
                   "--steps", "1")  # fmt: skip
    assert line["what"] == "pipeline" and line["image_size"] == 32 and line["batch"] == 4
    assert line["img_per_s"] > 0 and line["ms_per_step"] > 0 and line["peak_host_mem_mb"] > 0


def test_throughput_inference_line():
    args = ["--what", "infer", "--backbone", "mobilenetv2_035", "--image-size", "96",
            "--batch", "1", "--warmup", "1", "--steps", "1", "--output-stride", "16"]  # fmt: skip
    (line,) = _run("throughput.py", *args)
    assert (line["what"], line["backbone"], line["device"]) == ("infer", "mobilenetv2_035", "cpu")
    assert line["output_stride"] == 16 and line["host_cpu"].endswith(" cores")
    assert line["img_per_s"] > 0 and line["ms_per_step"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("cached", [False, True])
def test_throughput_training_line(cached):
    args = ["--what", "train", "--backbone", "mobilenetv2_035", "--image-size", "48",
            "--batch", "2", "--warmup", "1", "--steps", "1", "--precision", "float32"]  # fmt: skip
    (line,) = _run("throughput.py", *args, *(["--cached"] if cached else []))
    assert line["input"] == ("cached" if cached else "pipeline")
    assert line["what"] == "train" and line["img_per_s"] > 0


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
