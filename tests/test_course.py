"""What the notebooks share: where run folders live (Google Drive on Colab), the model a lesson
falls back on when lesson 03's is missing, without starting a long run unasked, and the credit
line under every figure of a scan."""

from __future__ import annotations

import pytest
from conftest import TINY_TRAINING as TINY

from pspseg_utils import __version__, course, data, training


def test_the_install_source_is_the_release_tag_of_the_package_version():
    tag = course.RELEASE_TAG
    assert tag == f"v{__version__}"
    assert course.INSTALL_SOURCE.endswith(f"git+{course.REPO_URL}@{tag}")


def test_runs_stay_local_without_drive(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    drive_runs = tmp_path / "drive" / "MyDrive" / "pspseg" / "runs"
    assert course.runs_dir(drive_runs=drive_runs) == course.project_root() / "runs"
    assert not drive_runs.exists()


def test_runs_go_to_drive_when_it_is_mounted(tmp_path):
    drive_runs = tmp_path / "drive" / "MyDrive" / "pspseg" / "runs"
    (tmp_path / "drive" / "MyDrive").mkdir(parents=True)  # as Colab's Files panel mounts it
    assert course.runs_dir(drive_runs=drive_runs) == drive_runs
    assert drive_runs.is_dir()


def test_use_drive_mounts_drive_at_its_mount_point(tmp_path):
    drive_runs = tmp_path / "drive" / "MyDrive" / "pspseg" / "runs"
    mounted = []

    def mount(point):  # what google.colab.drive.mount does, after the user allows it
        mounted.append(point)
        (tmp_path / "drive" / "MyDrive").mkdir(parents=True)

    assert course.runs_dir(use_drive=True, drive_runs=drive_runs, mount=mount) == drive_runs
    assert mounted == [str(tmp_path / "drive")]


def test_use_drive_off_colab_says_the_runs_stay_here(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    drive_runs = tmp_path / "drive" / "MyDrive" / "pspseg" / "runs"
    assert course.runs_dir(use_drive=True, drive_runs=drive_runs) == course.project_root() / "runs"
    assert "Colab only" in capsys.readouterr().out


@pytest.fixture
def tiny_profiles(monkeypatch):
    monkeypatch.setitem(course.PROFILES, "cpu", {**TINY, "time_budget_minutes": 5.0})
    monkeypatch.setitem(course.PROFILES, "gpu", {**TINY, "backbone": "vgg16", "epochs": 2})


def test_a_gpu_lesson_without_lesson_3_trains_the_small_model_and_says_so(
    tiny_profiles, tiny_kaggle_dir, tmp_path, monkeypatch, capsys
):
    run_dir = tmp_path / "course-gpu"
    model, folder = course.ensure_model(run_dir, tiny_kaggle_dir, "gpu")
    said = capsys.readouterr().out
    assert folder == tmp_path / "course-gpu-small" and not run_dir.exists()
    assert model.backbone_name == "mobilenetv2_050"  # the cpu profile's, not vgg16
    assert "training a small mobilenetv2_050 at 48 px now, at most 5 minutes" in said
    assert "run lesson 03 first, or pass full=True" in said

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(training, "train", no_training)
    _, again = course.ensure_model(run_dir, tiny_kaggle_dir, "gpu")
    assert again == folder and "trained before" in capsys.readouterr().out


def test_a_lesson_uses_lesson_3s_model_when_there_is_one(
    tiny_profiles, tiny_kaggle_dir, tmp_path, capsys
):
    run_dir = tmp_path / "course-gpu"
    training.train(tiny_kaggle_dir, run_dir, course.train_config("gpu"), progress=False)
    capsys.readouterr()
    model, folder = course.ensure_model(run_dir, tiny_kaggle_dir, "gpu")
    assert folder == run_dir and model.backbone_name == "vgg16"
    assert "Using the model trained in lesson 03" in capsys.readouterr().out


def test_full_trains_the_profiles_own_model(tiny_profiles, tiny_kaggle_dir, tmp_path, capsys):
    model, folder = course.ensure_model(tmp_path / "course-gpu", tiny_kaggle_dir, "gpu", full=True)
    assert folder == tmp_path / "course-gpu" and model.backbone_name == "vgg16"
    assert "training the vgg16 at 48 px now, 2 epochs" in capsys.readouterr().out


@pytest.mark.parametrize("profile", ["quick", "cpu", "gpu"])
def test_every_profile_keeps_patients_out_for_lessons_4_and_5(profile, tiny_records):
    config = course.train_config(profile)
    split = data.split_patients(
        tiny_records, val_fraction=config.val_fraction, test_fraction=config.test_fraction
    )
    assert split["test"] and not set(split["test"]) & set(split["train"])


@pytest.mark.parametrize("source", ["given", "kaggle"])
def test_real_scans_are_credited_to_their_dataset_authors_and_licence(source):
    credit = course.data_credit(source)
    assert "LGG segmentation dataset" in credit and "Buda et al. 2019" in credit
    assert "mateuszbuda/lgg-mri-segmentation" in credit  # where to find it
    assert "images from TCIA (TCGA-LGG)" in credit  # The Cancer Imaging Archive's collection
    assert credit.endswith("licence CC BY-NC-SA 4.0")
    assert "ynthetic" not in credit


def test_synthetic_scans_say_they_are_generated_and_credit_no_one():
    credit = course.data_credit("synthetic")
    assert credit.startswith("Synthetic scans") and "pspseg_utils.synthetic" in credit
    assert "Buda" not in credit and "CC BY" not in credit


def test_the_data_resolvers_sources_have_their_credit(tiny_kaggle_dir):
    """What the lessons do: `course.data_credit(SOURCE)` of what `resolve_data_dir` returned."""
    for environ, expected in (({"PSPSEG_DATA_DIR": str(tiny_kaggle_dir)}, "given"),
                              ({}, "synthetic")):  # fmt: skip
        _, source = data.resolve_data_dir(environ=environ, download=False,
                                          synthetic_dir=tiny_kaggle_dir.parent)  # fmt: skip
        assert source == expected
        assert course.data_credit(source) == course.DATA_CREDITS[expected]
    assert sorted(course.DATA_CREDITS) == ["given", "kaggle", "synthetic"]


def test_an_unknown_source_has_no_credit():
    with pytest.raises(ValueError, match=r"one of \['given', 'kaggle', 'synthetic'\], got 'web'"):
        course.data_credit("web")
