"""The callbacks of a run: checkpoints every epoch, the time budget that sizes the run, and
precise BatchNorm statistics."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import keras
import numpy as np

from pspseg_utils.training.checkpoints import save_atomically, write_json_atomically
from pspseg_utils.training.schedule import DecaySchedule


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
            write_json_atomically(
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


def set_schedule_length(model: keras.Model, schedule: DecaySchedule, total_steps: int) -> None:
    """Make `schedule` end after `total_steps` steps, in the middle of `model.fit` too.

    TensorFlow's traced step and PyTorch's eager one read the schedule's length variable at
    each step; JAX's compiled step holds it as a constant, so there the step is compiled again
    (one compilation, as at the start of `fit`)."""
    schedule.set_total_steps(total_steps)
    if keras.backend.backend() == "jax" and getattr(model, "train_function", None) is not None:
        model.make_train_function(force=True)


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
        set_schedule_length(self.model, self.schedule, planned * self.steps_per_epoch)
        write_json_atomically(
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
        layers = _batch_norm_layers(self.model)
        momenta = [layer.momentum for layer in layers]
        for layer in layers:
            layer.momentum = 0.0  # a training-mode call then leaves its batch's statistics
        if self.forward is None:
            self.forward = lambda images: self.model(images, training=True)
            if keras.backend.backend() == "tensorflow":  # traced once: 3x faster than eager
                import tensorflow as tf

                self.forward = tf.function(self.forward)
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
