"""Splitting by patient, never by slice: train / validation / test, and cross-validation folds."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from pspseg_utils.data.layout import SliceRecord


def split_patients(
    records: Iterable[SliceRecord],
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Split patients (never slices) into train/val/test, stratified by tumour burden.

    Patients are ranked by total tumour pixels (ties broken by a seeded shuffle), the ranking is
    cut into as many consecutive blocks as a held-out subset needs patients, and one patient is
    drawn from each block: each subset gets small and large tumours alike, and has
    round(n * fraction) patients (at least 1 when fraction > 0). No patient is in two subsets.

    Returns:
        {"train": [...], "val": [...], "test": [...]} of patient ids, each sorted.

    Raises:
        ValueError: fractions outside [0, 1) or summing to 1 or more, or too few patients to
            give every non-zero fraction at least one patient and leave one for training.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}"
        )
    burden: dict[str, int] = {}
    for record in records:
        burden[record.patient_id] = burden.get(record.patient_id, 0) + record.tumour_pixels
    patients = sorted(burden)
    rng = np.random.default_rng(seed)
    shuffled = [patients[i] for i in rng.permutation(len(patients))]
    ranked = sorted(shuffled, key=lambda p: burden[p])  # stable: the shuffle breaks ties

    counts = {"test": round(len(ranked) * test_fraction), "val": round(len(ranked) * val_fraction)}
    for name, fraction in (("test", test_fraction), ("val", val_fraction)):
        if fraction > 0 and counts[name] == 0:
            counts[name] = 1
    if counts["test"] + counts["val"] >= len(ranked):
        raise ValueError(
            f"{len(ranked)} patient(s) cannot be split into train/val/test with "
            f"val_fraction={val_fraction} and test_fraction={test_fraction}; add patients or "
            "lower the fractions"
        )
    subsets: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    # Evenly spaced positions along the tumour-burden ranking go to each held-out subset.
    taken: set[int] = set()
    for name in ("test", "val"):
        free = [i for i in range(len(ranked)) if i not in taken]
        # One patient drawn at random from each of `count` consecutive blocks of the ranking.
        blocks = np.array_split(np.array(free), counts[name]) if counts[name] else []
        chosen = {int(rng.choice(block)) for block in blocks}
        taken |= chosen
        subsets[name] = sorted(ranked[i] for i in chosen)
    subsets["train"] = sorted(ranked[i] for i in range(len(ranked)) if i not in taken)
    return subsets


def patient_folds(
    records: Iterable[SliceRecord], *, folds: int = 5, seed: int = 0
) -> list[list[str]]:
    """Partition the patients into `folds` cross-validation folds, stratified by tumour burden.

    Patients are ranked by total tumour pixels (ties broken by a seeded shuffle) and dealt out
    in consecutive groups of `folds`, one to each fold in a seeded order: every patient is in
    exactly one fold, the fold sizes differ by at most one, and each holds small and large
    tumours alike. Example: 10 patients, 5 folds -> each fold has one of the 5 smallest and one
    of the 5 largest.

    Raises:
        ValueError: fewer than 2 folds, or fewer patients than folds.
    """
    burden: dict[str, int] = {}
    for record in records:
        burden[record.patient_id] = burden.get(record.patient_id, 0) + record.tumour_pixels
    if folds < 2 or len(burden) < folds:
        raise ValueError(f"need 2 <= folds <= patients, got {folds} folds of {len(burden)}")
    rng = np.random.default_rng(seed)
    patients = sorted(burden)
    ranked = sorted((patients[i] for i in rng.permutation(len(patients))), key=burden.get)
    dealt: list[list[str]] = [[] for _ in range(folds)]
    for start in range(0, len(ranked), folds):
        group = ranked[start : start + folds]
        for fold, patient in zip(rng.permutation(folds), group, strict=False):
            dealt[fold].append(patient)
    return [sorted(fold) for fold in dealt]


def select_patients(records: Iterable[SliceRecord], patients: Iterable[str]) -> list[SliceRecord]:
    """The records of the given patients, in their original order."""
    wanted = set(patients)
    return [r for r in records if r.patient_id in wanted]
