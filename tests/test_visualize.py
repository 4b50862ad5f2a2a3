"""The course's figures: each is titled, each that shows a scan says where the scan comes from
(its credit line), the slice browser works with and without a notebook, and the pictures of the
network's ideas show what the model and Keras' layers do."""

from __future__ import annotations

import base64
import sys

import matplotlib

matplotlib.use("Agg")

import cv2  # noqa: E402
import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from pspseg_utils import course, data, models, rules, visualize  # noqa: E402
from pspseg_utils.models import PSPNet  # noqa: E402


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


def test_patient_scores_label_tumour_sizes_in_plain_numbers_that_do_not_collide():
    sizes = [4701, 7223, 11654, 28110, 28166, 68295]  # less than two decades, as in lesson 5
    patients = [{"patient": f"TCGA_XX_{index:04d}_20000101", "dice": 0.1 * index + 0.2,
                 "tumour_pixels": size} for index, size in enumerate(sizes)]  # fmt: skip
    figure = visualize.plot_patient_scores(patients)
    figure.canvas.draw()
    axis = figure.axes[1]
    low, high = axis.get_xlim()
    shown = [tick for tick in axis.xaxis.get_major_ticks() if low <= tick.get_loc() <= high]
    labels = [tick.label1.get_text() for tick in shown]
    assert labels == ["5,000", "10,000", "20,000", "50,000"]
    assert all(not tick.label1.get_text() for tick in axis.xaxis.get_minor_ticks())
    boxes = [tick.label1.get_window_extent() for tick in shown]
    assert all(left.x1 < right.x0 for left, right in zip(boxes, boxes[1:], strict=False))


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


# === Pictures of the network's ideas: the block diagram, dilation, the output stride's grid ===


def _shape_text(shape) -> str:
    height, width, channels = tuple(shape)[1:]
    return f"{height}×{width}×{channels}"


def _diagram(figure):
    """The diagram's blocks (the gid of each box) and each block's text, by gid."""
    (axis,) = figure.axes
    boxes = [patch.get_gid() for patch in axis.patches if isinstance(patch, FancyBboxPatch)]
    return boxes, {text.get_gid(): text.get_text() for text in axis.texts}


def _tiny_pspnet(backbone="mobilenetv2_035", **options):
    options = {"num_classes": 1, "backbone_weights": None, "head_channels": 16, **options}
    return models.build_pspnet((64, 64, 3), backbone=backbone, **options)


def _architecture_case(backbone, aux_loss_weight, skip_channels):
    """(backbone, aux_loss_weight, skip_channels); the ResNets, the slowest to build, slow."""
    slow = pytest.mark.slow if backbone.startswith("resnet") else ()
    return pytest.param(backbone, aux_loss_weight, skip_channels, marks=slow)


ARCHITECTURE_CASES = [_architecture_case(name, 0.4, 8) for name in rules.BACKBONE_NAMES] + [
    _architecture_case("vgg16", None, None),  # the paper's PSPNet, without auxiliary head
    _architecture_case("mobilenetv2_035", 0.4, None),
    _architecture_case("mobilenetv2_035", None, 8),
]


@pytest.mark.parametrize("backbone, aux_loss_weight, skip_channels", ARCHITECTURE_CASES)
def test_architecture_diagram_has_a_block_per_step_with_the_models_own_shapes(
    backbone, aux_loss_weight, skip_channels
):
    model = _tiny_pspnet(backbone, aux_loss_weight=aux_loss_weight, skip_channels=skip_channels)
    figure = visualize.show_architecture(model)
    boxes, texts = _diagram(figure)

    def shape(layer):
        return _shape_text(model.get_layer(layer).output.shape)

    expected = ["input", "standardize", "backbone", "bin1", "bin2", "bin3", "bin6", "concat",
                "head", "classifier", "output"]  # fmt: skip
    expected += ["decoder", "skip"] * bool(skip_channels)
    expected += ["aux_head", "aux_output"] * bool(aux_loss_weight)
    assert sorted(boxes) == sorted(expected)  # one box each, a box per pyramid bin
    assert len(boxes) == 4 + 7 + 2 * bool(skip_channels) + 2 * bool(aux_loss_weight)
    features = model.get_layer("ppm_pool1").input.shape
    assert features[1] == 64 // 8
    assert texts["input"].endswith("64×64×3")
    assert texts["standardize"].endswith(shape("standardize"))
    assert texts["backbone"] == f"backbone\n{backbone}\n{_shape_text(features)}\noutput stride 8"
    for bins in (1, 2, 3, 6):
        assert texts[f"bin{bins}"].endswith(shape(f"ppm_pool{bins}_relu"))
        assert shape(f"ppm_pool{bins}_relu").startswith(f"{bins}×{bins}×")
    assert texts["concat"].endswith(shape("ppm_concat"))
    assert texts["head"].endswith(shape("head_dropout"))
    assert texts["classifier"].endswith(shape("head_classifier"))
    # The classifier runs at stride 4 with the decoder, at the output stride without it.
    assert shape("head_classifier") == ("16×16×1" if skip_channels else "8×8×1")
    assert texts["output"] == "upsample,\nsigmoid\n64×64×1"
    assert texts["route:features"].endswith(_shape_text(features))
    if skip_channels:
        assert texts["decoder"].endswith(shape("head_decoder_relu"))
        assert texts["skip"].endswith(shape("head_skip_relu"))
        skip = model.get_layer("head_skip_conv").input.shape
        assert texts["route:skip"] == f"stride 4: {_shape_text(skip)}"
    if aux_loss_weight:
        assert texts["aux_head"].endswith(shape("aux_classifier"))
        assert texts["aux_output"].endswith(shape("aux_probabilities"))
    assert ("route:skip" in texts) == bool(skip_channels)
    assert ("route:auxiliary" in texts) == bool(aux_loss_weight)
    legend = _legend_labels(figure)[0]
    assert ("auxiliary head (training only)" in legend) == bool(aux_loss_weight)
    assert ("stride-4 decoder" in legend) == bool(skip_channels)
    assert figure.get_suptitle() == (
        f"PSPNet on {backbone}: 64×64×3 in, 64×64×1 out, output stride 8"
    )
    assert figure.axes[0].get_title()


