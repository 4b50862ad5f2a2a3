"""The shared conventions, by hand: channels of a slice with its neighbours, mask labels, and the
figures' colour-blind-safe colours."""

from __future__ import annotations

import pytest

from pspseg_utils import rules


@pytest.mark.parametrize(("context_slices", "channels"), [(0, 3), (1, 9), (2, 15)])
def test_channels_and_context_slices_are_inverses(context_slices, channels):
    assert rules.channels_for(context_slices) == channels
    assert rules.context_slices_for(channels) == context_slices


@pytest.mark.parametrize("channels", [None, 1, 4, 6, 12])
def test_other_channel_counts_are_no_slice_stack(channels):
    assert rules.context_slices_for(channels) is None


def test_mask_labels_of_a_sigmoid_and_a_softmax_model():
    assert [rules.mask_labels(c) for c in (1, 2, 3)] == [2, 2, 3]


def test_figure_colours_are_okabe_ito_orange_and_blue_on_flair():
    assert rules.PREDICTION_COLOUR == (230, 159, 0)  # Okabe-Ito orange
    assert rules.TRUTH_COLOUR == (0, 114, 178)  # Okabe-Ito blue
    assert rules.SEQUENCES[rules.DISPLAY_CHANNEL] == "FLAIR"


def test_figure_colours_differ_in_lightness_not_only_in_hue():
    """Orange and blue stay apart in grey (what a reader without colour vision sees): relative
    luminance 0.2126 R + 0.7152 G + 0.0722 B, about 163 and 94 of 255."""

    def luminance(rgb):
        return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]

    assert luminance(rules.PREDICTION_COLOUR) - luminance(rules.TRUTH_COLOUR) > 50
