"""Figures for the course: scans, masks, overlays, learning curves, scores, and pictures of the
network's ideas (its block diagram, dilated kernels, the output stride's grid) drawn from the real
model and Keras layers; every one titled and labelled. Each function draws one figure and returns
it (matplotlib `Figure`).

Every figure that shows a scan takes `credit`, the line that says where the scans come from
(their dataset, authors and licence, or that they are synthetic), and prints it in small grey
type along the figure's bottom edge; `add_credit` does the same for a figure drawn by hand. The
lessons pass `course.data_credit(SOURCE)`."""

from __future__ import annotations

import base64
import csv
import io
import textwrap
from collections.abc import Sequence
from pathlib import Path

import cv2
import keras
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap, to_rgb
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch, Patch, Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from pspseg_utils import data, rules
from pspseg_utils.inference import overlay
from pspseg_utils.models.layers import AdaptiveAveragePooling

__all__ = [
    "show_channels",
    "show_prediction",
    "show_article_figure",
    "show_augmentations",
    "plot_dataset_statistics",
    "plot_history",
    "plot_patient_scores",
    "show_architecture",
    "show_dilation",
    "show_output_stride",
    "slice_browser",
    "add_legend",
    "add_credit",
]


# How the figures draw masks on the grey FLAIR slice (inference.overlay does the drawing).
FILL_ALPHA = 0.45  # the prediction's fill: 45% orange, 55% the scan beneath
OUTLINE_WIDTH = 2  # pixels of the truth's outline
# The Okabe-Ito palette (Okabe and Ito 2008), which readers with any common colour-vision
# deficiency tell apart; rules.PREDICTION_COLOUR and TRUTH_COLOUR are its orange and blue.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
}


def _panel(axis, image, title, cmap=None):
    axis.imshow(image, cmap=cmap, vmin=0, vmax=255 if image.dtype == np.uint8 else None)
    axis.set_title(title, fontsize=10)
    axis.set_axis_off()


def _masks(image, *, prediction=None, truth=None):
    """The slice's FLAIR in grey, the prediction filled orange, the truth outlined blue."""
    empty = np.zeros(image.shape[:2], np.uint8)
    return overlay(image, empty if prediction is None else prediction, alpha=FILL_ALPHA,
                   truth=truth, thickness=OUTLINE_WIDTH)  # fmt: skip


CREDIT_STYLE = dict(fontsize=7, color="0.35")  # the credit line: small grey type
CREDIT_LINE_INCHES, CREDIT_MARGIN_INCHES = 0.13, 0.09  # a line of it, and the space around


def _credit_strip(figure, credit: str | None) -> float:
    """Write `credit` centred along the figure's bottom edge, wrapped onto more lines where the
    figure is too narrow for one, and make the figure taller by its strip, so that the panels
    keep their size; return the share of the figure's height the strip takes (0 without a
    credit), for the layout to leave free."""
    if not credit:
        return 0.0
    text = figure.text(0.5, 0, credit, ha="center", va="bottom", gid="credit", **CREDIT_STYLE)
    width, room = text.get_window_extent().width, 0.96 * figure.bbox.width
    if width > room:  # wrap it at as many characters as the room holds, proportionally
        per_line = max(20, int(len(credit) * room / width))
        text.set_text("\n".join(textwrap.wrap(credit, per_line, break_on_hyphens=False)))
    strip = CREDIT_MARGIN_INCHES + CREDIT_LINE_INCHES * (text.get_text().count("\n") + 1)
    figure.set_figheight(figure.get_figheight() + strip)
    text.set_y(0.04 / figure.get_figheight())
    return strip / figure.get_figheight()


def add_credit(figure, credit: str | None):
    """Write where the scans come from (`credit`, e.g. `course.data_credit(SOURCE)`) in small
    grey type along the figure's bottom edge (the figure grows by its height), and lay the
    figure out above it. For a figure drawn by hand that shows a scan and has no legend;
    `add_legend(..., credit=...)` for one with a legend. Without a credit (None or ""), it only
    lays the figure out."""
    figure.tight_layout(rect=(0, _credit_strip(figure, credit), 1, 1))