def test_architecture_diagram_follows_the_bins_and_the_output_stride():
    model = _tiny_pspnet(bins=(1, 2, 4), output_stride=16, aux_loss_weight=None, num_classes=3)
    boxes, texts = _diagram(visualize.show_architecture(model))
    assert sorted(b for b in boxes if b.startswith("bin")) == ["bin1", "bin2", "bin4"]
    assert texts["backbone"].endswith("4×4×112\noutput stride 16")
    assert texts["bin4"].endswith(_shape_text(model.get_layer("ppm_pool4_relu").output.shape))
    assert texts["output"] == "upsample,\nsoftmax\n64×64×3"


def test_architecture_diagram_of_a_model_without_the_pyramid():
    model = _tiny_pspnet(bins=(), aux_loss_weight=None, skip_channels=8)
    boxes, texts = _diagram(visualize.show_architecture(model))
    assert not [b for b in boxes if b.startswith("bin")] and "concat" not in boxes
    features = _shape_text(model.get_layer("head_conv").input.shape)
    assert features == _shape_text(model.get_layer("backbone").output[-1].shape)
    assert texts["no_pyramid"].endswith(features)
    assert texts["route:features"] == features
    assert texts["backbone"].endswith(f"{features}\noutput stride 8")


def test_architecture_diagram_refuses_a_model_that_is_not_a_pspnet():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)], name="dense")
    with pytest.raises(ValueError, match="draws a PSPNet.*'dense'"):
        visualize.show_architecture(model)


def test_dilation_taps_are_read_from_keras_and_lie_rate_pixels_apart():
    figure = visualize.show_dilation((1, 2, 4), grid_size=11)
    assert figure.get_suptitle()
    for axis, rate in zip(figure.axes, (1, 2, 4), strict=True):
        taps = np.asarray(axis.get_images()[0].get_array())
        expected = {(5 + rate * row, 5 + rate * column) for row in (-1, 0, 1)
                    for column in (-1, 0, 1)}  # fmt: skip
        assert set(zip(*np.nonzero(taps), strict=True)) == expected  # 9 pixels, `rate` apart
        field = 2 * rate + 1  # (3 - 1) x rate + 1
        title = f"dilation {rate}: 9 taps,\nreceptive field {field}×{field} pixels"
        assert axis.get_title() == title
        assert axis.get_xlabel() and axis.get_ylabel()


@pytest.mark.parametrize(
    "rates, grid_size, message",
    [((4,), 7, "at least 9"), ((1, 2), 8, "must be odd"), ((0,), 11, "integers >= 1")],
)
def test_show_dilation_refuses_a_grid_that_cannot_show_the_rates(rates, grid_size, message):
    with pytest.raises(ValueError, match=message):
        visualize.show_dilation(rates, grid_size=grid_size)


def _grid_lines(axis):
    lines = [line for line in axis.lines if line.get_gid() == "grid"]
    columns = [line.get_xdata()[0] for line in lines if line.get_xdata()[0] == line.get_xdata()[1]]
    rows = [line.get_ydata()[0] for line in lines if line.get_ydata()[0] == line.get_ydata()[1]]
    return sorted(columns), sorted(rows)


