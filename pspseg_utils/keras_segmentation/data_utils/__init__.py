"""keras_segmentation.data_utils: `data_loader`."""

from pspseg_utils.keras_segmentation.data_utils import data_loader

__all__ = ["data_loader"]
