"""The named training settings, as TrainConfig keyword arguments, in one light module (no
TensorFlow import) that the command line, `training.default_config` and the notebooks share.

The CPU recipe is TrainConfig's own defaults with a time budget, training on every patient but
the validation ones; see README, Results.
"""

from __future__ import annotations

# Seconds, not minutes: smoke tests, CI and the notebooks under PSPSEG_QUICK=1. Eager, because
# tracing the training step of a 150-layer graph takes longer than a few tiny eager steps.
QUICK = dict(
    image_size=64, epochs=2, batch_size=4, steps_per_epoch=2, head_channels=16, run_eagerly=True
)

# The model a recipe ships learns from every labelled patient: none is held out for testing, and
# the validation patients only pick the epoch (best.keras). Its estimate on unseen patients is
# the patient-level cross-validation (benchmarks/cross_validation.py), not a held-out handful.
SHIPPED = dict(test_fraction=0.0)

# What `pspseg train` does without a GPU: as many epochs as fit in 25 minutes (at most 100).
CPU = dict(time_budget_minutes=25.0, **SHIPPED)

# What `pspseg train` does with a GPU: the article's backbone, ImageNet-initialised, full size,
# in mixed precision (float16 on a T4). Its budget fits a free Colab session: on a T4 an
# estimated 35 of the 60 epochs fit (README, Run on Colab); on an H100 all 60 take minutes.
GPU = dict(
    backbone="vgg16",
    image_size=256,
    head_channels=256,
    batch_size=16,
    epochs=60,
    backbone_weights="imagenet",
    time_budget_minutes=20.0,
    **SHIPPED,
)

# The course's profiles (course.resolve_profile picks one). The lessons keep 15% of the patients
# out of training (TrainConfig's default) so that lessons 4 and 5 show patients the model never
# saw; "cpu" is a laptop's few minutes, "gpu" the GPU recipe.
COURSE = {
    "quick": QUICK,
    "cpu": dict(
        backbone="mobilenetv2_050", image_size=128, epochs=10, batch_size=16, time_budget_minutes=6
    ),  # fmt: skip
    "gpu": {**GPU, "test_fraction": 0.15},
}
