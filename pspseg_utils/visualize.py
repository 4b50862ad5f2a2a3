"""Figures for the course: scans, masks, overlays, learning curves, scores; every one titled
and labelled. Each function draws one figure and returns it (matplotlib `Figure`)."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from pspseg_utils import data, rules
from pspseg_utils.inference import overlay

__all__ = [
    "show_channels",
    "show_prediction",
    "show_article_figure",
    "show_augmentations",
    "plot_dataset_statistics",
    "plot_history",
    "plot_patient_scores",
    "slice_browser",
    "add_legend",
]


# How the figures draw masks on the grey FLAIR slice (inference.overlay does the drawing).
FILL_ALPHA = 0.45  # the prediction's fill: 45% orange, 55% the scan beneath
OUTLINE_WIDTH = 2  # pixels of the truth's outline


def _panel(axis, image, title, cmap=None):
    axis.imshow(image, cmap=cmap, vmin=0, vmax=255 if image.dtype == np.uint8 else None)
    axis.set_title(title, fontsize=10)
    axis.set_axis_off()


def _masks(image, *, prediction=None, truth=None):
    """The slice's FLAIR in grey, the prediction filled orange, the truth outlined blue."""
    empty = np.zeros(image.shape[:2], np.uint8)
    return overlay(image, empty if prediction is None else prediction, alpha=FILL_ALPHA,
                   truth=truth, thickness=OUTLINE_WIDTH)  # fmt: skip


def add_legend(figure, *, prediction=True, truth=True):
    """A legend under the panels naming what the overlays draw, in the colours they draw it
    (lays the figure out too, leaving room for it)."""
    handles = []
    if prediction:
        colour = np.array(rules.PREDICTION_COLOUR) / 255
        handles.append(Patch(facecolor=(*colour, FILL_ALPHA), edgecolor=colour,
                             label="prediction"))  # fmt: skip
    if truth:
        handles.append(Line2D([], [], color=np.array(rules.TRUTH_COLOUR) / 255,
                              linewidth=OUTLINE_WIDTH + 1, label="truth (outline)"))  # fmt: skip
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=10,
                  frameon=False)  # fmt: skip
    figure.tight_layout(rect=(0, 0.08, 1, 1))


def show_channels(image: np.ndarray, mask: np.ndarray | None = None, *, title: str = ""):
    """The three MRI channels side by side and the three as one RGB image; then, if a mask is
    given, the mask and the FLAIR slice with the mask outlined."""
    panels = 4 + (2 if mask is not None else 0)
    figure, axes = plt.subplots(1, panels, figsize=(2.4 * panels, 3.1))
    for axis, channel, name in zip(axes, range(3), rules.SEQUENCES, strict=False):
        _panel(axis, image[..., channel], name, cmap="gray")
    _panel(axes[3], image[..., :3].astype(np.uint8), "3 sequences as RGB")
    if mask is not None:
        _panel(axes[4], (mask > 0).astype(np.uint8) * 255, "tumour mask", cmap="gray")
        _panel(axes[5], _masks(image, truth=mask), "FLAIR, truth outlined")
    figure.suptitle(title or "One slice, three MRI sequences")
    if mask is not None:
        add_legend(figure, prediction=False)
    else:
        figure.tight_layout()
    return figure


def show_prediction(image, truth, prediction, *, title: str = "", dice: float | None = None):
    """Scan | true mask | predicted mask | overlay (prediction filled, truth outlined)."""
    figure, axes = plt.subplots(1, 4, figsize=(11, 3.4))
    _panel(axes[0], image[..., rules.DISPLAY_CHANNEL], "scan (FLAIR)", cmap="gray")
    _panel(axes[1], (truth > 0).astype(np.uint8) * 255, "true mask", cmap="gray")
    _panel(axes[2], (prediction > 0).astype(np.uint8) * 255, "predicted mask", cmap="gray")
    _panel(axes[3], _masks(image, prediction=prediction, truth=truth), "overlay on FLAIR")
    suffix = f" (Dice {dice:.2f})" if dice is not None else ""
    figure.suptitle((title or "Prediction") + suffix)
    add_legend(figure)
    return figure


