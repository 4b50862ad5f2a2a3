"""keras_segmentation's `train(model, ...)`, also bound as `model.train(...)`, on Keras 3.

The keywords are keras_segmentation 0.3.0's. What changed underneath: `checkpoints_path` names a
run folder (`last.keras`, `best.keras`, `log.csv`, written atomically) rather than a file prefix;
training uses AdamW on a poly schedule (`optimizer_name` other than "adam" warns); validation
scores the whole validation folder every epoch (`val_steps_per_epoch` is not needed); every file
is checked before training whatever `verify_dataset` says; every `augmentation_name` maps to
pspseg's augmentation (flip, rotation, scale, contrast), since imgaug, which keras_segmentation
used, is not maintained.
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from pathlib import Path

from pspseg_utils import data, rules
from pspseg_utils.keras_segmentation.data_utils.data_loader import check_augmentation_name
from pspseg_utils.training import TrainConfig, TrainResult, fit

__all__ = ["train"]

# keras_segmentation keywords whose job pspseg cannot do: refused rather than ignored.
UNSUPPORTED = ("ignore_zero_class", "custom_augmentation", "other_inputs_paths", "preprocessing")


def train(
    model,
    train_images,
    train_annotations,
    input_height=None,
    input_width=None,
    n_classes=None,
    verify_dataset=True,
    checkpoints_path=None,
    epochs=5,
    batch_size=2,
    validate=False,
    val_images=None,
    val_annotations=None,
    val_batch_size=2,
    auto_resume_checkpoint=False,
    load_weights=None,
    steps_per_epoch=512,
    val_steps_per_epoch=512,
    gen_use_multiprocessing=False,
    ignore_zero_class=False,
    optimizer_name="adam",
    do_augment=False,
    augmentation_name="aug_all",
    callbacks=None,
    custom_augmentation=None,
    other_inputs_paths=None,
    preprocessing=None,
    read_image_type=1,
    *,
    learning_rate: float = 1e-3,
    loss: str = "bce_dice",
    verbose: int | str = 2,
) -> TrainResult:
    """Train `model` (a PSPNet, or a name of `models.all_models.model_from_name`, built with
    `n_classes`, `input_height`, `input_width`) on the article layout: images in
    `train_images`, label masks of the same stems in `train_annotations`.

    `auto_resume_checkpoint=True` continues from the last finished epoch in `checkpoints_path`;
    without `checkpoints_path` the run is kept in a temporary folder. Returns pspseg's
    `TrainResult` (keras_segmentation returned nothing).

    Raises:
        ValueError: `validate=True` without the validation folders, an unknown
            `augmentation_name`, a colour mode other than `read_image_type=1`, or a keyword whose
            job pspseg cannot do (`UNSUPPORTED`).
        DatasetError: files that cannot be used, each named with its fix.
    """
    given = {"ignore_zero_class": ignore_zero_class, "custom_augmentation": custom_augmentation,
             "other_inputs_paths": other_inputs_paths, "preprocessing": preprocessing}  # fmt: skip
    refused = [name for name in UNSUPPORTED if given[name]]
    if refused:
        raise ValueError(
            f"model.train cannot honour {refused} on Keras 3: pspseg trains every class with its "
            "own augmentation and reads each slice as it is; leave them out"
        )
    if read_image_type != 1:
        raise ValueError(f"read_image_type must be 1 (colour), got {read_image_type!r}")
    if validate and (val_images is None or val_annotations is None):
        raise ValueError("validate=True needs val_images and val_annotations")
    check_augmentation_name(augmentation_name)
    if gen_use_multiprocessing:
        warnings.warn("model.train ignores ['gen_use_multiprocessing']: tf.data feeds the model "
                      "on every core already.", stacklevel=2)  # fmt: skip
    if optimizer_name != "adam":
        warnings.warn(f"model.train trains with AdamW, not {optimizer_name!r}.", stacklevel=2)
    if isinstance(model, str):
        from pspseg_utils.keras_segmentation.models.all_models import model_from_name

        model = model_from_name[model](n_classes, input_height=input_height,
                                       input_width=input_width)  # fmt: skip
    num_classes = rules.mask_labels(model.num_classes)
    height, width = model.input_shape[1:3]  # the article's default model is 384 x 576

    def arrays(images_dir, masks_dir):
        records = data.find_pairs(images_dir, masks_dir, num_classes=num_classes, progress=False)
        return data.load_arrays(
            records, image_size=(height, width), num_classes=num_classes, progress=False
        )

    config = TrainConfig(
        image_size=height,  # not read by fit(): the arrays carry their size
        num_classes=model.num_classes,
        epochs=epochs,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        learning_rate=learning_rate,
        loss=loss,
        augment=do_augment,
        missing_sequence_rate=0.0,  # an MRI convention; keras_segmentation's images are any
    )
    if load_weights:
        model.load_weights(load_weights)
    with contextlib.ExitStack() as stack:
        run_dir = checkpoints_path
        if run_dir is None:  # the article allowed training without checkpoints
            run_dir = stack.enter_context(tempfile.TemporaryDirectory())
        return fit(
            model,
            arrays(train_images, train_annotations),
            arrays(val_images, val_annotations) if validate else None,
            run_dir=Path(run_dir),
            config=config,
            resume=auto_resume_checkpoint,
            extra_callbacks=list(callbacks or ()),
            val_batch_size=val_batch_size,
            verbose=verbose,
        )
