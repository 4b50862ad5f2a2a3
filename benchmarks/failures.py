"""Where the model fails: per-patient scores grouped by tumour size and by institution.

    pspseg evaluate --model runs/cv32-g2/fold-0 --data ../shared/data/lgg_dev --split test \
        --out runs/analysis/cv32-fold0.csv                      # and fold-1 .. fold-4
    python benchmarks/failures.py runs/analysis/cv32-fold*_patients.csv

Reads the per-patient tables `pspseg evaluate --out` writes (one per cross-validation fold, say)
and prints one JSON line: the mean Dice, recall (the share of the tumour found) and precision
(the share of the prediction that is tumour) of each quarter of the patients ranked by tumour
size, of each institution (the TCGA code in the patient's name), and the patients below
--below, worst first. Low recall with high precision is a tumour outlined in part; both low, a
tumour missed and a false alarm kept.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import statistics

from cross_validation import institution

SCORES = ("dice", "recall", "precision")


def read_patients(paths: list[str]) -> list[dict]:
    """The rows of `pspseg evaluate`'s per-patient tables, with the scores as floats and the
    tumour size (pixels over the patient's volume) as an int; each patient once (the last)."""
    rows = {}
    for path in paths:
        with open(path, newline="") as file:
            for row in csv.DictReader(file):
                scores = {name: float(row[name]) for name in SCORES}
                rows[row["patient"]] = {
                    "patient": row["patient"],
                    **scores,
                    "tumour_pixels": int(row["tumour_pixels"]),
                }
    return list(rows.values())


def _means(rows: list[dict]) -> dict:
    return {
        "patients": len(rows),
        **{name: round(statistics.fmean(r[name] for r in rows), 4) for name in SCORES},
    }


def failure_table(rows: list[dict], *, groups: int = 4, below: float = 0.6) -> dict:
    """Mean scores per size group (`groups` near-equal groups of the patients ranked by tumour
    size, smallest first, each with its size range), per institution, and the patients whose
    Dice is below `below`, worst first."""
    if not rows:
        raise ValueError("no patients to tabulate: give pspseg evaluate's *_patients.csv files")
    ranked = sorted(rows, key=lambda r: r["tumour_pixels"])
    bounds = [round(i * len(ranked) / groups) for i in range(groups + 1)]
    by_size = [
        {
            "tumour_pixels": [group[0]["tumour_pixels"], group[-1]["tumour_pixels"]],
            **_means(group),
        }
        for group in (ranked[a:b] for a, b in itertools.pairwise(bounds))
        if group
    ]
    sites: dict[str, list[dict]] = {}
    for row in rows:
        sites.setdefault(institution(row["patient"]), []).append(row)
    worst = sorted((r for r in rows if r["dice"] < below), key=lambda r: r["dice"])
    return {
        "what": "failure_table",
        "all": _means(rows),
        "by_tumour_size": by_size,
        "by_institution": {site: _means(group) for site, group in sorted(sites.items())},
        f"dice_below_{below}": [
            {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in worst
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("tables", nargs="+", metavar="PATIENTS_CSV")
    parser.add_argument("--groups", type=int, default=4, help="size groups (4: quarters)")
    parser.add_argument("--below", type=float, default=0.6, help="list the patients below")
    args = parser.parse_args()
    table = failure_table(read_patients(args.tables), groups=args.groups, below=args.below)
    print(json.dumps(table))


if __name__ == "__main__":
    main()
