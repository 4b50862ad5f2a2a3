"""pspseg_utils: brain-tumour segmentation on MRI with PSPNet in Keras 3.

Sub-modules load on first use, so `pspseg check` does not pay for importing TensorFlow. The
article's API works with only its import line changed::

    from pspseg_utils import keras_segmentation as ks  # was: import keras_segmentation as ks
    model = ks.models.pspnet.vgg_pspnet(n_classes=2, input_height=384, input_width=384)
    model.train(train_images="images/", train_annotations="masks/", checkpoints_path="ckpts/brain")
    mask = ks.predict.predict(model=model, inp="image.png")
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"  # the notebooks install, and open, the tag v<version>: course.RELEASE_TAG

_SUBMODULES = (
    "data",
    "config",
    "recipes",
    "synthetic",
    "models",
    "losses",
    "metrics",
    "training",
    "inference",
    "evaluation",
    "export",
    "cli",
    "keras_segmentation",
)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBMODULES])