def add_legend(figure, *, prediction=True, truth=True, credit: str | None = None):
    """A legend under the panels naming what the overlays draw, in the colours they draw it,
    and under it the `credit` line if given (see `add_credit`); lays the figure out too, leaving
    room for both."""
    handles = []
    if prediction:
        colour = np.array(rules.PREDICTION_COLOUR) / 255
        handles.append(Patch(facecolor=(*colour, FILL_ALPHA), edgecolor=colour,
                             label="prediction"))  # fmt: skip
    if truth:
        handles.append(Line2D([], [], color=np.array(rules.TRUTH_COLOUR) / 255,
                              linewidth=OUTLINE_WIDTH + 1, label="truth (outline)"))  # fmt: skip
    legend = 0.08 * figure.get_figheight()  # inches: the legend's strip
    strip = _credit_strip(figure, credit)
    figure.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, strip),
                  ncol=len(handles), fontsize=10, frameon=False)  # fmt: skip
    figure.tight_layout(rect=(0, strip + legend / figure.get_figheight(), 1, 1))


def show_channels(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    title: str = "",
    credit: str | None = None,
):
    """The three MRI channels side by side and the three as one RGB image; then, if a mask is
    given, the mask and the FLAIR slice with the mask outlined; the `credit` line (where the
    scan comes from, see `add_credit`) under them."""
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
        add_legend(figure, prediction=False, credit=credit)
    else:
        add_credit(figure, credit)
    return figure


def show_prediction(
    image,
    truth,
    prediction,
    *,
    title: str = "",
    dice: float | None = None,
    credit: str | None = None,
):
    """Scan | true mask | predicted mask | overlay (prediction filled, truth outlined), and the
    `credit` line (where the scan comes from, see `add_credit`) under them."""
    figure, axes = plt.subplots(1, 4, figsize=(11, 3.4))
    _panel(axes[0], image[..., rules.DISPLAY_CHANNEL], "scan (FLAIR)", cmap="gray")
    _panel(axes[1], (truth > 0).astype(np.uint8) * 255, "true mask", cmap="gray")
    _panel(axes[2], (prediction > 0).astype(np.uint8) * 255, "predicted mask", cmap="gray")
    _panel(axes[3], _masks(image, prediction=prediction, truth=truth), "overlay on FLAIR")
    suffix = f" (Dice {dice:.2f})" if dice is not None else ""
    figure.suptitle((title or "Prediction") + suffix)
    add_legend(figure, credit=credit)
    return figure


def show_article_figure(
    image,
    prediction,
    *,
    title: str = "Raw | predicted mask | overlay",
    truth=None,
    credit: str | None = None,
):
    """The article's figure: the raw slice, the predicted mask, the prediction drawn on the FLAIR
    slice; given the `truth`, also the true mask beside the predicted one, outlined on the
    overlay; the `credit` line (where the scan comes from, see `add_credit`) under them."""
    panels = 3 if truth is None else 4
    figure, axes = plt.subplots(1, panels, figsize=(3 * panels, 3.6))
    _panel(axes[0], image[..., :3].astype(np.uint8), "raw slice (3 channels as RGB)")
    if truth is not None:
        _panel(axes[1], (truth > 0).astype(np.uint8) * 255, "true mask", cmap="gray")
    _panel(axes[-2], (prediction > 0).astype(np.uint8) * 255, "predicted mask", cmap="gray")
    _panel(axes[-1], _masks(image, prediction=prediction, truth=truth), "overlay on FLAIR")
    figure.suptitle(title)
    add_legend(figure, truth=truth is not None, credit=credit)
    return figure


def show_augmentations(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    *,
    title: str = "",
    credit: str | None = None,
):
    """Augmented versions of one slice, a column each: the three sequences as RGB above (a
    missing sequence greys it), FLAIR in grey with the mask outlined below; the `credit` line
    (where the scan comes from, see `add_credit`) at the bottom."""
    figure, axes = plt.subplots(2, len(images), figsize=(2.3 * len(images), 6.2), squeeze=False)
    for index, (image, mask) in enumerate(zip(images, masks, strict=True)):
        shown = np.clip(image, 0, 255).astype(np.uint8)
        name = "original" if index == 0 else f"augmented #{index}"
        _panel(axes[0, index], shown[..., :3], f"{name}: RGB")
        _panel(axes[1, index], _masks(shown, truth=mask), f"{name}: FLAIR")
    figure.suptitle(title or "Augmentation: flip, rotation, scale, intensity, missing sequence")
    add_legend(figure, prediction=False, credit=credit)
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
    # Ticks at 1, 2 and 5 of each power of ten, written out (5,000 rather than 5×10^3), so that
    # a range of less than a decade is labelled and no two labels run into each other.
    axes[1].xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    axes[1].xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axes[1].xaxis.set_minor_formatter(NullFormatter())
    axes[1].grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


