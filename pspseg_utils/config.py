"""What defines a training run, declared once: `TrainConfig`.

Each field is one declaration: its default (the CPU recipe's; `recipes` holds the presets), a
comment on why, and in its metadata what the `pspseg train` flag says (`cli`), whether a resumed
run may change it (`on_resume`), and what a run folder written before the field existed trained
with (`before`). The command line, resume checks and old run folders read these, so a new
hyperparameter needs nothing else. A light module: no TensorFlow import.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pspseg_utils import data, rules

__all__ = [
    "CHANGEABLE_ON_RESUME",
    "FIELDS_BEFORE_THEY_EXISTED",
    "PRECISIONS",
    "SCHEDULES",
    "TrainConfig",
    "cli_options",
    "from_cli",
    "model_settings",
]

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
SCHEDULES = ("poly", "cosine", "constant")
_NOT_GIVEN = object()


def setting(
    default,
    *,
    cli: str | None = None,
    flag: str | None = None,
    choices: tuple | None = None,
    metavar: str | None = None,
    on_resume: bool = False,
    before: Any = _NOT_GIVEN,
    model: bool = False,
):
    """A TrainConfig field: `cli` is its `pspseg train` help (None: no flag), `flag` the flag
    (default --field-name), `on_resume` whether a resumed run may change it, `before` the value
    run folders that predate the field trained with, `model` whether it is an argument of
    `models.PSPNet` of the same name (passed on by `model_settings`)."""
    metadata = {"on_resume": on_resume, "model": model}
    if cli is not None:
        metadata["cli"] = {"help": cli, "flag": flag, "choices": choices, "metavar": metavar}
    if before is not _NOT_GIVEN:
        metadata["before"] = before
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run; saved as RUN_DIR/config.json.

    `precision` "auto" picks mixed bfloat16 or float16 on a GPU that supports it and on CPUs with
    bfloat16 units (AMX / AVX512-BF16), else float32.
    """

    # The CPU recipe: MobileNetV2 at half width, 2x faster than full width.
    backbone: str = setting(
        "mobilenetv2_050",
        cli="vgg16 (the article's), resnet50, resnet101 (the paper's), mobilenetv2 (fast); "
        "_050 / _035: MobileNetV2 at width 0.5 / 0.35, faster still",
        choices=rules.BACKBONE_NAMES,
        model=True,
    )
    image_size: int = setting(128, cli="train at N x N (a multiple of 8)", metavar="N")
    # Neighbouring slices on each side given as further channels (data.load_arrays), 0: none.
    context_slices: int = setting(
        0,
        cli="also give the network the N slices on each side of each slice, as 6N more channels "
        "(2.5D); prediction then finds them by file name, <patient>_<n±1>.tif",
        metavar="N",
        before=0,
    )
    output_stride: int = setting(
        8, cli="the backbone's output stride: 8 (the paper's), 16 or 32", model=True
    )
    # The pyramid's bin sizes (the paper's); () runs the head on the backbone's features alone.
    bins: tuple[int, ...] = setting((1, 2, 3, 6), before=(1, 2, 3, 6), model=True)
    head_channels: int = setting(
        128, cli="channels of the segmentation head", metavar="N", model=True
    )
    dropout_rate: float = setting(0.1, cli="dropout before the classifier", metavar="P", model=True)
    # The auxiliary head's share of the loss; 0 drops the head.
    aux_loss_weight: float = setting(
        0.4,
        cli="weight of the auxiliary head's loss (0.4, as in the paper; 0 drops the head)",
        metavar="W",
        before=0.0,
        model=True,
    )
    # The stride-4 decoder, its skip reduced to this many channels (0: none). At stride 8 a
    # 128 px slice is a 16x16 grid, through which even the true masks score a per-patient Dice
    # of 0.81 (benchmarks/resolution_ceiling.py); with it the recipe scored higher on the
    # validation patients of three splits (README, Results).
    skip_channels: int = setting(
        32,
        cli="refine the mask at stride 4 with a decoder that takes this many channels of the "
        "backbone's stride-4 features (32; 0: the paper's PSPNet, no decoder)",
        metavar="N",
        before=0,
        model=True,
    )
    # Which pixels standardise each slice (models.layers.SliceStandardization).
    standardize: str = setting(
        "slice",
        cli="standardise each slice by the mean and spread of all its pixels (slice) or of those "
        "brighter than its mean, the head (foreground)",
        choices=("slice", "foreground"),
        before="slice",
        model=True,
    )
    num_classes: int = setting(1, model=True)
    backbone_weights: str | None = setting(
        None,
        cli="start the backbone from ImageNet weights (the default with a GPU; downloaded once) "
        "or from random ones (none: the default without a GPU, and needed with "
        "--context-slices, or offline unless the weights are cached)",
        flag="--weights",
        choices=("imagenet", "none"),
        model=True,
    )
    # The CPU recipe stops earlier, when its 25 minutes are up.
    epochs: int = setting(
        100, cli="epochs to train (at most, with --time-budget)", metavar="N", on_resume=True
    )
    batch_size: int = setting(16, cli="images per training step", metavar="N")
    steps_per_epoch: int | None = setting(
        None, cli="steps per epoch (default: one pass over the data)", metavar="N"
    )
    learning_rate: float = setting(2e-3, cli="peak learning rate", flag="--lr", metavar="LR")
    schedule: str = setting(
        "poly", cli="learning-rate decay: poly (power 0.9), cosine, or constant", choices=SCHEDULES
    )
    weight_decay: float = setting(1e-4, cli="AdamW's weight decay", metavar="W")
    # Validate and keep best.keras with averaged weights.
    ema_momentum: float | None = setting(None, before=None)
    # Re-estimate BatchNorm statistics on this many batches.
    precise_bn_batches: int = setting(0, before=0)
    # Dice pooled over the batch (nnU-Net's choice for 2D networks): measured better than per
    # image on the validation patients, on average over three splits (benchmarks/EXPERIMENTS.md).
    loss: str = "bce_batch_dice"
    augment: bool = True
    # FLAIR in place of another sequence in this share of training slices: the dataset does so
    # for its 15 of 110 patients with a missing sequence (see data.augment_pair).
    missing_sequence_rate: float = setting(
        0.15,
        cli="share of training slices given FLAIR in place of another sequence, as the dataset "
        "stores a missing one",
        metavar="P",
        before=0.0,
    )
    # Each sequence's contrast bent by a gamma in [1 / max_gamma, max_gamma] (data.augment_pair):
    # 2 rather than 1.25 scored higher by 5-fold cross-validation on the 40 patients, above all on
    # the worst patients and the smaller institutions (benchmarks/EXPERIMENTS.md).
    max_gamma: float = setting(
        2.0,
        cli="bend each sequence's contrast by a gamma up to G or 1/G (2; 1: none)",
        metavar="G",
        before=1.25,
    )
    # Another scanner's look in this share of training slices (data.vary_scanner: a smooth bias
    # field per sequence, blur, noise): the recipe misses most on patients from other scanners.
    # Off: 0.5 did not clearly win by 5-fold cross-validation (benchmarks/EXPERIMENTS.md).
    scanner_variation_rate: float = setting(
        0.0,
        cli="share of training slices given another scanner's look: a smooth bias field per "
        "sequence, blur and noise",
        metavar="P",
    )
    tumour_oversampling: float = setting(
        0.5, cli="extra copies of the tumour slices, as a share of them", metavar="F"
    )
    val_fraction: float = setting(0.15, cli="share of patients that pick the best epoch")
    test_fraction: float = setting(
        0.15,
        cli="share of patients held out for `pspseg evaluate --split test` (the recipes: 0)",
    )
    seed: int = setting(0, cli="seeds the patient split, the weights and the augmentation")
    precision: str = setting(
        "auto",
        cli="auto: mixed_bfloat16 on Ampere or newer GPUs and on CPUs with bfloat16 units, "
        "mixed_float16 on older GPUs (a T4), float32 elsewhere",
        choices=PRECISIONS,
    )
    jit_compile: bool = setting(
        False,
        cli="compile the training step with XLA (faster on GPUs, slower on CPUs)",
        flag="--xla",
        on_resume=True,
    )
    run_eagerly: bool = setting(False, on_resume=True)
    time_budget_minutes: float | None = setting(
        None,
        cli="train for at most MIN minutes (25 without a GPU, 20 with one): after timing an "
        "epoch, the run shortens itself (and its learning-rate decay) to the epochs that fit, "
        "and stops cleanly after an epoch",
        flag="--time-budget",
        metavar="MIN",
        on_resume=True,
    )
    # `epochs` is then an upper bound; see training.FitScheduleToBudget.
    fit_epochs_to_budget: bool = setting(True, before=False)
    early_stopping_patience: int | None = None
    tensorboard: bool = setting(False, on_resume=True)

    def __post_init__(self):
        if self.backbone not in rules.BACKBONE_NAMES:
            raise ValueError(
                f"backbone must be one of {rules.BACKBONE_NAMES}, got {self.backbone!r}"
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("epochs", "batch_size", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("skip_channels", "aux_loss_weight", "precise_bn_batches"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.ema_momentum is not None and not 0 < self.ema_momentum < 1:
            raise ValueError(f"ema_momentum must be None or in (0, 1), got {self.ema_momentum!r}")
        data.check_augmentation(
            missing_sequence_rate=self.missing_sequence_rate,
            max_gamma=self.max_gamma,
            scanner_variation_rate=self.scanner_variation_rate,
        )
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        data.context_offsets(self.context_slices)  # raises ValueError unless an int >= 0


_FIELDS = dataclasses.fields(TrainConfig)
# What a run folder written before a field existed trained with (not today's default), so that
# it resumes the same network and optimizer.
FIELDS_BEFORE_THEY_EXISTED = {
    f.name: f.metadata["before"] for f in _FIELDS if "before" in f.metadata
}
# Settings a resumed run may change: how long it trains, and how its steps run.
CHANGEABLE_ON_RESUME = {f.name for f in _FIELDS if f.metadata.get("on_resume")}
MODEL_SETTINGS = tuple(f.name for f in _FIELDS if f.metadata.get("model"))


def model_settings(config: TrainConfig) -> dict[str, Any]:
    """The settings that are `models.PSPNet` arguments, by name: what `training.train` builds."""
    return {name: getattr(config, name) for name in MODEL_SETTINGS}


def cli_options() -> list[tuple[str, str, dict]]:
    """(flag, field name, argparse keywords) for every field with a `cli` help, in field order.

    The type comes from the field's annotation; a bool becomes a switch that sets it True; every
    default is None, so that an unset flag keeps the recipe's value.
    """
    options = []
    for field in _FIELDS:
        if "cli" not in field.metadata:
            continue
        spec = field.metadata["cli"]
        flag = spec["flag"] or "--" + field.name.replace("_", "-")
        keywords: dict[str, Any] = {"dest": field.name, "default": None, "help": spec["help"]}
        if "bool" in str(field.type):
            keywords["action"] = "store_true"
        else:
            kind = next((t for t in (int, float) if t.__name__ in str(field.type)), str)
            keywords["type"] = kind
            for key in ("choices", "metavar"):
                if spec[key] is not None:
                    keywords[key] = list(spec[key]) if key == "choices" else spec[key]
        options.append((flag, field.name, keywords))
    return options


def from_cli(values: dict[str, Any]) -> dict[str, Any]:
    """TrainConfig overrides from the parsed flags: the ones given, with "none" as None."""
    return {name: None if value == "none" else value
            for name, value in values.items() if value is not None}  # fmt: skip
