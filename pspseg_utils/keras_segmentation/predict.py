"""keras_segmentation's `predict` module on Keras 3: `predict`, `predict_multiple`, `evaluate`,
`model_from_checkpoint_path` and the pictures `predict` writes (`visualize_segmentation`).

What changed underneath: masks come back at the input image's own size (keras_segmentation gave
the model's output size), a two-class model cuts P(class 1) at `threshold`, and
`checkpoints_path` is a run folder written by `train`. The prediction is pspseg's
(`pspseg_utils.inference`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from pspseg_utils import data, inference, metrics
from pspseg_utils.keras_segmentation.data_utils.data_loader import (
    class_colors,
    get_pairs_from_paths,
)

__all__ = [
    "evaluate",
    "get_colored_segmentation_image",
    "get_legends",
    "model_from_checkpoint_path",
    "predict",
    "predict_multiple",
    "visualize_segmentation",
]


def model_from_checkpoint_path(checkpoints_path):
    """The model of the last finished epoch of a `train(checkpoints_path=...)` run, with the
    article's methods (`train`, `predict_segmentation`, ...)."""
    from pspseg_utils.keras_segmentation.models.model_utils import with_article_methods

    path = Path(checkpoints_path)
    last = path / "last.keras" if path.is_dir() else path
    if not last.exists():
        raise FileNotFoundError(
            f"no checkpoint at {checkpoints_path}: expected {last}; "
            "train with model.train(..., checkpoints_path=...) first"
        )
    return with_article_methods(inference.load_model(last))


def get_colored_segmentation_image(seg_arr, n_classes, colors=class_colors) -> np.ndarray:
    """Labels (H, W) -> uint8 (H, W, 3), class c painted `colors[c]` (BGR, as cv2 writes)."""
    palette = np.array(colors[:n_classes], np.uint8)
    return palette[np.clip(seg_arr, 0, n_classes - 1)]


def get_legends(class_names, colors=class_colors) -> np.ndarray:
    """A white uint8 panel (25 (n + 1), 125, 3): each class name beside a swatch of its colour."""
    legend = np.full((len(class_names) * 25 + 25, 125, 3), 255, np.uint8)
    for i, (name, colour) in enumerate(zip(class_names, colors, strict=False)):
        cv2.putText(
            legend, str(name), (5, i * 25 + 17), cv2.FONT_HERSHEY_COMPLEX, 0.5, (0, 0, 0), 1
        )
        cv2.rectangle(legend, (100, i * 25), (125, i * 25 + 25), tuple(int(c) for c in colour), -1)
    return legend


def visualize_segmentation(
    seg_arr,
    inp_img=None,
    n_classes=None,
    colors=class_colors,
    class_names=None,
    overlay_img=False,
    show_legends=False,
    prediction_width=None,
    prediction_height=None,
) -> np.ndarray:
    """The picture `predict` writes: the labels coloured, at the input's size (or
    `prediction_width` x `prediction_height`), blended half and half with the input image when
    `overlay_img`, with a legend panel on the left when `show_legends`. uint8 (H, W', 3) BGR."""
    if n_classes is None:
        n_classes = int(np.max(seg_arr)) + 1
    picture = get_colored_segmentation_image(seg_arr, n_classes, colors=colors)
    size = None
    if inp_img is not None:
        size = (inp_img.shape[1], inp_img.shape[0])
    if prediction_width is not None and prediction_height is not None:
        size = (prediction_width, prediction_height)
    if size is not None:
        picture = cv2.resize(picture, size, interpolation=cv2.INTER_NEAREST)
    if overlay_img:
        if inp_img is None:
            raise ValueError("overlay_img=True needs the input image (inp_img)")
        shown = cv2.resize(np.asarray(inp_img)[..., :3], (picture.shape[1], picture.shape[0]))
        picture = (shown / 2 + picture / 2).astype(np.uint8)
    if show_legends:
        if class_names is None:
            raise ValueError("show_legends=True needs class_names")
        legend = get_legends(class_names, colors=colors)
        height = max(picture.shape[0], legend.shape[0])
        canvas = np.full((height, legend.shape[1] + picture.shape[1], 3), 255, np.uint8)
        canvas[: legend.shape[0], : legend.shape[1]] = legend
        canvas[: picture.shape[0], legend.shape[1] :] = picture
        picture = canvas
    return picture


def _model(model, checkpoints_path):
    if model is not None:
        return model
    if checkpoints_path is None:
        raise ValueError("pass model=... or checkpoints_path=...")
    return model_from_checkpoint_path(checkpoints_path)