# === Pictures of the network's ideas, drawn from the model and from Keras layers ===

# The block diagram's roles: each block's colour and what the legend calls it.
ARCHITECTURE_ROLES = {
    "data": (OKABE_ITO["black"], "input and output"),
    "backbone": (OKABE_ITO["blue"], "dilated backbone"),
    "pyramid": (OKABE_ITO["orange"], "pyramid pooling"),
    "head": (OKABE_ITO["bluish green"], "head"),
    "decoder": (OKABE_ITO["sky blue"], "stride-4 decoder"),
    "auxiliary": (OKABE_ITO["reddish purple"], "auxiliary head (training only)"),
}
BOX_WIDTH, BOX_HEIGHT = 0.86, 0.72  # a block, in columns (one column per step of the network)
INCHES_PER_COLUMN = 1.3


def _shape(shape) -> str:
    """(None, 16, 16, 96) -> "16×16×96": one image's shape, without the batch axis."""
    return "×".join(str(size) for size in tuple(shape)[1:])


def _layer(model, name: str):
    """The model's layer called `name`, or None where the model has none (no decoder, say)."""
    return next((layer for layer in model.layers if layer.name == name), None)


def _box(axis, key: str, x: float, y: float, text: str, role: str):
    """A rounded block centred on (x, y), tinted by its role; patch and text carry gid=key."""
    colour = ARCHITECTURE_ROLES[role][0]
    tint = tuple(0.8 + 0.2 * channel for channel in to_rgb(colour))
    corner = (x - BOX_WIDTH / 2, y - BOX_HEIGHT / 2)
    axis.add_patch(FancyBboxPatch(corner, BOX_WIDTH, BOX_HEIGHT, facecolor=tint, edgecolor=colour,
                                  boxstyle="round,pad=0,rounding_size=0.08", linewidth=1.5,
                                  zorder=2, gid=key))  # fmt: skip
    axis.text(x, y, text, ha="center", va="center", fontsize=8, zorder=3, gid=key)


def _route(axis, *points):
    """An arrow through `points`: straight segments, the head on the last one."""
    xs, ys = zip(*points, strict=True)
    axis.plot(xs[:-1], ys[:-1], color="0.3", linewidth=1, zorder=1)
    axis.annotate("", xy=points[-1], xytext=points[-2], zorder=1,
                  arrowprops=dict(arrowstyle="-|>", color="0.3", linewidth=1, shrinkA=0,
                                  shrinkB=0))  # fmt: skip


def _route_label(axis, key: str, x: float, y: float, text: str):
    axis.text(x, y + 0.05, text, ha="center", va="bottom", fontsize=8, gid=key)


