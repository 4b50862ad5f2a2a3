"""Training that survives a disconnect: atomic checkpoints, exact resume, a wall-clock budget.

A run folder holds everything needed to resume and to evaluate on the same held-out patients::

    RUN_DIR/config.json   the TrainConfig and the data folder
    RUN_DIR/split.json    patient ids of train / val / test
    RUN_DIR/last.keras    model + optimizer state after the last finished epoch (atomic)
    RUN_DIR/best.keras    the model with the best validation Dice so far (atomic)
    RUN_DIR/log.csv       one row per epoch

The epoch to resume from is read from the optimizer's step counter inside `last.keras`, so the
checkpoint and the position in training can never disagree, however the process dies.

One module per job: `hardware` (precision, distribution), `schedule` (learning-rate decay),
`checkpoints` (the run folder's files, resume checks), `callbacks` (checkpointing, the time
budget, precise BatchNorm), `run` (compile, `fit`, `train`). `TrainConfig` lives in
`pspseg_utils.config`.
"""

from pspseg_utils.config import TrainConfig
from pspseg_utils.training.callbacks import (
    FitScheduleToBudget,
    PreciseBatchNorm,
    RunCheckpoint,
    TimeBudget,
    epochs_that_fit,
)
from pspseg_utils.training.checkpoints import (
    load_run_config,
    load_split,
    read_json,
    restore_checkpoint,
    save_atomically,
)
from pspseg_utils.training.hardware import choose_precision
from pspseg_utils.training.run import TrainResult, compile_model, default_config, fit, train
from pspseg_utils.training.schedule import DecaySchedule, learning_rate_schedule

__all__ = [
    "DecaySchedule",
    "FitScheduleToBudget",
    "PreciseBatchNorm",
    "RunCheckpoint",
    "TimeBudget",
    "TrainConfig",
    "TrainResult",
    "choose_precision",
    "compile_model",
    "default_config",
    "epochs_that_fit",
    "fit",
    "learning_rate_schedule",
    "load_run_config",
    "load_split",
    "read_json",
    "restore_checkpoint",
    "save_atomically",
    "train",
]
