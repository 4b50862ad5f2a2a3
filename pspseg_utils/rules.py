"""The conventions several modules share, each defined once; no imports, so any module can use
them without pulling in TensorFlow or OpenCV.

A slice is three co-registered MRI sequences stacked as channels. A slice given with its `c`
neighbours on each side (2.5D) stacks theirs too: 3 (1 + 2c) channels, the slice itself first.
A model with one sigmoid output masks tumour or not; a softmax over C classes masks C labels.
"""

from __future__ import annotations

__all__ = [
    "BACKBONE_NAMES",
    "SEQUENCES",
    "PREDICTION_COLOUR",
    "TRUTH_COLOUR",
    "DISPLAY_CHANNEL",
    "channels_for",
    "context_slices_for",
    "mask_labels",
]

# The backbones a PSPNet can have (models.BACKBONES holds how each is built), named here for the
# command line and the configuration, which must not import Keras to list them.
BACKBONE_NAMES = (
    "vgg16", "resnet50", "resnet101", "mobilenetv2", "mobilenetv2_050", "mobilenetv2_035"
)  # fmt: skip
# The channel order of every image in the dataset, and so of the model's input.
SEQUENCES = ("pre-contrast", "FLAIR", "post-contrast")
# RGB of predicted and true tumour in overlays and figures, from the Okabe-Ito palette, which
# readers with any common colour-vision deficiency tell apart: the prediction a translucent
# orange fill, the truth a blue outline, both over the grey FLAIR channel.
PREDICTION_COLOUR = (230, 159, 0)  # Okabe-Ito orange
TRUTH_COLOUR = (0, 114, 178)  # Okabe-Ito blue
# The channel figures show in grey under the masks: FLAIR, where these gliomas show brightest.
DISPLAY_CHANNEL = SEQUENCES.index("FLAIR")


def channels_for(context_slices: int) -> int:
    """Input channels of a slice with `context_slices` neighbours on each side: 0 -> 3, 1 -> 9."""
    return len(SEQUENCES) * (1 + 2 * context_slices)


def context_slices_for(channels: int | None) -> int | None:
    """The inverse of `channels_for`: 3 -> 0, 9 -> 1, 15 -> 2; None for any other count."""
    per_slice = len(SEQUENCES)
    if channels is None or channels % (2 * per_slice) != per_slice:
        return None
    return (channels // per_slice - 1) // 2


def mask_labels(num_classes: int) -> int:
    """How many labels a model's masks hold: 2 (tumour or not) for one sigmoid output channel,
    else one per softmax class."""
    return max(2, num_classes)
