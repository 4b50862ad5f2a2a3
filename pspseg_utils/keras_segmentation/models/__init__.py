"""keras_segmentation.models: the PSPNet builders (`pspnet`) and `all_models.model_from_name`."""

from pspseg_utils.keras_segmentation.models import all_models, pspnet

__all__ = ["all_models", "pspnet"]
