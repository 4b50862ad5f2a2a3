"""keras_segmentation's PSPNet API on Keras 3, in keras_segmentation's own shape.

Code written for keras_segmentation 0.3.0's PSPNets, the article's included, runs with its import
line changed::

    from pspseg_utils import keras_segmentation as ks  # was: import keras_segmentation as ks
    from pspseg_utils.keras_segmentation.models.pspnet import vgg_pspnet  # was: keras_segmentation.

    model = ks.models.all_models.model_from_name["vgg_pspnet"](n_classes=2)
    model.train(train_images="images/", train_annotations="masks/", checkpoints_path="ckpts/b")
    mask = ks.predict.predict(model=model, inp="image.png")
    ks.predict.evaluate(model=model, inp_images_dir="images/", annotations_dir="masks/")

The work is pspseg's own (`pspseg_utils.models`, `training`, `inference`); this package only
translates keywords and return values, and nothing in pspseg imports it. What cannot be revived
(downloads of pretrained ADE20K / Cityscapes / VOC weights, knowledge distillation) raises an
error that says so.
"""

from pspseg_utils.keras_segmentation import (
    data_utils,
    model_compression,
    models,
    predict,
    pretrained,
    train,
)

__all__ = ["data_utils", "model_compression", "models", "predict", "pretrained", "train"]
