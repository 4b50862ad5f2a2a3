"""keras_segmentation's `model_from_name`: builder name -> builder, for its PSPNets."""

from pspseg_utils.keras_segmentation.models import pspnet


class _ModelsByName(dict):
    """A dict whose missing keys say which models this package revives."""

    def __missing__(self, name):
        raise KeyError(
            f"{name!r} is not among the models pspseg revives: {sorted(self)}; "
            "keras_segmentation's U-Net, SegNet and FCN models are not part of this course"
        )


model_from_name = _ModelsByName(
    {name: getattr(pspnet, name) for name in pspnet.__all__},
)
