"""The methods keras_segmentation gave its models, bound to a pspseg PSPNet.

keras_segmentation bound them per instance in `get_segmentation_model`; so does this, which keeps
`pspseg_utils.models` free of training and prediction. A model loaded with
`predict.model_from_checkpoint_path` gets them again.
"""

from __future__ import annotations

from types import MethodType

import keras

from pspseg_utils.keras_segmentation import predict, train

ARTICLE_METHODS = {
    "train": train.train,
    "predict_segmentation": predict.predict,
    "predict_multiple": predict.predict_multiple,
    "evaluate_segmentation": predict.evaluate,
}


def with_article_methods(model: keras.Model) -> keras.Model:
    """`model` with `train`, `predict_segmentation`, `predict_multiple` and
    `evaluate_segmentation` bound to it: each takes the model as its first argument, as in
    keras_segmentation."""
    for method, function in ARTICLE_METHODS.items():
        setattr(model, method, MethodType(function, model))
    return model
