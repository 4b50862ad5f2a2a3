"""keras_segmentation's knowledge distillation, which is not revived: `perform_distilation`
raises `NotImplementedError` saying what to do instead."""

from __future__ import annotations

__all__ = ["perform_distilation"]


def perform_distilation(teacher_model, student_model, data_path, *args, **kwargs):
    """Not available in pspseg; raises NotImplementedError."""
    raise NotImplementedError(
        "model_compression.perform_distilation is not part of pspseg: train the smaller network "
        "directly (models.pspnet.mobilenet_pspnet, or `pspseg train --backbone mobilenetv2_050`), "
        "which the course's CPU recipe does."
    )