def show_article_figure(
    image, prediction, *, title: str = "Raw | predicted mask | overlay", truth=None
):
    """The article's figure: the raw slice, the predicted mask, the prediction drawn on the FLAIR
    slice; given the `truth`, also the true mask beside the predicted one, outlined on the
    overlay."""
    panels = 3 if truth is None else 4
    figure, axes = plt.subplots(1, panels, figsize=(3 * panels, 3.6))
    _panel(axes[0], image[..., :3].astype(np.uint8), "raw slice (3 channels as RGB)")
    if truth is not None:
        _panel(axes[1], (truth > 0).astype(np.uint8) * 255, "true mask", cmap="gray")
    _panel(axes[-2], (prediction > 0).astype(np.uint8) * 255, "predicted mask", cmap="gray")
    _panel(axes[-1], _masks(image, prediction=prediction, truth=truth), "overlay on FLAIR")
    figure.suptitle(title)
    add_legend(figure, truth=truth is not None)
    return figure


def show_augmentations(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], *, title=""):
    """Augmented versions of one slice, a column each: the three sequences as RGB above (a
    missing sequence greys it), FLAIR in grey with the mask outlined below."""
    figure, axes = plt.subplots(2, len(images), figsize=(2.3 * len(images), 6.2), squeeze=False)
    for index, (image, mask) in enumerate(zip(images, masks, strict=True)):
        shown = np.clip(image, 0, 255).astype(np.uint8)
        name = "original" if index == 0 else f"augmented #{index}"
        _panel(axes[0, index], shown[..., :3], f"{name}: RGB")
        _panel(axes[1, index], _masks(shown, truth=mask), f"{name}: FLAIR")
    figure.suptitle(title or "Augmentation: flip, rotation, scale, intensity, missing sequence")
    add_legend(figure, prediction=False)
    return figure


def plot_dataset_statistics(records: Sequence[data.SliceRecord], *, title: str = ""):
    """Slices per patient, share of tumour slices per patient, tumour sizes on tumour slices."""
    patients = sorted({r.patient_id for r in records})
    slices = [sum(r.patient_id == p for r in records) for p in patients]
    share = [np.mean([r.has_tumour for r in records if r.patient_id == p]) for p in patients]
    sizes = [r.tumour_pixels for r in records if r.has_tumour]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    axes[0].hist(slices, bins=15, color="tab:blue")
    axes[0].set(title="Slices per patient", xlabel="slices", ylabel="patients")
    axes[1].hist(share, bins=15, color="tab:orange")
    axes[1].set(title="Tumour prevalence", xlabel="share of a patient's slices with tumour",
                ylabel="patients")  # fmt: skip
    axes[2].hist(sizes, bins=30, color="tab:red")
    axes[2].set(title="Tumour size", xlabel="tumour pixels on a slice", ylabel="slices")
    figure.suptitle(title or f"{len(patients)} patients, {len(records)} slices")
    figure.tight_layout()
    return figure


def _read_log(log: str | Path | dict) -> dict[str, list[float]]:
    if isinstance(log, dict):
        return {k: list(map(float, v)) for k, v in log.items()}
    with Path(log).open() as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(row[key]) for row in rows] for key in rows[0] if key != "epoch"}


