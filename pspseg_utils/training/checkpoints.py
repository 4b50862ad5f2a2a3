"""A run folder's files, written whole or not at all, and read back: checkpoints, JSON
records, the log; and the checks that a resumed run is the same run."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import zipfile
from pathlib import Path

import keras

from pspseg_utils import data
from pspseg_utils.config import (
    CHANGEABLE_ON_RESUME,
    FIELDS_BEFORE_THEY_EXISTED,
    TrainConfig,
)


def save_atomically(model: keras.Model, path: str | Path) -> None:
    """Write to a temporary file beside `path`, then rename: a reader sees the old file or the
    new one, never half of one (os.replace is atomic on POSIX and Windows)."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    with _removed_on_failure(temporary):
        model.save(temporary)
        os.replace(temporary, path)


def write_json_atomically(path: Path, payload: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with _removed_on_failure(temporary):
        temporary.write_text(json.dumps(payload, indent=2, default=str))
        os.replace(temporary, path)


@contextlib.contextmanager
def _removed_on_failure(temporary: Path):
    """Delete a half-written temporary file if writing fails (a full disk), then re-raise."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict:
    """A run folder's JSON file, or a ValueError naming it when it is damaged."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is damaged ({error}); restore it from a copy, or start the run afresh "
            "(`pspseg train --no-resume`)"
        ) from error


def restore_checkpoint(model: keras.Model, path: str | Path) -> int:
    """Load weights and optimizer state from a `.keras` checkpoint into a compiled model.

    Returns:
        The optimizer's step count, from which the finished epochs follow.
    """
    try:
        damage = data.archive_damage(path)
        if damage:
            raise ValueError(damage)
        saved = keras.saving.load_model(path, compile=True, safe_mode=True)
    except (zipfile.BadZipFile, EOFError, KeyError, OSError, ValueError) as error:
        raise ValueError(
            f"{path} cannot be resumed from: it is damaged ({error}); start this run afresh "
            "(`pspseg train --no-resume`, resume=False), or train into a new folder"
        ) from error
    if [w.shape for w in saved.weights] != [w.shape for w in model.weights]:
        raise ValueError(
            f"{path} holds a different network ({saved.name}, {len(saved.weights)} weights) from "
            f"the one configured ({model.name}, {len(model.weights)} weights); train into a new "
            "run folder, or start this one afresh (`pspseg train --no-resume`, resume=False)"
        )
    model.set_weights(saved.get_weights())
    model.optimizer.build(model.trainable_variables)
    for target, source in zip(model.optimizer.variables, saved.optimizer.variables, strict=True):
        target.assign(source)
    return int(saved.optimizer.iterations.numpy())


def trim_log(path: Path, epochs_done: int) -> None:
    """Drop log rows of epochs that were running when the process died (not in last.keras)."""
    if not path.exists():
        return
    with path.open() as handle:
        rows = list(csv.reader(handle))
    header = rows[:1]
    kept = header + [
        row
        for row in rows[1:]
        if header and len(row) == len(header[0]) and row[0].isdigit() and int(row[0]) < epochs_done
    ]  # a row cut short by a kill is dropped too
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(kept)


def load_run_config(run_dir: str | Path) -> tuple[TrainConfig, str]:
    """(TrainConfig, data folder) recorded in RUN_DIR/config.json."""
    saved = read_json(Path(run_dir) / "config.json")
    return TrainConfig(**{**FIELDS_BEFORE_THEY_EXISTED, **saved["config"]}), saved["data_dir"]


def load_split(run_dir: str | Path) -> dict[str, list[str]]:
    """Patient ids of train / val / test recorded in RUN_DIR/split.json."""
    return read_json(Path(run_dir) / "split.json")


def check_resumable(run_dir: Path, config: TrainConfig) -> None:
    """Raise ValueError, naming each setting, if `config` differs from the run's config.json in
    anything but CHANGEABLE_ON_RESUME (fields that config.json predates are not compared), and
    say so when schedule.json holds the run at another length than `config.epochs` asks."""
    written = read_json(run_dir / "config.json")["config"]
    asked = json.loads(json.dumps(dataclasses.asdict(config)))  # as written: tuples as lists
    differing = [
        f"{name} {written[name]!r} (asked: {asked[name]!r})"
        for name in sorted(written)
        if name in asked and name not in CHANGEABLE_ON_RESUME and asked[name] != written[name]
    ]
    if differing:
        raise ValueError(
            f"{run_dir} was trained with other settings: {', '.join(differing)}. Resume with "
            "the same settings, or start afresh (`pspseg train --no-resume`, resume=False) or "
            "in another folder"
        )
    plan = run_dir / "schedule.json"
    if plan.exists() and config.epochs != written.get("epochs", config.epochs):
        print(f"Note: {plan} holds this run at {read_json(plan)['epochs']} epochs, fitted to "
              f"its time budget; epochs={config.epochs} does not change that (delete "
              "schedule.json to plan again).")  # fmt: skip


def check_same_patients(run_dir: Path, split: dict, records, data_dir) -> None:
    """Raise ValueError if `records` (from `data_dir`) are not the patients of the run's split:
    resuming on other data would silently train on it."""
    recorded = {patient for subset in split.values() for patient in subset}
    found = {record.patient_id for record in records}
    if recorded != found:
        missing, new = sorted(recorded - found), sorted(found - recorded)
        raise ValueError(
            f"{data_dir} is not the data {run_dir} was trained on: {len(missing)} of its "
            f"patients are missing (e.g. {missing[:3]}) and {len(new)} are new (e.g. {new[:3]}). "
            "Resume with the run's own data, or start afresh (`pspseg train --no-resume`, "
            "resume=False) or in another folder"
        )
