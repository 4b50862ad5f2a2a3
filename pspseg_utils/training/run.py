"""Training a model: compile, fit on arrays with exact resume, and `train`, the front door
that takes a data folder."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from pspseg_utils import data, recipes, rules, runlock
from pspseg_utils.config import (
    CHANGEABLE_ON_RESUME,
    TrainConfig,
    model_settings,
)
from pspseg_utils.losses import get_loss
from pspseg_utils.metrics import DiceCoefficient, IoUCoefficient
from pspseg_utils.models import build_pspnet
from pspseg_utils.training.callbacks import (
    FitScheduleToBudget,
    PreciseBatchNorm,
    RunCheckpoint,
    TimeBudget,
)
from pspseg_utils.training.checkpoints import (
    check_resumable,
    check_same_patients,
    load_run_config,
    load_split,
    read_json,
    restore_checkpoint,
    trim_log,
    write_json_atomically,
)
from pspseg_utils.training.feeding import batch_stream
from pspseg_utils.training.hardware import (
    choose_precision,
    distribution_scope,
    dtype_policy,
    has_gpu,
)
from pspseg_utils.training.schedule import DecaySchedule, learning_rate_schedule


def default_config(*, gpu: bool | None = None, **overrides) -> TrainConfig:
    """The CPU recipe without a GPU (the TrainConfig defaults, for as many epochs as fit in 25
    minutes), a full-size recipe with one; `overrides` win."""
    gpu = has_gpu() if gpu is None else gpu
    return TrainConfig(**{**(recipes.GPU if gpu else recipes.CPU), **overrides})


@dataclasses.dataclass
class TrainResult:
    model: keras.Model
    history: dict
    run_dir: Path
    epochs_done: int
    stopped_early: str | None


def compile_model(
    model: keras.Model, config: TrainConfig, *, learning_rate: DecaySchedule | float
) -> keras.Model:
    """Compile with AdamW at `learning_rate` (see `learning_rate_schedule`), the configured loss,
    and Dice / IoU metrics."""
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate,
        weight_decay=config.weight_decay,
        use_ema=config.ema_momentum is not None,
        ema_momentum=config.ema_momentum or 0.99,
    )
    model.compile(
        optimizer=optimizer,
        loss=get_loss(config.loss, num_classes=model.num_classes),
        metrics=[DiceCoefficient(name="dice"), IoUCoefficient(name="iou")],
        jit_compile=config.jit_compile,
        run_eagerly=config.run_eagerly,
    )
    return model


def fit(
    model: keras.Model,
    train_arrays: tuple[np.ndarray, np.ndarray],
    val_arrays: tuple[np.ndarray, np.ndarray] | None,
    *,
    run_dir: str | Path,
    config: TrainConfig,
    resume: bool = True,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    val_batch_size: int | None = None,
    verbose: int | str = "auto",
) -> TrainResult:
    """Train a compiled-or-not model on in-memory arrays, checkpointing into `run_dir`.

    The training stream is one seeded, endless, augmented sequence of batches; resuming at epoch
    k skips its first k * steps_per_epoch batches, so an interrupted and resumed run sees the
    same batches as an uninterrupted one.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    images, masks = train_arrays
    steps = config.steps_per_epoch or max(1, math.ceil(len(images) / config.batch_size))
    resuming = resume and (run_dir / "last.keras").exists()
    plan_path = run_dir / "schedule.json"  # the epochs a run fitted to its time budget
    if not resuming:
        plan_path.unlink(missing_ok=True)
    epochs = read_json(plan_path)["epochs"] if plan_path.exists() else config.epochs
    learning_rate = learning_rate_schedule(config, steps * epochs)
    compile_model(model, config, learning_rate=learning_rate)

    epochs_done = 0
    if resuming:
        epochs_done = restore_checkpoint(model, run_dir / "last.keras") // steps
        print(f"Resuming {run_dir} after epoch {epochs_done} of {epochs}.")
    trim_log(run_dir / "log.csv", epochs_done)
    if epochs_done >= epochs:
        print(f"{run_dir} already finished its {epochs} epochs; nothing to do.")
        return TrainResult(model, {}, run_dir, epochs_done, None)

    keras.utils.set_random_seed(config.seed)

    def shuffled_batches(seed: int, *, repeat: bool, first_batch: int = 0):
        return batch_stream(
            images,
            masks,
            first_batch=first_batch,
            batch_size=config.batch_size,
            augment=config.augment,
            missing_sequence_rate=config.missing_sequence_rate,
            max_gamma=config.max_gamma,
            scanner_variation_rate=config.scanner_variation_rate,
            shuffle=True,
            repeat=repeat,
            seed=seed,
            drop_remainder=True,
        )

    train_stream = shuffled_batches(config.seed, repeat=True, first_batch=epochs_done * steps)
    val_stream = None
    if val_arrays is not None and len(val_arrays[0]):
        val_stream = batch_stream(*val_arrays, batch_size=val_batch_size or config.batch_size)

    # Validation sees the averaged weights, then statistics re-estimated for them: in this order.
    averaging: list[keras.callbacks.Callback] = []
    if config.ema_momentum is not None:
        averaging.append(keras.callbacks.SwapEMAWeights())
    if config.precise_bn_batches:

        def statistics_batches(epoch: int):
            batches = shuffled_batches(config.seed + 1 + epoch, repeat=False)
            return (batch for batch, _ in itertools.islice(batches, config.precise_bn_batches))

        averaging.append(PreciseBatchNorm(statistics_batches))
    monitor = "val_dice" if val_stream is not None else "dice"
    best_path = run_dir / "best.json"
    best = read_json(best_path).get(monitor) if resume and best_path.exists() else None
    # The log row first, then the checkpoint: a row whose checkpoint never landed is trimmed on
    # resume, while a checkpoint is never left without its row.
    callbacks: list[keras.callbacks.Callback] = [
        *averaging,
        keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
        RunCheckpoint(
            run_dir,
            monitor=monitor,
            best=-math.inf if best is None else best,
            averaged_best=config.ema_momentum is not None,
        ),
    ]
    budget = None
    if config.time_budget_minutes is not None:
        fitting = config.fit_epochs_to_budget and isinstance(learning_rate, DecaySchedule)
        if fitting and not plan_path.exists():
            budget = FitScheduleToBudget(
                config.time_budget_minutes,
                schedule=learning_rate,
                steps_per_epoch=steps,
                plan_path=plan_path,
            )
        else:
            budget = TimeBudget(config.time_budget_minutes)
        callbacks.append(budget)
    early = None
    if config.early_stopping_patience is not None:
        early = keras.callbacks.EarlyStopping(
            monitor=monitor, mode="max", patience=config.early_stopping_patience
        )
        callbacks.append(early)
    if config.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard")))
    callbacks.extend(extra_callbacks)

    history = model.fit(
        train_stream,
        validation_data=val_stream,
        epochs=epochs,
        initial_epoch=epochs_done,
        steps_per_epoch=steps,
        callbacks=callbacks,
        shuffle=False,  # the stream is already shuffled, seeded
        verbose=verbose,
    )
    finished = epochs_done + len(history.epoch)
    stopped = None
    if isinstance(budget, FitScheduleToBudget) and budget.planned_epochs is not None:
        epochs = budget.planned_epochs  # fitted during this call
    if budget is not None and budget.stopped and finished < epochs:
        stopped = f"time budget of {config.time_budget_minutes} min"
    elif early is not None and early.stopped_epoch:
        stopped = f"no val Dice gain in {config.early_stopping_patience} epochs"
    return TrainResult(model, history.history, run_dir, finished, stopped)


