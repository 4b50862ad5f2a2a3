"""Copy a Kaggle-layout dataset small enough to travel to the GPU machine, which takes 64 MiB
with the repository: the article layout, images as JPEG (quality 95), masks as PNG.

    python benchmarks/pack_for_device.py --data ../shared/data/lgg_dev --out .devdata/lgg_dev

The 40 development patients' TIFFs are 118 MB, about 83 kB a slice; a JPEG at quality 95 is
about 17 kB. JPEG is lossy: run `--check-model RUN_DIR` to score a trained run on the test
patients of its split in both copies, and say with the GPU's numbers how far they differ.

    python benchmarks/pack_for_device.py --data ../shared/data/lgg_dev --out .devdata/lgg_dev \\
        --check-model runs/cv16-base/fold-0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pspseg_utils import data


def pack(kaggle_dir: str | Path, out_dir: str | Path) -> int:
    """Write OUT/images/<patient>_<n>.jpg and OUT/masks/<patient>_<n>.png (labels 0/1) for every
    slice of `kaggle_dir`; returns the number of slices."""
    out_dir = Path(out_dir)
    for sub in ("images", "masks"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    records = data.find_slices(kaggle_dir, progress=False)
    for record in records:
        name = f"{record.patient_id}_{record.slice_index}"
        # OpenCV writes JPEG at quality 95; it takes 3 channels in reverse order.
        image = data.read_image(record.image_path)[..., ::-1]
        data.write_image(out_dir / "images" / f"{name}.jpg", image)
        data.write_image(out_dir / "masks" / f"{name}.png", data.read_mask(record.mask_path))
    return len(records)


def check_model(run_dir: str, original: str, packed: str) -> dict:
    """Mean per-patient Dice of a run's test patients on the original and the packed copy."""
    from pspseg_utils import evaluation, inference, training

    model = inference.load_model(run_dir)
    test = training.checkpoints.load_split(run_dir)["test"]
    scores = {}
    for name, folder in (("original", original), ("packed", packed)):
        records = data.select_patients(data.find_slices(folder, progress=False), test)
        result = evaluation.evaluate(model, records, progress=False)
        scores[name] = round(result.summary["patient_dice_mean"], 4)
    return {"what": "packed_copy_check", "run": run_dir, "patients": len(test), **scores}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="a Kaggle-layout dataset folder")
    parser.add_argument("--out", required=True, help="where to write the article-layout copy")
    parser.add_argument("--check-model", metavar="RUN_DIR", help="score a run on both copies")
    args = parser.parse_args()
    if not (Path(args.out) / "images").is_dir():
        print(f"{pack(args.data, args.out)} slices written to {args.out}")
    if args.check_model:
        print(json.dumps(check_model(args.check_model, args.data, args.out)))


if __name__ == "__main__":
    main()
