"""Export a trained model for sharing and serving: a `.keras` file and a TF SavedModel."""

from __future__ import annotations

from pathlib import Path

from pspseg_utils import inference
from pspseg_utils.training import save_atomically

__all__ = ["export", "folder_size"]


def folder_size(path: Path) -> int:
    """Bytes in a file, or in every file below a folder."""
    path = Path(path)
    return (
        path.stat().st_size
        if path.is_file()
        else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    )


def export(model_path: str | Path, out_dir: str | Path) -> dict[str, int]:
    """Write `out_dir/model.keras` and `out_dir/saved_model/`.

    The `.keras` file has no optimizer state and loads with Keras 3 once `pspseg_utils.models` is
    imported (or with `pspseg_utils.inference.load_model`). The TensorFlow SavedModel has a
    `serve` signature taking float32 (B, H, W, C) images in 0..255 at the model's input size
    H x W (the training size: resize first), C = 3, or 3 (1 + 2c) for a model that takes each
    slice with c neighbours on each side, and returning the model's output, P(tumour)
    (B, H, W, 1) for a binary model; for TF Serving or `tf.saved_model.load`.

    Returns:
        {"model.keras": bytes, "saved_model": bytes}.
    """
    model = inference.load_model(model_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keras_path, saved_path = out_dir / "model.keras", out_dir / "saved_model"
    save_atomically(model, keras_path)  # loaded with compile=False: no optimizer state travels
    model.export(str(saved_path), format="tf_saved_model", verbose=False)
    return {"model.keras": folder_size(keras_path), "saved_model": folder_size(saved_path)}