def train(
    data_dir: str | Path,
    run_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    split: dict[str, list[str]] | None = None,
) -> TrainResult:
    """Train a PSPNet on a dataset folder with a patient-level split, into `run_dir`.

    The split is `data.split_patients` with the config's fractions and seed, or `split`
    ({"train", "val", "test"} patient ids, e.g. a cross-validation fold) when given.

    On resume the run's own config.json and split.json are used (so the held-out patients never
    change). A `config` that differs from it in more than CHANGEABLE_ON_RESUME (`epochs` and
    `time_budget_minutes`, which may be raised to train longer, and how steps run), or data
    with other patients, is refused. A run that fitted its length to its time budget keeps that
    length (RUN_DIR/schedule.json; delete it to plan again). The run folder is locked while
    training (`runlock`): a second training into it is refused.

    Returns:
        TrainResult with the trained model (the last epoch's weights) and the Keras history.

    Raises:
        ValueError: a resume with other settings or other data, or a damaged checkpoint (each
            message names `--no-resume`).
        runlock.RunFolderBusy: another process is training into `run_dir`.
    """
    run_dir = Path(run_dir)
    given_split = split
    resuming = resume and (run_dir / "last.keras").exists() and (run_dir / "config.json").exists()
    if resuming:
        saved, _ = load_run_config(run_dir)
        if config is not None:
            check_resumable(run_dir, config)
        asked = config or saved
        config = dataclasses.replace(
            saved, **{name: getattr(asked, name) for name in CHANGEABLE_ON_RESUME}
        )
        split = load_split(run_dir)
        if given_split is not None and {k: sorted(v) for k, v in given_split.items()} != split:
            raise ValueError(
                f"{run_dir} was trained with another split; resume without one, or start "
                "afresh (`pspseg train --no-resume`, resume=False)"
            )
    config = config or default_config()
    channels = rules.channels_for(config.context_slices)
    precision = choose_precision(config.precision)
    print(f"Training {config.backbone} PSPNet at {config.image_size}px in {precision}.")
    keras.utils.set_random_seed(config.seed)  # the same initial weights for the same seed
    with dtype_policy(precision), distribution_scope():
        # Built before the data is read: a size the network cannot take, or ImageNet weights
        # that cannot be downloaded, fail in seconds and before anything is written.
        model = build_pspnet(
            (config.image_size, config.image_size, channels), **model_settings(config)
        )
        mask_labels = rules.mask_labels(config.num_classes)
        records = data.find_slices(data_dir, num_classes=mask_labels, progress=progress)
        if resuming:
            check_same_patients(run_dir, split, records, data_dir)
        elif given_split is not None:
            split = {name: sorted(given_split[name]) for name in ("train", "val", "test")}
            named = [patient for subset in split.values() for patient in subset]
            differing = sorted(set(named) ^ {record.patient_id for record in records})
            if differing or len(named) != len(set(named)):
                raise ValueError(
                    f"the split must name each patient of {data_dir} once; it differs on "
                    f"{differing[:5]} (or names one twice)"
                )
        else:
            split = data.split_patients(
                records,
                val_fraction=config.val_fraction,
                test_fraction=config.test_fraction,
                seed=config.seed,
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        # Held until training ends: a second training into this folder is refused, not mixed in.
        with runlock.hold_run_folder(run_dir):
            if not resuming:
                write_json_atomically(
                    run_dir / "config.json",
                    {
                        "config": dataclasses.asdict(config),
                        "data_dir": str(Path(data_dir).resolve()),
                    },
                )
                write_json_atomically(run_dir / "split.json", split)
            arrays = {
                subset: data.load_arrays(
                    data.select_patients(records, split[subset]),
                    image_size=config.image_size,
                    context_slices=config.context_slices,
                    num_classes=mask_labels,
                    progress=progress,
                )
                for subset in ("train", "val")
                if split[subset]
            }
            return fit(
                model,
                _oversample(*arrays["train"], config.tumour_oversampling, config.seed),
                arrays.get("val"),
                run_dir=run_dir,
                config=config,
                resume=resume,
                verbose="auto" if progress else 2,
            )


def _oversample(images, masks, factor: float, seed: int):
    """Append `factor` x (number of tumour slices) extra copies of tumour slices, seeded."""
    if factor <= 0:
        return images, masks
    tumour = np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1))
    extra = np.random.default_rng(seed).choice(tumour, int(len(tumour) * factor))
    return np.concatenate([images, images[extra]]), np.concatenate([masks, masks[extra]])
