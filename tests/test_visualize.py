"""The course's figures: each is titled, and the slice browser works with and without a notebook."""

from __future__ import annotations

import base64
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pspseg_utils import data, visualize  # noqa: E402


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