def test_output_stride_grid_has_a_cell_per_feature_over_the_flair_slice():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    figure = visualize.show_output_stride(image, 8)
    columns, rows = _grid_lines(figure.axes[0])
    borders = [8 * k - 0.5 for k in range(1, 16)]  # 15 borders a side: 16 cells
    assert columns == borders and rows == borders
    assert figure.get_suptitle() == (
        "Output stride 8: a 128×128 slice, a 16×16 feature map (a cell: 8×8 pixels)"
    )
    shown = np.asarray(figure.axes[0].get_images()[0].get_array())
    np.testing.assert_array_equal(shown, image[..., rules.DISPLAY_CHANNEL])  # FLAIR, in grey
    averaged = np.asarray(figure.axes[1].get_images()[0].get_array())
    cell = image[8:16, 24:32, rules.DISPLAY_CHANNEL].mean()
    np.testing.assert_array_equal(averaged[8:16, 24:32], np.full((8, 8), round(cell)))
    assert all(axis.get_title() and axis.get_xlabel() for axis in figure.axes)


def test_output_stride_outlines_the_mask_on_both_panels():
    figure = visualize.show_output_stride(_flair_slice(), 16, mask=_square(4, 4))
    assert _grid_lines(figure.axes[0]) == ([15.5], [15.5])  # 32 px at stride 16: 2 x 2 cells
    assert "2×2 feature map" in figure.get_suptitle()
    assert _legend_labels(figure) == [["truth (outline)"]]
    for axis in figure.axes:
        np.testing.assert_array_equal(axis.get_images()[0].get_array()[4, 7], rules.TRUTH_COLOUR)


def test_show_output_stride_refuses_sides_that_are_not_multiples_of_the_stride():
    with pytest.raises(ValueError, match="multiples of the stride 8, got 100x100"):
        visualize.show_output_stride(np.zeros((100, 100, 3), np.uint8), 8)


# === The credit line: where the scans come from, under every figure that shows one ===

CREDIT = "MRI: a dataset, its authors; Licence: CC BY-NC-SA 4.0"


def _credit_texts(figure):
    """The credit lines on the figure, each as one line (a narrow figure wraps its credit)."""
    return [" ".join(text.get_text().split("\n")) for text in figure.texts
            if text.get_gid() == "credit"]  # fmt: skip


def _credit(figure):
    (text,) = [text for text in figure.texts if text.get_gid() == "credit"]
    return text


def _extent(artist, figure):
    return artist.get_window_extent(figure.canvas.get_renderer())


def _scan_figures(image, mask, records, credit):
    """Every figure function that draws a scan, given `credit`."""
    figures = {
        "show_channels": visualize.show_channels(image, mask, credit=credit),
        "show_channels, no mask": visualize.show_channels(image, credit=credit),
        "show_prediction": visualize.show_prediction(image, mask, mask, credit=credit),
        "show_article_figure": visualize.show_article_figure(image, mask, credit=credit),
        "show_augmentations": visualize.show_augmentations([image], [mask], credit=credit),
        "show_output_stride": visualize.show_output_stride(image, 8, mask=mask, credit=credit),
        "show_output_stride, no mask": visualize.show_output_stride(image, 8, credit=credit),
    }
    visualize.slice_browser(records, credit=credit)
    figures["slice_browser"] = plt.gcf()
    visualize.slice_browser(records, predict=lambda scan: mask, credit=credit)
    figures["slice_browser, predicting"] = plt.gcf()
    return figures


def test_every_scan_figure_prints_its_credit_under_panels_and_legend(tiny_records):
    record = _first_middle_tumour_slice(tiny_records)
    image, mask = data.read_image(record.image_path), data.read_mask(record.mask_path)
    for name, figure in _scan_figures(image, mask, tiny_records, CREDIT).items():
        assert _credit_texts(figure) == [CREDIT], name
        credit = _credit(figure)
        assert credit.get_fontsize() < 10 and credit.get_color() == "0.35", name  # small, grey
        line = _extent(credit, figure)
        assert line.y0 >= 0 and line.x0 >= 0 and line.x1 <= figure.bbox.width, name  # all shown
        above = [axis for axis in figure.axes] + list(figure.legends)
        assert all(_extent(a, figure).y0 >= line.y1 for a in above), f"{name}: overlaps"