def show_architecture(model, *, title: str = ""):
    """A PSPNet's block diagram, read from the model's own layers: each block a layer or a few,
    with its output shape (height×width×channels, as `layer.output.shape` gives it).

    Left to right: the input, the standardisation, the backbone (its feature map, and the output
    stride: the input's height over the feature map's), one pyramid branch per bin (pooled to
    b×b and reduced by a 1x1 convolution), their concatenation with the features, the head's
    3x3 convolution, the stride-4 decoder and its skip when the model has them
    (`skip_channels`), the classifier and the output. Under them, when the model has one, the
    auxiliary head on one of the backbone's earlier stages. The arrows that leave the backbone
    are labelled with the feature map they carry. A model built without the pyramid
    (`bins=()`) shows one block in its place, through which the features pass unchanged.

    Args:
        model: `pspseg_utils.models.PSPNet`, or a functional model with its layer names.
        title: str. The figure's title; by default the backbone, the shapes in and out and the
            output stride.

    Raises:
        ValueError: a model without a "backbone" layer, "head_conv" or "head_classifier".
    """
    pools = sorted((layer for layer in model.layers if isinstance(layer, AdaptiveAveragePooling)),
                   key=lambda layer: layer.bins)  # fmt: skip
    names = ("backbone", "head_conv", "head_classifier")
    if any(_layer(model, name) is None for name in names):
        raise ValueError(
            "show_architecture draws a PSPNet (pspseg_utils.models.PSPNet), with layers "
            f"'backbone', 'head_conv' and 'head_classifier'; got model {model.name!r}"
        )
    image = model.inputs[0].shape
    features = pools[0].input.shape if pools else model.get_layer("head_conv").input.shape
    output_stride = image[1] // features[1]
    skip, auxiliary = _layer(model, "head_skip_conv"), _layer(model, "aux_conv")
    output = model.get_layer("head_probabilities")
    activation = getattr(output.activation, "__name__", "activation")
    backbone = getattr(model, "backbone_name", "")

    # The layout: one column per step, the bins stacked in theirs; the skip, then the auxiliary
    # head, in rows under the bins. The identity path to the concatenation runs above them.
    bin_rows = [((len(pools) - 1) / 2 - index) * (BOX_HEIGHT + 0.12) for index in range(len(pools))]
    top = max([*bin_rows, 0]) + BOX_HEIGHT / 2 + 0.25  # the features' path to the concatenation
    bottom = min([*bin_rows, 0]) - BOX_HEIGHT / 2
    skip_row = bottom - 0.35 - BOX_HEIGHT / 2
    auxiliary_row = skip_row - (BOX_HEIGHT + 0.45) * (skip is not None)
    rows = [0, *bin_rows] + [skip_row] * (skip is not None) + [auxiliary_row] * bool(auxiliary)
    lowest = min(rows) - BOX_HEIGHT / 2 - 0.1  # the figure's lower edge
    head, decoder = 5, 6  # columns
    classifier = head + 1 + (skip is not None)
    last = classifier + 1
    height = top + 0.45 - lowest
    figure, axis = plt.subplots(figsize=(INCHES_PER_COLUMN * (last + 1),
                                         INCHES_PER_COLUMN * height + 1.0))  # fmt: skip
    half = BOX_WIDTH / 2
    below_backbone = -BOX_HEIGHT / 2
    skip_path, auxiliary_path = 2 + 0.15, 2 - 0.15  # where they leave the backbone's box

    _box(axis, "input", 0, 0, f"input image\n{_shape(image)}", "data")
    standardized = model.get_layer("standardize").output.shape
    _box(axis, "standardize", 1, 0, f"standardize\n{_shape(standardized)}", "data")
    _box(axis, "backbone", 2, 0, f"backbone\n{backbone}\n{_shape(features)}\noutput stride "
         f"{output_stride}", "backbone")  # fmt: skip
    for pool, row in zip(pools, bin_rows, strict=True):
        reduced = model.get_layer(f"{pool.name}_relu").output.shape
        _box(axis, f"bin{pool.bins}", 3, row, f"pool to {pool.bins}×{pool.bins},\n1x1 conv\n"
             f"{_shape(reduced)}", "pyramid")  # fmt: skip
        _route(axis, (2 + half, 0), (3 - half, row))
        _route(axis, (3 + half, row), (4 - half, 0))
    if pools:
        prefix = pools[0].name.rsplit("_pool", 1)[0]
        concatenated = model.get_layer(f"{prefix}_concat").output.shape
        _box(axis, "concat", 4, 0, f"upsample,\nconcatenate\n{_shape(concatenated)}", "pyramid")
        _route(axis, (2, BOX_HEIGHT / 2), (2, top), (4, top), (4, BOX_HEIGHT / 2))
        _route_label(axis, "route:features", 3, top, f"the features, {_shape(features)}")
    else:
        _box(axis, "no_pyramid", 4, 0, f"no pyramid\n(bins=()): passed\non, {_shape(features)}",
             "pyramid")  # fmt: skip
        _route(axis, (2 + half, 0), (4 - half, 0))
        _route_label(axis, "route:features", 3, 0, _shape(features))
    head_features = model.get_layer("head_dropout").output.shape
    _box(axis, "head", head, 0, f"head: 3x3 conv,\ndropout\n{_shape(head_features)}", "head")
    if skip is not None:
        refined = model.get_layer("head_decoder_relu").output.shape
        _box(axis, "decoder", decoder, 0, f"decoder:\nupsample, concat,\n3x3 conv\n"
             f"{_shape(refined)}", "decoder")  # fmt: skip
        reduced_skip = model.get_layer("head_skip_relu").output.shape
        _box(axis, "skip", decoder, skip_row, f"skip: 1x1 conv\n{_shape(reduced_skip)}",
             "decoder")  # fmt: skip
        _route(axis, (skip_path, below_backbone), (skip_path, skip_row), (decoder - half, skip_row))
        _route(axis, (decoder, skip_row + BOX_HEIGHT / 2), (decoder, -BOX_HEIGHT / 2))
        _route_label(axis, "route:skip", 3.5, skip_row, f"stride {image[1] // skip.input.shape[1]}"
                     f": {_shape(skip.input.shape)}")  # fmt: skip
    logits = model.get_layer("head_classifier").output.shape
    _box(axis, "classifier", classifier, 0, f"classifier:\n1x1 conv\n{_shape(logits)}", "head")
    _box(axis, "output", last, 0, f"upsample,\n{activation}\n{_shape(output.output.shape)}",
         "data")  # fmt: skip
    for column in (0, 1, 4, *range(head, last)):  # the main row's arrows
        _route(axis, (column + half, 0), (column + 1 - half, 0))
    if auxiliary is not None:
        auxiliary_logits = model.get_layer("aux_classifier").output.shape
        _box(axis, "aux_head", head, auxiliary_row, f"auxiliary head:\n3x3 conv,\n1x1 conv\n"
             f"{_shape(auxiliary_logits)}", "auxiliary")  # fmt: skip
        auxiliary_output = model.get_layer("aux_probabilities").output.shape
        _box(axis, "aux_output", last, auxiliary_row, f"upsample,\n{activation}\n"
             f"{_shape(auxiliary_output)}", "auxiliary")  # fmt: skip
        _route(axis, (auxiliary_path, below_backbone), (auxiliary_path, auxiliary_row),
               (head - half, auxiliary_row))  # fmt: skip
        _route(axis, (head + half, auxiliary_row), (last - half, auxiliary_row))
        stage = auxiliary.input.shape
        _route_label(axis, "route:auxiliary", 3.5, auxiliary_row,
                     f"stride {image[1] // stage[1]}: {_shape(stage)}")  # fmt: skip

    axis.set(xlim=(-0.55, last + 0.55), ylim=(lowest, top + 0.45))
    axis.set_axis_off()
    axis.set_title("Each block: layers of this model and their output shape, height×width×"
                   "channels; the arrows carry the features", fontsize=10)  # fmt: skip
    outputs = _shape(output.output.shape)
    figure.suptitle(title or f"PSPNet on {backbone or 'its backbone'}: {_shape(image)} in, "
                    f"{outputs} out, output stride {output_stride}")  # fmt: skip
    shown = {"data", "backbone", "pyramid", "head"}
    shown |= {role for role, layer in (("decoder", skip), ("auxiliary", auxiliary)) if layer}
    handles = [
        Patch(facecolor="white", edgecolor=colour, linewidth=1.5, label=label)
        for role, (colour, label) in ARCHITECTURE_ROLES.items()
        if role in shown
    ]
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9,
                  frameon=False)  # fmt: skip
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    return figure


