"""Getting the data: the Kaggle download (or a clear message offline), and conversion to the
article's PNG layout."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping
from pathlib import Path

from tqdm.auto import tqdm

from pspseg_utils.data.files import DatasetError, read_image, read_mask, write_image
from pspseg_utils.data.layout import SliceRecord, detect_layout, find_slices

KAGGLE_HANDLE = "mateuszbuda/lgg-mri-segmentation"
KAGGLE_URL = f"https://www.kaggle.com/datasets/{KAGGLE_HANDLE}"


def prepare(
    kaggle_dir: str | Path, out_dir: str | Path, *, progress: bool = True
) -> list[SliceRecord]:
    """Convert the Kaggle layout into the article's: `images/<patient>_<n>.png` (3 channels) and
    `masks/<patient>_<n>.png` (labels 0/1). The file stems keep patient and slice number, so a
    patient-level split still works on the result.

    Returns:
        The records of the written dataset.

    Raises:
        DatasetError: the input is not a valid Kaggle-layout dataset, or two of its files have
            one slice number (X_5.tif and X_05.tif) and would be written to one PNG.
        FileExistsError: out_dir already has images/ or masks/ with files in them.
        OSError: a PNG could not be written (a full disk, no permission); none is left partial.
    """
    layout, _ = detect_layout(kaggle_dir)
    if layout != "kaggle":
        raise DatasetError(
            [f"{kaggle_dir}: already in the article layout (images/ + masks/)"],
            hint="`pspseg prepare` converts the Kaggle layout; nothing to do.",
        )
    records = find_slices(kaggle_dir, progress=progress)
    names: dict[str, Path] = {}
    clashes = []
    for record in records:  # X_5.tif and X_05.tif would both become X_5.png
        name = f"{record.patient_id}_{record.slice_index}.png"
        if name in names:
            clashes.append(f"{names[name]} and {record.image_path} would both be written as {name}")
        names.setdefault(name, record.image_path)
    if clashes:
        raise DatasetError(clashes, hint="Keep one file per slice number: rename or remove one.")
    out_dir = Path(out_dir)
    for sub in ("images", "masks"):
        if (out_dir / sub).is_dir() and any((out_dir / sub).iterdir()):
            raise FileExistsError(f"{out_dir / sub} is not empty; choose a new OUT_DIR or empty it")
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    for record in tqdm(records, desc="Writing PNGs", unit="slice", disable=not progress):
        name = f"{record.patient_id}_{record.slice_index}.png"
        write_image(out_dir / "images" / name, read_image(record.image_path)[..., ::-1])
        write_image(out_dir / "masks" / name, read_mask(record.mask_path))
    return find_slices(out_dir, progress=False)


def _kaggle_reachable(timeout: float) -> bool:
    """Whether www.kaggle.com accepts a connection within `timeout` seconds.

    The socket timeout does not cover the DNS lookup, which can block for tens of seconds on an
    offline machine, so the attempt runs in a daemon thread that is abandoned after `timeout`."""
    reachable: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection(("www.kaggle.com", 443), timeout=timeout):
                reachable.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, name="pspseg-kaggle-check", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(reachable)


def resolve_data_dir(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    download: bool = True,
    synthetic_dir: str | Path = "data/synthetic",
    synthetic_patients: int = 20,
    timeout: float = 3.0,
) -> tuple[Path, str]:
    """Find the data to use, in this order, and say which it is.

    1. `path` if given, else the environment's `PSPSEG_DATA_DIR` (`environ` defaults to os.environ);
    2. a kagglehub download of mateuszbuda/lgg-mri-segmentation, if Kaggle answers within
       `timeout` seconds (so an offline machine never hangs); a public dataset, so no Kaggle
       sign-in is needed (kagglehub asks for one only for private or consent-gated data);
    3. the synthetic dataset in `synthetic_dir`, generated on first use.

    Returns:
        (folder, source) with source one of "given", "kaggle", "synthetic".

    Raises:
        DatasetError: a given path (argument or PSPSEG_DATA_DIR) does not exist.
    """
    environ = os.environ if environ is None else environ
    given = path if path is not None else environ.get("PSPSEG_DATA_DIR") or None
    if given is not None:
        detect_layout(given)
        return Path(given), "given"
    if download and not _kaggle_reachable(timeout):
        print(f"Kaggle did not answer within {timeout:g} s (offline?): using synthetic data.")
    elif download:
        try:
            import kagglehub

            return Path(kagglehub.dataset_download(KAGGLE_HANDLE)), "kaggle"
        except Exception as error:  # noqa: BLE001 - any download failure falls back to synthetic
            print(
                f"Kaggle download failed ({type(error).__name__}: {error}). The dataset is "
                "public and needs no Kaggle sign-in: check this machine's internet access, or "
                f"download it from {KAGGLE_URL} and pass its folder (DATA_DIR, or "
                "PSPSEG_DATA_DIR). Using synthetic data for now."
            )
    synthetic_dir = Path(synthetic_dir)
    if not (synthetic_dir / "kaggle_3m").is_dir():
        from pspseg_utils.synthetic import generate_dataset

        print(f"No real data found: generating a synthetic LGG-like dataset in {synthetic_dir}.")
        generate_dataset(synthetic_dir, num_patients=synthetic_patients, seed=0)
    return synthetic_dir, "synthetic"