def predict(
    model=None,
    inp=None,
    out_fname=None,
    checkpoints_path=None,
    overlay_img=False,
    class_names=None,
    show_legends=False,
    colors=class_colors,
    prediction_width=None,
    prediction_height=None,
    read_image_type=1,
    threshold: float = 0.5,
) -> np.ndarray:
    """Predict one image (a path, or an (H, W, 3) array in the channel order the model was
    trained on) with `model`, or with the model of `checkpoints_path`.

    Returns:
        uint8 (H, W) labels at the image's own size. `out_fname`, when given, receives
        `visualize_segmentation`'s picture of them (with the image, the legend, as asked).
    """
    model = _model(model, checkpoints_path)
    if inp is None:
        raise ValueError("pass inp=... (an image path or an (H, W, 3) array)")
    if read_image_type != 1:
        raise ValueError(f"read_image_type must be 1 (colour), got {read_image_type!r}")
    image = inference.as_image_list(inp, context_slices=inference.context_slices_of(model))[0][0]
    labels = inference.predict(model, image, threshold=threshold)
    if out_fname is not None:
        picture = visualize_segmentation(
            labels,
            np.asarray(image)[..., 2::-1],  # the slice's RGB order, as BGR for the file
            n_classes=inference.mask_labels_of(model),
            colors=colors,
            class_names=class_names,
            overlay_img=overlay_img,
            show_legends=show_legends,
            prediction_width=prediction_width,
            prediction_height=prediction_height,
        )
        data.write_image(out_fname, picture)  # BGR, as OpenCV writes
    return labels


def predict_multiple(
    model=None,
    inps=None,
    inp_dir=None,
    out_dir=None,
    checkpoints_path=None,
    overlay_img=False,
    class_names=None,
    show_legends=False,
    colors=class_colors,
    prediction_width=None,
    prediction_height=None,
    read_image_type=1,
    threshold: float = 0.5,
) -> list[np.ndarray]:
    """`predict` for a list of images or every image of `inp_dir`; writes each picture as
    `<stem>.png` into `out_dir` when given (`<index>.png` for arrays)."""
    model = _model(model, checkpoints_path)
    if inps is None:
        if inp_dir is None:
            raise ValueError("pass inps=[...] or inp_dir=...")
        inps = data.find_images(inp_dir, recursive=False)
    masks = []
    for index, inp in enumerate(tqdm(inps, desc="Predicting", unit="image")):
        name = Path(inp).stem if isinstance(inp, (str, Path)) else str(index)
        masks.append(
            predict(
                model, inp, None if out_dir is None else str(Path(out_dir) / f"{name}.png"),
                overlay_img=overlay_img, class_names=class_names, show_legends=show_legends,
                colors=colors, prediction_width=prediction_width,
                prediction_height=prediction_height, read_image_type=read_image_type,
                threshold=threshold,
            )
        )  # fmt: skip
    return masks


def evaluate(
    model=None,
    inp_images=None,
    annotations=None,
    inp_images_dir=None,
    annotations_dir=None,
    checkpoints_path=None,
    read_image_type=1,
) -> dict:
    """Intersection over union of `model`'s labels against the annotations, over all pixels of
    all images at the images' own size (keras_segmentation scored at the model's output size).

    Returns:
        {"frequency_weighted_IU": float, "mean_IU": float, "class_wise_IU": float64 array
        (n_classes,)}. A class absent from both prediction and truth scores 0, as in
        keras_segmentation; frequency weights are each class's share of the true pixels.
    """
    model = _model(model, checkpoints_path)
    if inp_images is None:
        if inp_images_dir is None or annotations_dir is None:
            raise ValueError(
                "pass inp_images and annotations, or inp_images_dir and annotations_dir"
            )
        pairs = get_pairs_from_paths(inp_images_dir, annotations_dir)
        if not pairs:
            raise ValueError(f"no images with annotations in {inp_images_dir}, {annotations_dir}")
        inp_images, annotations = [p[0] for p in pairs], [p[1] for p in pairs]
    if len(inp_images) != len(annotations):
        raise ValueError(f"{len(inp_images)} images but {len(annotations)} annotations")
    n = inference.mask_labels_of(model)
    counts = np.zeros((n, 3))  # per class: tp, fp, fn over every pixel of every image
    pairs = zip(inp_images, annotations, strict=True)
    for inp, annotation in tqdm(pairs, total=len(inp_images), desc="Evaluating", unit="image"):
        predicted = predict(model, inp, read_image_type=read_image_type).ravel()
        truth = (
            data.read_mask(annotation, num_classes=n)
            if isinstance(annotation, (str, Path))
            else np.asarray(annotation)
        ).ravel()
        for c in range(n):
            counts[c] += metrics.confusion_counts(truth == c, predicted == c)[:3]
    true_positive, false_positive, false_negative = counts.T
    pixels = true_positive + false_negative  # each class's true pixels
    class_wise = true_positive / (true_positive + false_positive + false_negative + 1e-12)
    return {
        "frequency_weighted_IU": float(np.sum(class_wise * pixels / pixels.sum())),
        "mean_IU": float(np.mean(class_wise)),
        "class_wise_IU": class_wise,
    }
