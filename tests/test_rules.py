"""The shared conventions, by hand: channels of a slice with its neighbours, and mask labels."""

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
