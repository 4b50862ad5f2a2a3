"""The course's figures: each is titled, and the slice browser works with and without a notebook."""

from __future__ import annotations

import base64
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pspseg_utils import data, rules, visualize  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _first_middle_tumour_slice(records):
    patient = sorted({r.patient_id for r in records})[0]
    tumour = [r for r in records if r.patient_id == patient and r.has_tumour]
    return tumour[len(tumour) // 2]


def test_figures_are_titled_and_their_panels_labelled(tiny_records):
    record = _first_middle_tumour_slice(tiny_records)
    image, mask = data.read_image(record.image_path), data.read_mask(record.mask_path)
    figures = [
        visualize.show_channels(image, mask),
        visualize.show_prediction(image, mask, mask, dice=1.0),
        visualize.show_article_figure(image, mask),
        visualize.plot_dataset_statistics(tiny_records),
        visualize.plot_history({"loss": [1.0, 0.5], "dice": [0.2, 0.6], "val_dice": [0.1, 0.5]}),
    ]
    for figure in figures:
        assert figure.get_suptitle()
        assert all(axis.get_title() for axis in figure.axes)
    assert figures[1].get_suptitle() == "Prediction (Dice 1.00)"


def _legend_labels(figure):
    return [[text.get_text() for text in legend.get_texts()] for legend in figure.legends]


def _square(top, left, side=8, size=32):
    mask = np.zeros((size, size), np.uint8)
    mask[top : top + side, left : left + side] = 1
    return mask


def _flair_slice(size=32):
    image = np.zeros((size, size, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 100, 250  # only FLAIR is 100
    return image


def test_every_overlay_figure_has_a_legend_naming_what_it_draws(tiny_records):
    record = _first_middle_tumour_slice(tiny_records)
    image, mask = data.read_image(record.image_path), data.read_mask(record.mask_path)
    both = ["prediction", "truth (outline)"]
    assert _legend_labels(visualize.show_prediction(image, mask, mask)) == [both]
    assert _legend_labels(visualize.show_article_figure(image, mask, truth=mask)) == [both]
    assert _legend_labels(visualize.show_article_figure(image, mask)) == [["prediction"]]
    assert _legend_labels(visualize.show_channels(image, mask)) == [["truth (outline)"]]
    assert _legend_labels(visualize.show_augmentations([image], [mask])) == [["truth (outline)"]]
    assert _legend_labels(visualize.show_channels(image)) == []  # no mask, nothing to name


def test_legend_colours_are_the_overlay_colours():
    figure = visualize.show_prediction(_flair_slice(), _square(4, 4), _square(8, 8))
    patch, line = figure.legends[0].legend_handles
    np.testing.assert_allclose(patch.get_facecolor()[:3], np.array(rules.PREDICTION_COLOUR) / 255)
    np.testing.assert_allclose(line.get_color(), np.array(rules.TRUTH_COLOUR) / 255)


def test_show_prediction_fills_the_prediction_and_outlines_the_truth_on_grey_flair():
    truth, prediction = _square(4, 4), _square(14, 14)  # apart: no pixel in both
    figure = visualize.show_prediction(_flair_slice(), truth, prediction)
    shown = figure.axes[3].get_images()[0].get_array()
    assert visualize.FILL_ALPHA == 0.45
    # inside the prediction: 0.55 x 100 + 0.45 x (230, 159, 0) = (158.5, 126.55, 55) -> uint8
    np.testing.assert_array_equal(shown[17, 17], (158, 126, 55))
    np.testing.assert_array_equal(shown[4, 7], rules.TRUTH_COLOUR)  # on the truth's top edge
    np.testing.assert_array_equal(shown[7, 7], (100, 100, 100))  # inside the truth: the FLAIR
    np.testing.assert_array_equal(shown[30, 0], (100, 100, 100))  # in neither: the FLAIR
    titles = [axis.get_title() for axis in figure.axes]
    assert titles[1:3] == ["true mask", "predicted mask"]  # the truth beside the prediction


def test_article_figure_shows_the_truth_beside_the_prediction_when_given():
    figure = visualize.show_article_figure(_flair_slice(), _square(14, 14), truth=_square(4, 4))
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == ["raw slice (3 channels as RGB)", "true mask", "predicted mask",
                      "overlay on FLAIR"]  # fmt: skip


def test_slice_browser_outside_a_notebook_draws_the_first_patients_middle_tumour_slice(
    tiny_records,
):
    record = _first_middle_tumour_slice(tiny_records)
    assert visualize.slice_browser(tiny_records) is None
    assert plt.gcf().get_suptitle() == f"{record.patient_id}, slice {record.slice_index}"


def test_slice_browser_with_a_prediction_shows_it(tiny_records):
    visualize.slice_browser(tiny_records, predict=lambda image: np.zeros(image.shape[:2], np.uint8))
    titles = [axis.get_title() for axis in plt.gcf().axes]
    assert "predicted mask" in titles


def test_slice_browser_in_ipython_displays_widgets_with_a_png_fallback(tiny_records):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    try:
        with capture_output() as captured:
            visualize.slice_browser(tiny_records)
    finally:
        InteractiveShell.clear_instance()
    (shown,) = captured.outputs
    assert "application/vnd.jupyter.widget-view+json" in shown.data
    assert base64.b64decode(shown.data["image/png"]).startswith(b"\x89PNG")
    assert plt.get_fignums() == []  # drawn into the PNG, not left for the notebook to show


def test_slice_browser_without_ipywidgets_draws_the_static_figure(tiny_records, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets -> ImportError
    InteractiveShell.instance()
    try:
        visualize.slice_browser(tiny_records)
    finally:
        InteractiveShell.clear_instance()
    assert plt.gcf().axes[0].get_title() == "pre-contrast"


def test_widget_bundle_of_an_ipywidgets_7_widget_names_its_model():
    class Widget7:  # ipywidgets 7.7: a model_id, no _repr_mimebundle_
        model_id = "abc123"

        def __repr__(self):
            return "VBox(children=(...))"

    bundle = visualize._widget_bundle(Widget7())
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view == {"version_major": 2, "version_minor": 0, "model_id": "abc123"}
    assert bundle["text/plain"] == "VBox(children=(...))"


def test_slice_browser_refuses_no_records():
    with pytest.raises(ValueError, match="at least one slice record"):
        visualize.slice_browser([])