def _dilation_taps(rate: int, grid_size: int, kernel_size: int = 3) -> np.ndarray:
    """Which pixels of a grid_size × grid_size image a Keras `Conv2D(kernel_size,
    dilation_rate=rate)` reads for its centre output pixel, as a boolean (grid_size, grid_size)
    array, measured on the layer: a convolution is linear, so given one image per input pixel,
    that pixel 1 and every other 0, its centre output is nonzero exactly for the pixels it reads
    (the same as where the centre output's gradient is nonzero)."""
    convolution = keras.layers.Conv2D(1, kernel_size, dilation_rate=rate, padding="same",
                                      use_bias=False, kernel_initializer="ones")  # fmt: skip
    impulses = np.eye(grid_size * grid_size, dtype="float32")
    impulses = impulses.reshape(grid_size * grid_size, grid_size, grid_size, 1)
    centre = grid_size // 2
    response = keras.ops.convert_to_numpy(convolution(impulses))[:, centre, centre, 0]
    return response.reshape(grid_size, grid_size) != 0


def show_dilation(rates: Sequence[int] = (1, 2, 4), *, grid_size: int = 11):
    """Which input pixels a 3x3 convolution reads at each dilation rate, a panel per rate.

    Each panel is a grid_size × grid_size image: the pixels the kernel reads (its 9 taps,
    `rate` pixels apart) in blue, the output pixel's position (the centre) marked, and its
    receptive field, (3 - 1) × rate + 1 pixels a side, outlined. The taps are measured on a
    `keras.layers.Conv2D(1, 3, dilation_rate=rate)`, not drawn from the formula. Dilation
    widens what a layer sees without striding, so the feature map keeps its resolution.

    Args:
        rates: sequence of int. The dilation rates, each >= 1.
        grid_size: int. Odd, and at least the largest receptive field.

    Raises:
        ValueError: a rate below 1, an even grid, or one too small for the largest rate.
    """
    rates = tuple(rates)
    if not rates or any(not isinstance(rate, int) or rate < 1 for rate in rates):
        raise ValueError(f"rates must be integers >= 1, got {rates!r}")
    widest = 2 * max(rates) + 1
    if grid_size % 2 == 0 or grid_size < widest:
        raise ValueError(
            f"grid_size must be odd (a centre pixel) and at least {widest} (the receptive field "
            f"at dilation {max(rates)}), got {grid_size!r}"
        )
    figure, axes = plt.subplots(1, len(rates), figsize=(3.4 * len(rates), 4.2), squeeze=False)
    centre, taps_colour = grid_size // 2, OKABE_ITO["blue"]
    centre_marker = dict(marker="x", color=OKABE_ITO["vermillion"], markeredgewidth=2.5)
    field_outline = dict(edgecolor=OKABE_ITO["orange"], linestyle="--", linewidth=2)
    offsets = np.arange(grid_size)
    for axis, rate in zip(axes[0], rates, strict=True):
        taps = _dilation_taps(rate, grid_size)
        axis.imshow(taps, cmap=ListedColormap(["white", taps_colour]), vmin=0, vmax=1)
        axis.set_xticks(offsets, offsets - centre, fontsize=7)
        axis.set_yticks(offsets, offsets - centre, fontsize=7)
        axis.set_xticks(offsets[:-1] + 0.5, minor=True)
        axis.set_yticks(offsets[:-1] + 0.5, minor=True)
        axis.grid(which="minor", color="0.75", linewidth=0.6)
        axis.tick_params(which="minor", length=0)
        field = 2 * rate + 1
        corner = (centre - rate - 0.5, centre - rate - 0.5)
        axis.add_patch(Rectangle(corner, field, field, fill=False, **field_outline))
        axis.plot(centre, centre, linestyle="none", markersize=9, **centre_marker)
        axis.set_title(f"dilation {rate}: {int(taps.sum())} taps,\nreceptive field "
                       f"{field}×{field} pixels", fontsize=10)  # fmt: skip
        axis.set(xlabel="column, from the centre", ylabel="row, from the centre")
    figure.suptitle("Which pixels a 3x3 convolution reads (measured on Keras' Conv2D)")
    handles = [
        Patch(facecolor=taps_colour, label="pixels it reads (taps)"),
        Line2D([], [], linestyle="none", label="the output pixel's position", **centre_marker),
        Patch(facecolor="none", label="receptive field", **field_outline),
    ]
    figure.legend(handles=handles, loc="lower center", ncol=3, fontsize=10, frameon=False)
    figure.tight_layout(rect=(0, 0.09, 1, 1))
    return figure


