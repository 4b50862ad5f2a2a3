"""Training that survives a disconnect: atomic checkpoints, exact resume, a wall-clock budget.

A run folder holds everything needed to resume and to evaluate on the same held-out patients::

    RUN_DIR/config.json   the TrainConfig and the data folder
    RUN_DIR/split.json    patient ids of train / val / test
    RUN_DIR/last.keras    model + optimizer state after the last finished epoch (atomic)
    RUN_DIR/best.keras    the model with the best validation Dice so far (atomic)
    RUN_DIR/log.csv       one row per epoch

The epoch to resume from is read from the optimizer's step counter inside `last.keras`, so the
checkpoint and the position in training can never disagree, however the process dies.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import statistics
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import keras
import numpy as np

from pspseg_utils import data, recipes, rules, runlock
from pspseg_utils.config import (
    CHANGEABLE_ON_RESUME,
    FIELDS_BEFORE_THEY_EXISTED,
    TrainConfig,
    model_settings,
)
from pspseg_utils.losses import get_loss
from pspseg_utils.metrics import DiceCoefficient, IoUCoefficient
from pspseg_utils.models import build_pspnet

__all__ = [
    "TrainConfig",
    "TrainResult",
    "train",
    "fit",
    "load_run_config",
    "load_split",
    "choose_precision",
    "default_config",
]


def default_config(*, gpu: bool | None = None, **overrides) -> TrainConfig:
    """The CPU recipe without a GPU (the TrainConfig defaults, for as many epochs as fit in 25
    minutes), a full-size recipe with one; `overrides` win."""
    import tensorflow as tf

    gpu = bool(tf.config.list_physical_devices("GPU")) if gpu is None else gpu
    return TrainConfig(**{**(recipes.GPU if gpu else recipes.CPU), **overrides})


@dataclasses.dataclass
class TrainResult:
    model: keras.Model
    history: dict
    run_dir: Path
    epochs_done: int
    stopped_early: str | None


# --------------------------------------------------------------------------------------------
# Hardware: precision and distribution.
# --------------------------------------------------------------------------------------------


def _cpu_has_bfloat16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def choose_precision(requested: str = "auto") -> str:
    """Resolve "auto": bfloat16 on Ampere+ GPUs and BF16-capable CPUs, float16 on older GPUs
    (compute capability >= 7), else float32."""
    if requested != "auto":
        return requested
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
        if capability and capability >= (8, 0):
            return "mixed_bfloat16"
        return "mixed_float16" if capability and capability >= (7, 0) else "float32"
    return "mixed_bfloat16" if _cpu_has_bfloat16() else "float32"


@contextlib.contextmanager
def _dtype_policy(name: str):
    """Keras' policy is process-global; set it while building, then put the old one back."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _strategy():
    """MirroredStrategy when several GPUs are visible (Kaggle's 2 x T4), else the default."""
    import tensorflow as tf

    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


