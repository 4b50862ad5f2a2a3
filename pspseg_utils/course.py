"""What the notebooks share: profiles, the environment report, where run folders live (Google
Drive when mounted on Colab), the credit line under every figure of a scan, a trained model when
lesson 03's is missing, and the measured demonstration of slice-level split leakage."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pspseg_utils import __version__, data, recipes
from pspseg_utils.config import TrainConfig

__all__ = [
    "REPO_URL",
    "RELEASE_TAG",
    "INSTALL_SOURCE",
    "DRIVE_RUNS",
    "project_root",
    "runs_dir",
    "PROFILES",
    "resolve_profile",
    "train_config",
    "setup_notebook",
    "DATA_CREDITS",
    "data_credit",
    "ensure_model",
    "leakage_demo",
]

# The one place the repository's address lives; notebooks' badges and installs are made from it.
REPO_URL = "https://github.com/pspseg/pspseg"
# The notebooks install, and their badges open, this tag: a fixed release, not a moving branch.
RELEASE_TAG = f"v{__version__}"
INSTALL_SOURCE = f"pspseg @ git+{REPO_URL}@{RELEASE_TAG}"
# Where run folders go on Colab once Google Drive is mounted, so a disconnect loses nothing.
DRIVE_RUNS = Path("/content/drive/MyDrive/pspseg/runs")

# quick: seconds, for tests (PSPSEG_QUICK=1); cpu: a laptop, minutes; gpu: real data, full size.
PROFILES: dict[str, dict] = recipes.COURSE


def project_root() -> Path:
    """The repository folder, relative to the working folder (so that printed paths say nothing
    about the machine): ".." from notebooks/, else "."."""
    return Path("..") if Path.cwd().name == "notebooks" else Path(".")


def runs_dir(*, use_drive: bool = False, drive_runs: Path = DRIVE_RUNS, mount=None) -> Path:
    """The folder run folders go in: `drive_runs` when Google Drive is mounted (its parent
    "MyDrive" exists), else project_root() / "runs".

    With `use_drive`, Drive is mounted first by `mount(mount_point)`: on Colab by default
    `google.colab.drive.mount`, which asks the user to allow access; elsewhere it says that the
    runs stay on this machine."""
    drive = drive_runs.parent.parent  # .../MyDrive
    if use_drive and not drive.is_dir():
        if mount is None and "google.colab" in sys.modules:
            from google.colab import drive as colab_drive

            mount = colab_drive.mount
        if mount is None:
            print("Google Drive can be mounted on Colab only: run folders stay on this machine.")
        else:
            mount(str(drive.parent))  # the mount point, /content/drive
    if drive.is_dir():
        drive_runs.mkdir(parents=True, exist_ok=True)
        return drive_runs
    return project_root() / "runs"


def resolve_profile(requested: str = "auto", *, environ: Mapping[str, str] | None = None) -> str:
    """ "auto" -> "quick" when PSPSEG_QUICK=1, "gpu" when TensorFlow sees a GPU, else "cpu"."""
    environ = os.environ if environ is None else environ
    if requested != "auto":
        if requested not in PROFILES:
            raise ValueError(
                f"profile must be 'auto' or one of {sorted(PROFILES)}, got {requested!r}"
            )
        return requested
    if environ.get("PSPSEG_QUICK") == "1":
        return "quick"
    from pspseg_utils.training.hardware import has_gpu

    return "gpu" if has_gpu() else "cpu"


def train_config(profile: str, **overrides):
    """The TrainConfig of a profile, with `overrides` applied."""
    return TrainConfig(**{**PROFILES[profile], **overrides})


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 for a moment: TensorFlow >= 2.16 writes its C++ start-up notices
    there before TF_CPP_MIN_LOG_LEVEL takes effect, and a notebook would show them in red."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def setup_notebook() -> None:
    """Print the versions the course runs on and whether a GPU is there (with what to click on
    Colab if not); keep TensorFlow's Python-side advice (e.g. on retracing, which is for
    library authors) out of the lessons' outputs, and show warnings without the cell's
    temporary file name."""
    with _quiet_stderr():
        import keras
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    tf.get_logger().setLevel("ERROR")
    # A warning's text, without the temporary file of the cell that raised it (a machine path).
    warnings.formatwarning = _warning_without_source
    import cv2

    print(f"Python {platform.python_version()} | TensorFlow {tf.__version__} | Keras "
          f"{keras.__version__} | NumPy {np.__version__} | OpenCV {cv2.__version__} | "
          f"pspseg {__version__}")  # fmt: skip
    if gpus:
        print(f"GPU: {', '.join(g.name for g in gpus)}")
    elif "google.colab" in sys.modules:
        print("No GPU: on Colab choose Runtime > Change runtime type > T4 GPU, then rerun.")
    else:
        print("No GPU: the cpu profile trains a small model in minutes.")


def _warning_without_source(message, category, filename, lineno, line=None) -> str:
    return f"{category.__name__}: {message}\n"


# The line printed under every figure that shows a scan, by the data's source (what
# data.resolve_data_dir returns): the real scans' credit and licence (CC BY-NC-SA 4.0 asks for
# the attribution), or a plain word that the scans are generated.
_LGG_CREDIT = (
    f"MRI: LGG segmentation dataset, Buda et al. 2019 (Kaggle {data.KAGGLE_HANDLE}), images "
    "from TCIA (TCGA-LGG); licence CC BY-NC-SA 4.0"
)
DATA_CREDITS = {
    "given": _LGG_CREDIT,  # a kaggle_3m folder the user named (DATA_DIR or $PSPSEG_DATA_DIR)
    "kaggle": _LGG_CREDIT,
    "synthetic": "Synthetic scans generated by pspseg_utils.synthetic: no patient's MRI",
}


def data_credit(source: str) -> str:
    """Where the scans of `source` come from, as one line for the foot of a figure
    (`visualize`'s `credit=`): the LGG dataset's authors, origin and licence for real scans
    ("kaggle", or "given": a kaggle_3m folder the user named), or that they are generated for
    "synthetic".

    Raises:
        ValueError: a source that `data.resolve_data_dir` does not return.
    """
    if source not in DATA_CREDITS:
        raise ValueError(f"source must be one of {sorted(DATA_CREDITS)}, got {source!r}")
    return DATA_CREDITS[source]


def _has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / "best.keras").exists() or (run_dir / "last.keras").exists()


def ensure_model(run_dir: str | Path, data_dir: str | Path, profile: str, *, full: bool = False):
    """The model lesson 03 saved in `run_dir` (best, else last), with its folder.

    If there is none, one is trained now, and the lesson says what and for how long first: the
    profile's own model for "quick" and "cpu" or with `full=True`, else (the "gpu" profile) the
    small "cpu" one, into `run_dir` + "-small", so a lesson never starts a long run unasked.

    Returns:
        (model, folder): the loaded model and the run folder it came from (for its split).
    """
    from pspseg_utils.inference import load_model
    from pspseg_utils.training import train

    run_dir = Path(run_dir)
    if _has_checkpoint(run_dir):
        print(f"Using the model trained in lesson 03: {run_dir}")
        return load_model(run_dir), run_dir
    small = profile not in ("quick", "cpu") and not full
    config = train_config("cpu" if small else profile)
    folder = run_dir.with_name(f"{run_dir.name}-small") if small else run_dir
    if small and _has_checkpoint(folder):
        print(f"No model from lesson 03 in {run_dir}; using the small one trained before: {folder}")
        return load_model(folder), folder
    limit = (f"at most {config.time_budget_minutes:g} minutes" if config.time_budget_minutes
             else f"{config.epochs} epochs")  # fmt: skip
    print(
        f"No model from lesson 03 in {run_dir}: training {'a small' if small else 'the'} "
        f"{config.backbone} at {config.image_size} px now, {limit}, into {folder}."
    )
    if small:
        print("For the full model run lesson 03 first, or pass full=True here.")
    train(data_dir, folder, config, progress=False)
    return load_model(folder), folder


def _thumbnails(records: Sequence[data.SliceRecord], size: int):
    import cv2

    images = (
        np.stack(
            [
                cv2.resize(
                    data.read_image(r.image_path), (size, size), interpolation=cv2.INTER_AREA
                )
                for r in records
            ]  # fmt: skip
        )
        .reshape(len(records), -1)
        .astype(np.float32)
    )
    masks = np.stack(
        [
            cv2.resize(data.read_mask(r.mask_path), (size, size), interpolation=cv2.INTER_NEAREST)
            for r in records
        ]  # fmt: skip
    ).reshape(len(records), -1)
    return images, masks


def leakage_demo(
    records: Sequence[data.SliceRecord],
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    size: int = 32,
) -> dict[str, dict[str, float]]:
    """Measure how a slice-level split leaks, with a model that can only memorise.

    The "model" copies the mask of the most similar training slice (nearest neighbour on
    size x size thumbnails). Split by slice, the nearest neighbour is usually the same patient's
    adjacent slice, nearly identical, so memorising looks like skill; split by patient it is not.

    Returns:
        {"slice-level split": {...}, "patient-level split": {...}}, each with the mean Dice of the
        copied masks on test slices with tumour and the share of nearest neighbours that come
        from the test slice's own patient.
    """
    images, masks = _thumbnails(records, size)
    patients = np.array([r.patient_id for r in records])
    rng = np.random.default_rng(seed)
    slice_test = rng.random(len(records)) < test_fraction
    held_out = set(data.split_patients(records, val_fraction=0.0, test_fraction=test_fraction,
                                       seed=seed)["test"])  # fmt: skip
    patient_test = np.isin(patients, list(held_out))
    results = {}
    for name, test in (("slice-level split", slice_test), ("patient-level split", patient_test)):
        train_idx, test_idx = np.flatnonzero(~test), np.flatnonzero(test & (masks.max(1) > 0))
        distances = (
            (images[test_idx] ** 2).sum(1)[:, None]
            - 2 * images[test_idx] @ images[train_idx].T
            + (images[train_idx] ** 2).sum(1)[None]
        )
        nearest = train_idx[np.argmin(distances, axis=1)]
        truth, copied = masks[test_idx] > 0, masks[nearest] > 0
        dice = 2 * (truth & copied).sum(1) / np.maximum(truth.sum(1) + copied.sum(1), 1)
        results[name] = {
            "test slices with tumour": int(len(test_idx)),
            "mean Dice of the copied mask": float(dice.mean()),
            "nearest slice from the same patient": float(
                np.mean(patients[nearest] == patients[test_idx])
            ),
        }
    return results