def show_output_stride(
    image: np.ndarray,
    stride: int,
    *,
    mask=None,
    title: str = "",
    credit: str | None = None,
):
    """How coarse the feature map is at an output stride: the slice's FLAIR (the channel
    `rules.DISPLAY_CHANNEL`, in grey) with the borders of the feature map's cells drawn over it,
    one cell of stride × stride pixels per feature; beside it the slice averaged per cell, all
    the detail a map of that size can hold. Given the `mask`, its outline is drawn on both.

    Args:
        image: (H, W, C) or (H, W) array, 0..255, H and W multiples of `stride`.
        stride: int >= 1. The output stride: the image's size over the feature map's.
        mask: None or (H, W) array; nonzero marks the tumour.
        title: str. The figure's title; by default the slice's and the grid's sizes.
        credit: str or None. Where the scan comes from, printed under the figure (see
            `add_credit`), e.g. `course.data_credit(SOURCE)`.

    Raises:
        ValueError: a stride below 1, or an image whose sides are not multiples of it.
    """
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    grey = image[..., rules.DISPLAY_CHANNEL] if image.ndim == 3 else image
    height, width = grey.shape
    if height % stride or width % stride:
        raise ValueError(
            f"the image's sides must be multiples of the stride {stride}, got {height}x{width}"
        )
    rows, columns = height // stride, width // stride
    grey = np.clip(grey, 0, 255).astype(np.uint8)
    cells = grey.reshape(rows, stride, columns, stride).mean(axis=(1, 3))
    averaged = np.kron(cells, np.ones((stride, stride))).round().astype(np.uint8)
    figure, axes = plt.subplots(1, 2, figsize=(8.4, 4.8))
    panels = ((grey, f"FLAIR and the {rows}×{columns} grid"),
              (averaged, f"averaged per cell: {rows}×{columns} values"))  # fmt: skip
    for axis, (shown, name) in zip(axes, panels, strict=True):
        if mask is not None:
            axis.imshow(_masks(shown, truth=np.squeeze(mask)))
        else:
            axis.imshow(shown, cmap="gray", vmin=0, vmax=255)
        axis.set(title=name, xlabel="column (pixels)", ylabel="row (pixels)")
    for row in range(1, rows):
        axes[0].axhline(row * stride - 0.5, color=OKABE_ITO["yellow"], linewidth=0.8, gid="grid")
    for column in range(1, columns):
        axes[0].axvline(column * stride - 0.5, color=OKABE_ITO["yellow"], linewidth=0.8,
                        gid="grid")  # fmt: skip
    figure.suptitle(title or f"Output stride {stride}: a {height}×{width} slice, a {rows}×"
                    f"{columns} feature map (a cell: {stride}×{stride} pixels)")  # fmt: skip
    if mask is not None:
        add_legend(figure, prediction=False, credit=credit)
    else:
        add_credit(figure, credit)
    return figure


