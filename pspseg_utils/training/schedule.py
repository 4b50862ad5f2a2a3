"""The learning-rate schedule: poly or cosine decay over exactly the steps a run takes."""

from __future__ import annotations

import math

import keras

from pspseg_utils.config import (
    TrainConfig,
)


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


def learning_rate_schedule(config: TrainConfig, total_steps: int) -> DecaySchedule | float:
    if config.schedule == "constant":
        return config.learning_rate
    return DecaySchedule(config.learning_rate, total_steps, kind=config.schedule)