def plot_history(log: str | Path | dict, *, title: str = "Learning curves"):
    """Loss and Dice per epoch, training and validation, from a Keras history or log.csv."""
    history = _read_log(log)
    epochs = np.arange(1, len(history["loss"]) + 1)
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for axis, metric in zip(axes, ("loss", "dice"), strict=True):
        for prefix, style in (("", "-o"), ("val_", "--s")):
            if prefix + metric in history:
                label = "validation" if prefix else "training"
                axis.plot(epochs, history[prefix + metric], style, label=label, markersize=3)
        axis.set(title=metric.capitalize(), xlabel="epoch", ylabel=metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_patient_scores(patients: Sequence[dict], *, title: str = "Per-patient results"):
    """Dice per patient (sorted) and tumour volume against Dice."""
    ranked = sorted(patients, key=lambda p: p["dice"])
    figure, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    axes[0].bar(range(len(ranked)), [p["dice"] for p in ranked], color="tab:blue")
    axes[0].set_xticks(range(len(ranked)), [p["patient"][-13:] for p in ranked], rotation=90,
                       fontsize=9)  # fmt: skip
    axes[0].set(title="Volume Dice per patient", ylabel="Dice", ylim=(0, 1))
    axes[1].scatter([p["tumour_pixels"] for p in patients], [p["dice"] for p in patients])
    axes[1].set(title="Tumour size against Dice", xlabel="tumour pixels in the volume",
                ylabel="Dice", xscale="log", ylim=(0, 1))  # fmt: skip
    axes[1].grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def _png(figure) -> bytes:
    """The figure as PNG bytes; the figure is closed, so nothing else draws it again."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def slice_browser(records: Sequence[data.SliceRecord], *, predict=None):
    """Browse patients and slices: scan and mask, and the prediction if `predict` maps an
    (H, W, 3) image to a mask. It opens on the first patient's middle tumour slice.

    In a notebook it shows a patient menu and a slice slider above the figure; where widgets do
    not render (GitHub, a notebook saved without widget state) the opening figure shows instead.
    Outside IPython, or without ipywidgets, it draws that figure with matplotlib. Works with
    ipywidgets 7 (Colab's) and 8. Displays; returns nothing.
    """
    if not records:
        raise ValueError("slice_browser needs at least one slice record, got none")
    by_patient: dict[str, list[data.SliceRecord]] = {}
    for record in records:
        by_patient.setdefault(record.patient_id, []).append(record)

    def figure(patient: str, position: int):
        chosen = by_patient[patient][min(position, len(by_patient[patient]) - 1)]
        image, truth = data.read_image(chosen.image_path), data.read_mask(chosen.mask_path)
        title = f"{patient}, slice {chosen.slice_index}"
        if predict is None:
            return show_channels(image, truth, title=title)
        return show_prediction(image, truth, predict(image), title=title)

    first_patient = sorted(by_patient)[0]
    tumour_positions = [i for i, r in enumerate(by_patient[first_patient]) if r.has_tumour]
    first_position = (
        tumour_positions[len(tumour_positions) // 2]
        if tumour_positions
        else len(by_patient[first_patient]) // 2
    )
    try:  # a dependency, imported here, when a browser is wanted
        import ipywidgets as widgets
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        widgets = get_ipython = None
    if get_ipython is None or get_ipython() is None:
        figure(first_patient, first_position)
        plt.show()
        return
    # One Image widget redrawn on each change, rather than ipywidgets.interact: interact's Output
    # widget makes `jupyter nbconvert --execute` hang now and then (jupyter/nbconvert#2029).
    patient = widgets.Dropdown(options=sorted(by_patient), value=first_patient,
                               description="patient")  # fmt: skip
    position = widgets.IntSlider(min=0, max=max(len(v) for v in by_patient.values()) - 1,
                                 value=first_position, description="slice")  # fmt: skip
    picture = widgets.Image(format="png", value=_png(figure(first_patient, first_position)))

    def redraw(_change=None):
        picture.value = _png(figure(patient.value, position.value))

    patient.observe(redraw, "value")
    position.observe(redraw, "value")
    browser = widgets.VBox([widgets.HBox([patient, position]), picture])
    # The opening figure as the PNG fallback of the widget's display, for static renderers.
    fallback = base64.b64encode(picture.value).decode("ascii")
    display({**_widget_bundle(browser), "image/png": fallback}, raw=True)


def _widget_bundle(widget) -> dict:
    """A widget's display data. ipywidgets 8 returns it from `_repr_mimebundle_`; 7 (Colab's)
    has no such method and displays the same two entries from `_ipython_display_`."""
    if hasattr(widget, "_repr_mimebundle_"):
        return widget._repr_mimebundle_()
    view = {"version_major": 2, "version_minor": 0, "model_id": widget.model_id}
    return {"text/plain": repr(widget)[:110], "application/vnd.jupyter.widget-view+json": view}
