"""Which cut-off on P(tumour), and which prediction scales, suit the cleaned-up prediction? The
mean per-patient Dice of trained runs on their own validation and test patients for each pair.

    python benchmarks/threshold_sweep.py --data ../shared/data/lgg_dev runs/cv25/fold-0 ...
    python benchmarks/threshold_sweep.py --data ../shared/data/lgg_dev runs/cv25/fold-0 ... \
        --scales 1 --scales 1,1.5 --scales 1,1.25,1.5 --thresholds 0.3 0.4

Each run folder's `best.keras` predicts its patients once at every scale named (averaged with
the mirrored slice), and each set of scales (`--scales`, repeatable; default 1,1.5, what
`pspseg evaluate` does) averages its scales' probabilities; every threshold then cuts that
average and keeps only the largest region of each volume, as `pspseg evaluate` does by
default. Prints one JSON line per run, split, scales and threshold; then one per split, scales
and threshold over all the runs' patients together; then the choice: the pair with the highest
mean on the validation patients, and what the test patients score with it. The test patients
take no part in the choice. (Lines written before the script swept scales have no "scales":
they predicted at one scale, as `--scales 1` does.)
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from pspseg_utils import data, inference, metrics
from pspseg_utils.training import load_split

SPLITS = ("val", "test")


def volume_dice(probabilities: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    """Dice of one patient's volume: P(tumour) float (S, H, W) cut at `threshold`, only the
    largest connected region kept, against the bool (S, H, W) truth (1.0 if both are empty)."""
    mask = inference.largest_component((probabilities >= threshold).astype(np.uint8)) > 0
    tp, fp, fn, _ = metrics.confusion_counts(truth, mask)
    return metrics.scores_from_counts(int(tp), int(fp), int(fn))["dice"]


def patient_volumes(networks: dict, records: Sequence[data.SliceRecord]) -> Iterator:
    """(patient, {scale: P(tumour) (S, H, W)}, truth (S, H, W)) per patient, slices in order,
    from `networks` {scale: the model at that scale}, each probability averaged with that of
    the mirrored slice."""
    records = sorted(records, key=lambda r: (r.patient_id, r.slice_index))
    for patient, group in itertools.groupby(records, key=lambda r: r.patient_id):
        group = list(group)
        images = [data.read_slice(r.image_path) for r in group]
        probabilities = {
            scale: np.stack(
                [p[..., 0] for p in inference.predict_probabilities(
                    network, images, tta=True, batch_size=16
                )]
            )
            for scale, network in networks.items()
        }  # fmt: skip
        truth = np.stack([data.read_mask(r.mask_path) > 0 for r in group])
        yield patient, probabilities, truth


def sweep(run_dir: Path, records, scale_sets, thresholds) -> dict[str, dict[tuple, list]]:
    """{split: {(scales, threshold): [per-patient Dice]}} of the run's best.keras on its own
    split."""
    model = inference.load_model(run_dir / "best.keras")
    if model.outputs[0].shape[-1] != 1:
        raise ValueError(f"{run_dir}: a threshold applies to a 1-channel (sigmoid) model only")
    split = load_split(run_dir)
    every_scale = sorted({scale for scales in scale_sets for scale in scales})
    # Built once for both splits: each copy is a new network to build and trace.
    networks = dict(zip(every_scale, inference.at_scales(model, every_scale), strict=True))
    scores = {
        which: {pair: [] for pair in itertools.product(scale_sets, thresholds)} for which in SPLITS
    }
    for which in SPLITS:
        volumes = patient_volumes(networks, data.select_patients(records, split[which]))
        for _, by_scale, truth in volumes:
            for scales in scale_sets:
                probabilities = np.mean([by_scale[scale] for scale in scales], axis=0)
                for t in thresholds:
                    scores[which][scales, t].append(volume_dice(probabilities, truth, t))
    return scores


def _line(what: str, split: str, pair: tuple, dice: list, **more) -> str:
    scales, threshold = pair
    return json.dumps({
        "what": what,
        **more,
        "split": split,
        "scales": list(scales),
        "threshold": threshold,
        "patients": len(dice),
        "patient_dice_mean": round(float(np.mean(dice)), 4),
    })  # fmt: skip


def _scale_set(text: str) -> tuple[float, ...]:
    """argparse type of --scales: "1,1.5" -> (1.0, 1.5)."""
    try:
        scales = tuple(float(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers joined by commas, got {text!r}"
        ) from None
    if not all(s > 0 for s in scales):
        raise argparse.ArgumentTypeError(f"scales must be above 0, got {text}")
    return scales


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="the dataset folder the runs trained on")
    parser.add_argument("runs", type=Path, nargs="+", help="run folders of `pspseg train`")
    parser.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=[round(0.2 + 0.05 * i, 2) for i in range(11)],
        help="cut-offs to score (default 0.2 0.25 ... 0.7)",
    )
    parser.add_argument(
        "--scales",
        type=_scale_set,
        action="append",
        metavar="S[,S...]",
        help="a set of prediction scales whose probabilities are averaged, e.g. 1,1.5 "
        "(repeatable; default 1,1.5, what pspseg evaluate does)",
    )
    args = parser.parse_args()
    scale_sets = args.scales or [(1.0, 1.5)]
    records = data.find_slices(args.data, progress=False)
    pairs = list(itertools.product(scale_sets, args.thresholds))
    pooled = {which: {pair: [] for pair in pairs} for which in SPLITS}
    for run_dir in args.runs:
        for which, by_pair in sweep(run_dir, records, scale_sets, args.thresholds).items():
            for pair, dice in by_pair.items():
                print(_line("threshold_run", which, pair, dice, run=str(run_dir)), flush=True)
                pooled[which][pair] += dice
    for which in SPLITS:
        for pair, dice in pooled[which].items():
            print(_line("threshold_pooled", which, pair, dice, runs=len(args.runs)))
    chosen = max(pairs, key=lambda pair: np.mean(pooled["val"][pair]))
    val_mean = round(float(np.mean(pooled["val"][chosen])), 4)
    print(
        _line("threshold_chosen_on_val", "test", chosen, pooled["test"][chosen], val_mean=val_mean)
    )


if __name__ == "__main__":
    main()