def _png(figure) -> bytes:
    """The figure as PNG bytes; the figure is closed, so nothing else draws it again."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def slice_browser(records: Sequence[data.SliceRecord], *, predict=None, credit: str | None = None):
    """Browse patients and slices: scan and mask, and the prediction if `predict` maps an
    (H, W, 3) image to a mask, with the `credit` line (where the scans come from, see
    `add_credit`) under each. It opens on the first patient's middle tumour slice.

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
            return show_channels(image, truth, title=title, credit=credit)
        return show_prediction(image, truth, predict(image), title=title, credit=credit)

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


def show_pooled_maps(model, image: np.ndarray, *, credit: str | None = None):
    """What the pyramid pooling module hands the head for one slice: the slice's FLAIR (grey)
    and, for each bin size b, the b × b map of the branch's most active channel on this slice
    (after its 1x1 conv, BatchNorm and ReLU, before upsampling), each with its colour bar. From
    a trained model the maps show at which scale, and where, the network responds to the slice;
    an untrained one's mean nothing yet.

    Args:
        model: a PSPNet with its pyramid (layers `ppm_pool{b}_relu`).
        image: (H, W, C) array, 0..255, any size: resized to the model's input as `predict` is.
        credit: str or None. Where the scan comes from (see `add_credit`).

    Raises:
        ValueError: the model has no pyramid pooling module (built with bins=()).
    """
    bins = tuple(getattr(model, "bins", ()))
    if not bins:
        raise ValueError(f"{model.name} has no pyramid pooling module (bins={bins!r})")
    height, width = model.input_shape[1:3]
    resized = np.asarray(image)
    if resized.shape[:2] != (height, width):
        resized = cv2.resize(resized, (width, height), interpolation=cv2.INTER_AREA)
    probe = keras.Model(model.input, [model.get_layer(f"ppm_pool{b}_relu").output for b in bins])
    outputs = probe(resized[None].astype("float32"))
    figure, axes = plt.subplots(1, len(bins) + 1, figsize=(3.0 * (len(bins) + 1), 3.3))
    axes[0].imshow(resized[..., rules.DISPLAY_CHANNEL], cmap="gray", vmin=0, vmax=255)
    axes[0].set_title(f"FLAIR, {height}×{width} input")
    axes[0].set_axis_off()
    for axis, size, output in zip(axes[1:], bins, outputs, strict=True):
        maps = keras.ops.convert_to_numpy(output).astype("float32")[0]
        channel = int(np.argmax(maps.max(axis=(0, 1))))
        shown = axis.imshow(maps[..., channel], cmap="magma", vmin=0)
        axis.set_title(f"{size}×{size} bins, channel {channel}")
        axis.set_xticks(range(size))
        axis.set_yticks(range(size))
        axis.tick_params(labelsize=7)
        figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.04).set_label("activation")
    figure.suptitle("Pyramid pooling: each branch's most active channel on this slice")
    add_credit(figure, credit)
    return figure
