"""keras_segmentation's `predict` module on Keras 3: `predict`, `predict_multiple`,
`model_from_checkpoint_path`. The real work is in `pspseg_utils.inference`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pspseg_utils import data, inference

__all__ = ["model_from_checkpoint_path", "predict", "predict_multiple"]


def model_from_checkpoint_path(checkpoints_path: str | Path):
    """The model of the last finished epoch in a `model.train(checkpoints_path=...)` run."""
    path = Path(checkpoints_path)
    last = path / "last.keras" if path.is_dir() else path
    if not last.exists():
        raise FileNotFoundError(
            f"no checkpoint at {checkpoints_path}: expected {last}; "
            "train with model.train(..., checkpoints_path=...) first"
        )
    return inference.load_model(last)


def predict(
    model=None,
    inp=None,
    out_fname=None,
    checkpoints_path=None,
    overlay_img=False,
    threshold: float = 0.5,
    **ignored,
) -> np.ndarray:
    """Predict one image (a path or an (H, W, 3) array) with `model`, or with the model of
    `checkpoints_path` when `model` is None.

    Returns:
        uint8 (H, W) label mask at the input image's own resolution. `out_fname`, when given,
        receives the mask as a PNG (labels 0/1), or the overlay when `overlay_img=True`.
    """
    if model is None:
        if checkpoints_path is None:
            raise ValueError("pass model=... or checkpoints_path=...")
        model = model_from_checkpoint_path(checkpoints_path)
    if inp is None:
        raise ValueError("pass inp=... (an image path or an (H, W, 3) array)")
    image = inference.as_image_list(inp, context_slices=inference.context_slices_of(model))[0][0]
    mask = inference.predict(model, image, threshold=threshold)
    if out_fname is not None:
        written = inference.overlay(image[..., :3], mask)[..., ::-1] if overlay_img else mask
        data.write_image(out_fname, written)
    return mask


def predict_multiple(
    model=None,
    inps=None,
    inp_dir=None,
    out_dir=None,
    checkpoints_path=None,
    overlay_img=False,
    threshold: float = 0.5,
    **ignored,
) -> list[np.ndarray]:
    """`predict` for a list of images or every image of `inp_dir`; writes `<stem>.png` masks
    into `out_dir` when given."""
    if model is None:
        if checkpoints_path is None:
            raise ValueError("pass model=... or checkpoints_path=...")
        model = model_from_checkpoint_path(checkpoints_path)
    if inps is None:
        if inp_dir is None:
            raise ValueError("pass inps=[...] or inp_dir=...")
        inps = data.find_images(inp_dir, recursive=False)
    masks = []
    for index, inp in enumerate(inps):
        name = Path(inp).stem if isinstance(inp, (str, Path)) else str(index)
        out = None if out_dir is None else Path(out_dir) / f"{name}.png"
        masks.append(predict(model, inp, out, overlay_img=overlay_img, threshold=threshold))
    return masks