def test_the_credit_line_adds_a_strip_and_leaves_the_panels_their_size():
    image, mask = _flair_slice(), _square(4, 4)
    for draw in (lambda credit: visualize.show_prediction(image, mask, mask, credit=credit),
                 lambda credit: visualize.show_channels(image, credit=credit)):  # fmt: skip
        plain, credited = draw(None), draw(CREDIT)
        assert plain.get_figwidth() == credited.get_figwidth()
        assert 0.15 < credited.get_figheight() - plain.get_figheight() < 0.3  # one line's strip
        for before, after in zip(plain.axes, credited.axes, strict=True):
            before, after = _extent(before, plain), _extent(after, credited)
            assert abs(before.width - after.width) < 1 and abs(before.height - after.height) < 1


def test_without_a_credit_no_line_is_drawn(tiny_records):
    record = _first_middle_tumour_slice(tiny_records)
    image, mask = data.read_image(record.image_path), data.read_mask(record.mask_path)
    for name, figure in _scan_figures(image, mask, tiny_records, None).items():
        assert _credit_texts(figure) == [], name


def test_add_credit_and_add_legend_credit_a_figure_drawn_by_hand():
    figure, axis = plt.subplots(figsize=(6, 3))
    axis.imshow(_flair_slice()[..., 1], cmap="gray")
    visualize.add_credit(figure, CREDIT)
    assert _credit_texts(figure) == [CREDIT]
    assert _extent(axis, figure).y0 >= _extent(_credit(figure), figure).y1
    figure, axis = plt.subplots(figsize=(6, 3))
    visualize.add_legend(figure, credit=CREDIT)
    line, legend = _extent(_credit(figure), figure), _extent(figure.legends[0], figure)
    assert _credit_texts(figure) == [CREDIT] and legend.y0 >= line.y1 >= line.y0 >= 0
    assert _extent(axis, figure).y0 >= legend.y1 - 1  # the panels above the legend


def test_the_lessons_credit_lines_fit_under_the_narrowest_scan_figure():
    image = np.zeros((64, 64, 3), np.uint8)
    for credit in course.DATA_CREDITS.values():
        figure = visualize.show_output_stride(image, 8, credit=credit)  # 8.4 inches wide
        line = _extent(_credit(figure), figure)
        assert line.x0 >= 0 and line.x1 <= figure.bbox.width, credit
        assert _credit(figure).get_text() == credit  # on one line


def test_a_credit_too_long_for_the_figure_wraps_and_stays_under_the_panels():
    credit = " ".join(["a long credit line"] * 12)
    figure = visualize.show_channels(_flair_slice(), credit=credit)  # 9.6 inches wide
    text = _credit(figure)
    line = _extent(text, figure)
    assert text.get_text().count("\n") >= 1 and _credit_texts(figure) == [credit]
    assert line.x0 >= 0 and line.x1 <= figure.bbox.width and line.y0 >= 0
    assert all(_extent(axis, figure).y0 >= line.y1 for axis in figure.axes)


def test_pooled_maps_show_each_branch_with_its_colour_bar():
    keras.utils.set_random_seed(0)
    model = PSPNet(input_shape=(48, 48, 3), backbone="mobilenetv2", backbone_weights=None,
                   head_channels=16, bins=(1, 2, 3))  # fmt: skip
    image = np.random.default_rng(0).integers(0, 256, (96, 96, 3)).astype(np.uint8)
    figure = visualize.show_pooled_maps(model, image, credit="MRI: test")
    images = [axis for axis in figure.axes if axis.get_images()]
    assert [axis.get_title().split(",")[0] for axis in images] == [
        "FLAIR", "1×1 bins", "2×2 bins", "3×3 bins"
    ]  # fmt: skip
    assert len(figure.axes) == 4 + 3  # a colour bar beside each branch
    assert images[0].get_images()[0].get_array().shape == (48, 48)  # resized to the input
    # The 3x3 panel is the branch's own map: its most active channel on this slice.
    probe = keras.Model(model.input, model.get_layer("ppm_pool3_relu").output)
    resized = cv2.resize(image, (48, 48), interpolation=cv2.INTER_AREA)
    maps = keras.ops.convert_to_numpy(probe(resized[None].astype("float32")))[0]
    channel = int(np.argmax(maps.max(axis=(0, 1))))
    assert images[3].get_title() == f"3×3 bins, channel {channel}"
    np.testing.assert_allclose(images[3].get_images()[0].get_array(), maps[..., channel],
                               rtol=1e-5)  # fmt: skip
    assert "MRI: test" in [text.get_text() for text in figure.texts]
    plt.close(figure)


def test_pooled_maps_need_a_pyramid():
    model = PSPNet(input_shape=(48, 48, 3), backbone="mobilenetv2", backbone_weights=None,
                   head_channels=16, bins=())  # fmt: skip
    with pytest.raises(ValueError, match=r"has no pyramid pooling module \(bins=\(\)\)"):
        visualize.show_pooled_maps(model, np.zeros((48, 48, 3), np.uint8))