# --------------------------------------------------------------------------------------------
# Compiling, checkpointing, resuming.
# --------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="pspseg")
class DecaySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`peak * (1 - t) ** power` ("poly", the PSPNet paper's policy, power 0.9) or
    `peak * (1 + cos(pi * t)) / 2` ("cosine"), with t = min(step / total_steps, 1).

    Keras' PolynomialDecay and CosineDecay fix their length when the train step is traced;
    here `total_steps` is a variable, so that a run can fit its schedule to a time budget once it
    has timed an epoch (`set_total_steps`).
    """

    def __init__(self, peak: float, total_steps: int, *, kind: str = "poly", power: float = 0.9):
        if kind not in ("poly", "cosine"):
            raise ValueError(f"kind must be 'poly' or 'cosine', got {kind!r}")
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps!r}")
        self.peak, self.kind, self.power = peak, kind, power
        self.total_steps = keras.Variable(
            total_steps, dtype="float32", trainable=False, name="total_steps"
        )

    def set_total_steps(self, total_steps: int) -> None:
        self.total_steps.assign(float(total_steps))

    def __call__(self, step):
        t = keras.ops.minimum(keras.ops.cast(step, "float32") / self.total_steps, 1.0)
        if self.kind == "poly":
            return self.peak * (1.0 - t) ** self.power
        return self.peak * 0.5 * (1.0 + keras.ops.cos(math.pi * t))

    def get_config(self) -> dict:
        return {
            "peak": self.peak,
            "total_steps": int(keras.ops.convert_to_numpy(self.total_steps)),
            "kind": self.kind,
            "power": self.power,
        }


def _schedule(config: TrainConfig, total_steps: int) -> DecaySchedule | float:
    if config.schedule == "constant":
        return config.learning_rate
    return DecaySchedule(config.learning_rate, total_steps, kind=config.schedule)


def compile_model(
    model: keras.Model, config: TrainConfig, *, learning_rate: DecaySchedule | float
) -> keras.Model:
    """Compile with AdamW at `learning_rate` (see `_schedule`), the configured loss, and Dice /
    IoU metrics."""
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


def save_atomically(model: keras.Model, path: str | Path) -> None:
    """Write to a temporary file beside `path`, then rename: a reader sees the old file or the
    new one, never half of one (os.replace is atomic on POSIX and Windows)."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    with _removed_on_failure(temporary):
        model.save(temporary)
        os.replace(temporary, path)


def _write_json_atomically(path: Path, payload: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with _removed_on_failure(temporary):
        temporary.write_text(json.dumps(payload, indent=2, default=str))
        os.replace(temporary, path)


@contextlib.contextmanager
def _removed_on_failure(temporary: Path):
    """Delete a half-written temporary file if writing fails (a full disk), then re-raise."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict:
    """A run folder's JSON file, or a ValueError naming it when it is damaged."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is damaged ({error}); restore it from a copy, or start the run afresh "
            "(`pspseg train --no-resume`)"
        ) from error


def restore_checkpoint(model: keras.Model, path: str | Path) -> int:
    """Load weights and optimizer state from a `.keras` checkpoint into a compiled model.

    Returns:
        The optimizer's step count, from which the finished epochs follow.
    """
    try:
        damage = data.archive_damage(path)
        if damage:
            raise ValueError(damage)
        saved = keras.saving.load_model(path, compile=True, safe_mode=True)
    except (zipfile.BadZipFile, EOFError, KeyError, OSError, ValueError) as error:
        raise ValueError(
            f"{path} cannot be resumed from: it is damaged ({error}); start this run afresh "
            "(`pspseg train --no-resume`, resume=False), or train into a new folder"
        ) from error
    if [w.shape for w in saved.weights] != [w.shape for w in model.weights]:
        raise ValueError(
            f"{path} holds a different network ({saved.name}, {len(saved.weights)} weights) from "
            f"the one configured ({model.name}, {len(model.weights)} weights); train into a new "
            "run folder, or start this one afresh (`pspseg train --no-resume`, resume=False)"
        )
    model.set_weights(saved.get_weights())
    model.optimizer.build(model.trainable_variables)
    for target, source in zip(model.optimizer.variables, saved.optimizer.variables, strict=True):
        target.assign(source)
    return int(saved.optimizer.iterations.numpy())


class RunCheckpoint(keras.callbacks.Callback):
    """Save RUN_DIR/last.keras after every epoch and RUN_DIR/best.keras on a new best val Dice.

    Keras' ModelCheckpoint writes in place and BackupAndRestore keeps no optimizer state in a
    loadable model file; this callback does both atomically.

    With `averaged_best`, best.keras holds the optimizer's moving average of the weights (what
    SwapEMAWeights validated), while last.keras keeps the raw weights, to resume from.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        monitor: str = "val_dice",
        best: float = -math.inf,
        averaged_best: bool = False,
    ):
        super().__init__()
        self.run_dir, self.monitor, self.best = Path(run_dir), monitor, best
        self.averaged_best = averaged_best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        save_atomically(self.model, self.run_dir / "last.keras")
        score = logs.get(self.monitor, logs.get(self.monitor.removeprefix("val_")))
        if score is not None and float(score) > self.best:
            self.best = float(score)
            self._save_best()
            _write_json_atomically(
                self.run_dir / "best.json", {"epoch": epoch + 1, self.monitor: self.best}
            )

    def _save_best(self):
        path = self.run_dir / "best.keras"
        if not self.averaged_best:
            save_atomically(self.model, path)
            return
        variables = self.model.trainable_variables
        raw = [keras.ops.copy(variable.value) for variable in variables]
        self.model.optimizer.finalize_variable_values(variables)  # the averages, into the model
        save_atomically(self.model, path)
        for variable, value in zip(variables, raw, strict=True):
            variable.assign(value)


class TimeBudget(keras.callbacks.Callback):
    """Stop after the epoch during which the next epoch would overrun `minutes` of wall clock."""

    def __init__(self, minutes: float, *, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.seconds, self.clock = minutes * 60.0, clock
        self.stopped = False

    def on_train_begin(self, logs=None):
        self.start = self.epoch_start = self.clock()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        self.elapsed_seconds, self.epoch_seconds = now - self.start, now - self.epoch_start
        if self.elapsed_seconds + self.epoch_seconds > self.seconds:
            self.model.stop_training = True
            self.stopped = True


def epochs_that_fit(
    *, budget_seconds: float, elapsed_seconds: float, epoch_seconds: float, epochs_done: int
) -> int:
    """How many epochs a run can finish in its budget: those done, plus as many more as the time
    left holds at `epoch_seconds` each with 5% to spare (so that the schedule ends before the
    budget, not beyond it). At least `epochs_done`."""
    if epoch_seconds <= 0:
        raise ValueError(f"epoch_seconds must be > 0, got {epoch_seconds!r}")
    left = max(0.0, budget_seconds - elapsed_seconds)
    return epochs_done + math.floor(left / (1.05 * epoch_seconds))


class FitScheduleToBudget(TimeBudget):
    """A TimeBudget that also shortens the run, and its learning-rate schedule with it, to the
    epochs that fit in `minutes`, at most the planned ones. It plans after the second epoch of
    this process (the first includes tracing) and plans again after every later epoch, from the
    median epoch time so far: one slow or disturbed epoch does not set the plan. In the plan's
    second half a new plan may only end sooner: the learning rate never climbs again near the
    end, and epochs that turn slow still end the schedule before the budget stops the run. Each
    plan is saved as `plan_path` (JSON), so that a resumed run keeps it.

    Without this, a time budget cuts a slow machine's run before its learning rate has decayed,
    and a fast machine finishes the planned epochs with budget to spare.
    """

    def __init__(
        self,
        minutes: float,
        *,
        schedule: DecaySchedule,
        steps_per_epoch: int,
        plan_path: Path,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(minutes, clock=clock)
        self.schedule, self.steps_per_epoch = schedule, steps_per_epoch
        self.plan_path = Path(plan_path)
        self.planned_epochs: int | None = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.epoch_times: list[float] = []  # this process's epochs

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.epoch_times.append(self.epoch_seconds)
        timed = self.epoch_times[1:]  # the first epoch includes tracing
        if timed:
            first_half = self.planned_epochs is None or epoch + 1 <= self.planned_epochs // 2
            self._plan(
                epochs_done=epoch + 1,
                epoch_seconds=statistics.median(timed),
                may_grow=first_half,
            )
        if self.planned_epochs is not None and epoch + 1 >= self.planned_epochs:
            self.model.stop_training = True

    def _plan(self, *, epochs_done: int, epoch_seconds: float, may_grow: bool) -> None:
        fitting = epochs_that_fit(
            budget_seconds=self.seconds,
            elapsed_seconds=self.elapsed_seconds,
            epoch_seconds=epoch_seconds,
            epochs_done=epochs_done,
        )
        planned = min(self.params["epochs"], fitting)
        if planned == self.planned_epochs or (not may_grow and planned > self.planned_epochs):
            return
        again = " again" if self.planned_epochs is not None else ""
        self.planned_epochs = planned
        self.schedule.set_total_steps(planned * self.steps_per_epoch)
        _write_json_atomically(
            self.plan_path, {"epochs": planned, "budget_minutes": self.seconds / 60}
        )
        print(f"\nFitted the schedule to the time budget{again}: {planned} epochs.")


def _batch_norm_layers(layer: keras.layers.Layer) -> list[keras.layers.BatchNormalization]:
    if isinstance(layer, keras.layers.BatchNormalization):
        return [layer]
    return [found for inner in getattr(layer, "layers", ()) for found in _batch_norm_layers(inner)]


class PreciseBatchNorm(keras.callbacks.Callback):
    """Before each validation, set every BatchNormalization's moving statistics to the average of
    its batch statistics over `batches` training batches, under the weights being validated.

    "Precise BN" (Wu & Johnson 2021): moving averages with momentum 0.9 remember ~10 batches of
    weights that kept moving; Keras has no such re-estimation. `batches_for_epoch(epoch)` gives
    the image batches, the same ones for an epoch whether or not the run was resumed.
    """

    def __init__(self, batches_for_epoch: Callable[[int], Iterable]):
        super().__init__()
        self.batches_for_epoch = batches_for_epoch
        self.epoch = 0
        self.forward = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_test_begin(self, logs=None):
        import tensorflow as tf

        layers = _batch_norm_layers(self.model)
        momenta = [layer.momentum for layer in layers]
        for layer in layers:
            layer.momentum = 0.0  # a training-mode call then leaves its batch's statistics
        if self.forward is None:  # compiled once, with momentum 0: 3x faster than eager calls
            self.forward = tf.function(lambda images: self.model(images, training=True))
        totals = [np.zeros((2, *layer.moving_mean.shape)) for layer in layers]
        count = 0
        for images in self.batches_for_epoch(self.epoch):
            self.forward(images)
            for total, layer in zip(totals, layers, strict=True):
                total += [keras.ops.convert_to_numpy(layer.moving_mean),
                          keras.ops.convert_to_numpy(layer.moving_variance)]  # fmt: skip
            count += 1
        for total, layer, momentum in zip(totals, layers, momenta, strict=True):
            layer.momentum = momentum
            if count:
                layer.moving_mean.assign(total[0] / count)
                layer.moving_variance.assign(total[1] / count)


def _trim_log(path: Path, epochs_done: int) -> None:
    """Drop log rows of epochs that were running when the process died (not in last.keras)."""
    if not path.exists():
        return
    with path.open() as handle:
        rows = list(csv.reader(handle))
    header = rows[:1]
    kept = header + [
        row
        for row in rows[1:]
        if header and len(row) == len(header[0]) and row[0].isdigit() and int(row[0]) < epochs_done
    ]  # a row cut short by a kill is dropped too
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(kept)


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
    learning_rate = _schedule(config, steps * epochs)
    compile_model(model, config, learning_rate=learning_rate)

    epochs_done = 0
    if resuming:
        epochs_done = restore_checkpoint(model, run_dir / "last.keras") // steps
        print(f"Resuming {run_dir} after epoch {epochs_done} of {epochs}.")
    _trim_log(run_dir / "log.csv", epochs_done)
    if epochs_done >= epochs:
        print(f"{run_dir} already finished its {epochs} epochs; nothing to do.")
        return TrainResult(model, {}, run_dir, epochs_done, None)

    keras.utils.set_random_seed(config.seed)

    def shuffled_batches(seed: int, *, repeat: bool):
        return data.make_dataset(
            images,
            masks,
            batch_size=config.batch_size,
            augment=config.augment,
            missing_sequence_rate=config.missing_sequence_rate,
            max_gamma=config.max_gamma,
            shuffle=True,
            repeat=repeat,
            seed=seed,
            drop_remainder=True,
        )

    train_stream = shuffled_batches(config.seed, repeat=True).skip(epochs_done * steps)
    val_stream = None
    if val_arrays is not None and len(val_arrays[0]):
        val_stream = data.make_dataset(*val_arrays, batch_size=val_batch_size or config.batch_size)

    # Validation sees the averaged weights, then statistics re-estimated for them: in this order.
    averaging: list[keras.callbacks.Callback] = []
    if config.ema_momentum is not None:
        averaging.append(keras.callbacks.SwapEMAWeights())
    if config.precise_bn_batches:

        def statistics_batches(epoch: int):
            batches = shuffled_batches(config.seed + 1 + epoch, repeat=False)
            return (batch for batch, _ in batches.take(config.precise_bn_batches))

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


# --------------------------------------------------------------------------------------------
# The two front doors: a data folder, and the article's model.train.
# --------------------------------------------------------------------------------------------


def load_run_config(run_dir: str | Path) -> tuple[TrainConfig, str]:
    """(TrainConfig, data folder) recorded in RUN_DIR/config.json."""
    saved = read_json(Path(run_dir) / "config.json")
    return TrainConfig(**{**FIELDS_BEFORE_THEY_EXISTED, **saved["config"]}), saved["data_dir"]


def load_split(run_dir: str | Path) -> dict[str, list[str]]:
    """Patient ids of train / val / test recorded in RUN_DIR/split.json."""
    return read_json(Path(run_dir) / "split.json")


def _check_resumable(run_dir: Path, config: TrainConfig) -> None:
    """Raise ValueError, naming each setting, if `config` differs from the run's config.json in
    anything but CHANGEABLE_ON_RESUME (fields that config.json predates are not compared), and
    say so when schedule.json holds the run at another length than `config.epochs` asks."""
    written = read_json(run_dir / "config.json")["config"]
    asked = dataclasses.asdict(config)
    differing = [
        f"{name} {written[name]!r} (asked: {asked[name]!r})"
        for name in sorted(written)
        if name in asked and name not in CHANGEABLE_ON_RESUME and asked[name] != written[name]
    ]
    if differing:
        raise ValueError(
            f"{run_dir} was trained with other settings: {', '.join(differing)}. Resume with "
            "the same settings, or start afresh (`pspseg train --no-resume`, resume=False) or "
            "in another folder"
        )
    plan = run_dir / "schedule.json"
    if plan.exists() and config.epochs != written.get("epochs", config.epochs):
        print(f"Note: {plan} holds this run at {read_json(plan)['epochs']} epochs, fitted to "
              f"its time budget; epochs={config.epochs} does not change that (delete "
              "schedule.json to plan again).")  # fmt: skip


def _check_same_patients(run_dir: Path, split: dict, records, data_dir) -> None:
    """Raise ValueError if `records` (from `data_dir`) are not the patients of the run's split:
    resuming on other data would silently train on it."""
    recorded = {patient for subset in split.values() for patient in subset}
    found = {record.patient_id for record in records}
    if recorded != found:
        missing, new = sorted(recorded - found), sorted(found - recorded)
        raise ValueError(
            f"{data_dir} is not the data {run_dir} was trained on: {len(missing)} of its "
            f"patients are missing (e.g. {missing[:3]}) and {len(new)} are new (e.g. {new[:3]}). "
            "Resume with the run's own data, or start afresh (`pspseg train --no-resume`, "
            "resume=False) or in another folder"
        )


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
            _check_resumable(run_dir, config)
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
    with _dtype_policy(precision), _strategy().scope():
        # Built before the data is read: a size the network cannot take, or ImageNet weights
        # that cannot be downloaded, fail in seconds and before anything is written.
        model = build_pspnet(
            (config.image_size, config.image_size, channels), **model_settings(config)
        )
        mask_labels = rules.mask_labels(config.num_classes)
        records = data.find_slices(data_dir, num_classes=mask_labels, progress=progress)
        if resuming:
            _check_same_patients(run_dir, split, records, data_dir)
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
                _write_json_atomically(
                    run_dir / "config.json",
                    {
                        "config": dataclasses.asdict(config),
                        "data_dir": str(Path(data_dir).resolve()),
                    },
                )
                _write_json_atomically(run_dir / "split.json", split)
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
