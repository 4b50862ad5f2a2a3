# %% [markdown]
# # Lesson 3: training
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/pspseg/pspseg/blob/v0.2.0/notebooks/03_training.ipynb)
#
# **You will learn**
#
# - why class imbalance decides the loss
# - Dice and IoU, and what empty masks score
# - checkpoints and auto-resume, shown by interrupting
# - learning curves, and the article's API

# %% [markdown]
# ## Setup

# %%
# On Colab (or Kaggle) install the course package, once, leaving the runtime's packages as they
# are; locally `python3 dev.py course` installed it.
import importlib.metadata
import os
import subprocess
import sys

RELEASE = "0.2.0"  # the release of the course these lessons belong to
SOURCE = "pspseg @ git+https://github.com/pspseg/pspseg@v0.2.0"
try:
    INSTALLED = importlib.metadata.version("pspseg")
except importlib.metadata.PackageNotFoundError:
    INSTALLED = None
if INSTALLED == RELEASE:
    print(f"pspseg {RELEASE} is installed: nothing to do.")
elif "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
    print(f"Installing pspseg {RELEASE} and only what this runtime lacks (about a minute) ...")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", SOURCE], check=True)
elif INSTALLED is None:
    raise ModuleNotFoundError("pspseg is missing: run `python3 dev.py course` first")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's start-up log quiet
from pspseg_utils import course

course.setup_notebook()  # imports TensorFlow quietly, prints versions and the GPU

import matplotlib.pyplot as plt
import numpy as np

import pspseg_utils as ps
from pspseg_utils import data, visualize

# %% [markdown]
# ## Configuration
#
# One switch, `PROFILE`: `quick` runs in seconds (tests set `PSPSEG_QUICK=1`), `cpu` trains a
# small model in minutes, `gpu` uses real data at full size with mixed precision. Point `DATA_DIR`
# at the Kaggle data to use real scans.

# %%
PROFILE = course.resolve_profile("auto")  # "quick" | "cpu" | "gpu"; auto: PSPSEG_QUICK=1 -> quick
ROOT = course.project_root()
DATA_DIR = None  # a kaggle_3m folder; None: $PSPSEG_DATA_DIR, else Kaggle, else synthetic data
USE_DRIVE = False  # on Colab: True mounts Google Drive and keeps run folders there
RUN_DIR = course.runs_dir(use_drive=USE_DRIVE) / f"course-{PROFILE}"  # lesson 03's model
CONFIG = course.train_config(PROFILE)
SEED = 0

DATA_DIR, SOURCE = data.resolve_data_dir(
    DATA_DIR, synthetic_dir=ROOT / "data" / "synthetic", download=PROFILE != "quick"
)
CREDIT = course.data_credit(SOURCE)  # printed under every figure that shows a scan
print(f"Profile {PROFILE!r}: {CONFIG.backbone} at {CONFIG.image_size} px; data: {SOURCE}, in "
      f"{os.path.relpath(DATA_DIR, ROOT)}; runs in {os.path.relpath(RUN_DIR, ROOT)}")

# %% [markdown]
# ## Class imbalance and the loss
# Tumour covers a small share of the pixels (the next cell counts it). A network that predicts
# "no tumour" everywhere gets a low cross-entropy; the Dice loss, which only counts the tumour,
# does not fall for it.

# %%
records = data.find_slices(DATA_DIR, progress=False)
share = sum(r.tumour_pixels for r in records) / (len(records) * 256 * 256)
print(f"tumour pixels: {share:.2%} of all pixels")

# %% tags=["nbval-check-output"]
from pspseg_utils import losses

truth = np.zeros((1, 8, 8, 1), np.float32)
truth[0, 2:4, 2:4] = 1  # 4 tumour pixels of 64
all_background = np.full_like(truth, 0.05)
rough_guess = np.where(truth > 0, 0.7, 0.2).astype(np.float32)
for name, loss in [("BCE", "crossentropy"), ("Dice", "dice"), ("BCE + Dice", "bce_dice")]:
    fn = losses.get_loss(loss, num_classes=1)
    print(f"{name:>10}: all background {float(fn(truth, all_background)):.3f}, "
          f"rough guess {float(fn(truth, rough_guess)):.3f}")

# %% [markdown]
# We train with BCE + Dice: cross-entropy gives smooth gradients everywhere, Dice keeps the
# tumour in focus. Training pools the Dice over the batch (`"bce_batch_dice"`, as nnU-Net does
# for 2D networks): with one Dice per slice, a slice without tumour loses half its Dice to one
# confident stray pixel, and the network learns to hold back wherever it is unsure. On the real
# scans the pooled Dice scored higher on the validation patients, on average over three patient
# splits (`benchmarks/EXPERIMENTS.md`).
#
# ## Metrics
# Dice = 2|T and P| / (|T| + |P|), IoU = |T and P| / |T or P|. A slice with no tumour and no
# prediction scores 1 (a correct "nothing here").

# %% tags=["nbval-check-output"]
from pspseg_utils import metrics

truth = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
prediction = np.array([[1, 1, 1], [0, 0, 0], [0, 0, 0]])
# tp = 2, fp = 1, fn = 1: Dice = 4 / 6, IoU = 2 / 4
print(f"Dice {metrics.dice_score(truth, prediction):.3f}, "
      f"IoU {metrics.iou_score(truth, prediction):.3f}")
print("empty vs empty:", metrics.dice_score(np.zeros((3, 3)), np.zeros((3, 3))))

# %% [markdown]
# ## Training, interrupted and resumed
# `train` checkpoints every epoch into the run folder (atomically: a crash never leaves a broken
# file) with the optimizer state and the patient split. A tiny time budget stops the first call
# after one epoch, as a Colab disconnect would; calling `train` again resumes after the last
# finished epoch, with the same learning-rate plan.
#
# A time budget also sizes the run: once an epoch has been timed, `train` plans as many epochs
# as fit in the budget (at most `epochs`) and lets the learning rate decay to zero over exactly
# those, so a slow laptop and a fast one both finish their schedule in time. It plans again
# after each epoch from the median epoch time, so one slow epoch does not decide; after half-way
# a new plan may only end sooner, so the learning rate never climbs back up near the end.
#
# On Colab the `gpu` profile trains for at most 20 minutes, its budget (on a free T4, an estimated
# 35 of its 60 epochs fit: README, Run on Colab). A runtime that disconnects loses its disk: set
# `USE_DRIVE = True` in the Configuration cell to keep the run folder on Google Drive, then run
# this lesson again after a disconnect and `train` resumes where it stopped (skip the cell that
# starts from scratch).

# %%
import dataclasses
import shutil

from pspseg_utils import training

shutil.rmtree(RUN_DIR, ignore_errors=True)  # this lesson trains from scratch, every time
print("precision:", training.choose_precision(CONFIG.precision))
interrupted = dataclasses.replace(CONFIG, time_budget_minutes=0.01)  # stops after one epoch
first = training.train(DATA_DIR, RUN_DIR, interrupted, progress=False)
print(f"stopped after epoch {first.epochs_done}; "
      f"folder: {sorted(p.name for p in RUN_DIR.iterdir())}")

# %%
result = training.train(DATA_DIR, RUN_DIR, CONFIG, progress=False)
print(f"{result.epochs_done} epochs done" + (f", stopped by the {result.stopped_early}"
                                              if result.stopped_early else ""))

# %% [markdown]
# The `precision` line above says how this machine trained. Mixed precision computes in 16-bit
# floats and keeps the weights in float32: activations take half the memory, and the matrix
# products run faster where the hardware has 16-bit units. `choose_precision("auto")` picks it
# wherever they exist: on a GPU (bfloat16 on recent cards, float16 on older ones such as Colab's
# T4), and on a CPU with bfloat16 units (Intel's AMX, or AVX-512 BF16), where `mixed_bfloat16`
# trains too; anywhere else, float32. The README's Performance section compares CPUs with and
# without such units. Several GPUs are used together through `tf.distribute.MirroredStrategy`.
#
# ## Learning curves

# %%
visualize.plot_history(RUN_DIR / "log.csv", title=f"{CONFIG.backbone} PSPNet on {SOURCE} data")
plt.show()

# %% [markdown]
# ## The article's code, on Keras 3
# The blog article's `keras_segmentation` code runs with only its import line changed. It reads
# the `images/` + `masks/` PNG layout, which `data.prepare` writes from the Kaggle layout (once
# per data folder: the cell writes the PNGs again when `DATA_DIR` changes).
#
# The article's `vgg_pspnet` starts from ImageNet weights, which Keras downloads on first use.
# On a machine without internet access, such as the one that ran this copy of the lesson, the
# download fails: a warning says so, and the model trains from random weights instead. On Colab
# the download succeeds and no warning appears.

# %%
article_dir = ROOT / "runs" / f"article-{PROFILE}"
written_from = article_dir / "written_from.txt"  # the data folder its PNGs were written from
if not written_from.exists() or written_from.read_text() != os.path.abspath(DATA_DIR):
    shutil.rmtree(article_dir, ignore_errors=True)  # none yet, or another data folder's
    data.prepare(DATA_DIR, article_dir, progress=False)
    written_from.write_text(os.path.abspath(DATA_DIR))
shutil.rmtree(article_dir / "ckpts", ignore_errors=True)  # a fresh run each time, as above

from pspseg_utils import keras_segmentation as ks  # was: import keras_segmentation as ks

model = ks.models.pspnet.vgg_pspnet(n_classes=2, input_height=CONFIG.image_size,
                                    input_width=CONFIG.image_size)
model.train(train_images=str(article_dir / "images"), train_annotations=str(article_dir / "masks"),
            checkpoints_path=str(article_dir / "ckpts"), epochs=1, auto_resume_checkpoint=True,
            steps_per_epoch=2)
model = ks.predict.model_from_checkpoint_path(str(article_dir / "ckpts"))
print("restored:", type(model).__name__, "with n_classes =", model.n_classes)

# %% [markdown]
# ## Exercises
# Try each one in the empty cell, then run the solution below it (click to show its code). The
# solutions check themselves, so they also run when the course is tested.
#
# ### Exercise 1: cross-entropy by hand
# Binary cross-entropy is the mean over pixels of -(t log p + (1 - t) log(1 - p)). Compute it
# with NumPy for the two predictions of the loss cell above, `all_background` and `rough_guess`,
# on its 8 x 8 truth (rebuilt below), and compare with `losses.get_loss("crossentropy", 1)`.

# %%
truth_8x8 = np.zeros((1, 8, 8, 1), np.float32)
truth_8x8[0, 2:4, 2:4] = 1  # 4 tumour pixels of 64, as above
my_bce = {}  # your code here: {"all background": ..., "rough guess": ...}

# %% tags=["solution"]
bce = losses.get_loss("crossentropy", num_classes=1)
for name, p in (("all background", all_background), ("rough guess", rough_guess)):
    my_bce[name] = float(-np.mean(truth_8x8 * np.log(p) + (1 - truth_8x8) * np.log(1 - p)))
    keras_bce = float(bce(truth_8x8, p))
    print(f"{name:>14}: by hand {my_bce[name]:.4f}, Keras {keras_bce:.4f}")
    assert abs(my_bce[name] - keras_bce) < 1e-4

# %% [markdown]
# ### Exercise 2: one stray pixel, per slice or pooled?
# A batch of two slices: the first has a 4-pixel tumour, predicted exactly; the second has no
# tumour, and the prediction marks one pixel of it with P = 1. With smooth = 1 added to the top
# and the bottom of each Dice, predict the Dice loss computed per slice (then averaged) and
# pooled over the batch. Then run `losses.SoftDiceLoss(per_image=True)` and `(per_image=False)`.

# %%
batch_truth = np.concatenate([truth_8x8, np.zeros_like(truth_8x8)])
batch_prediction = batch_truth.copy()
batch_prediction[1, 0, 0] = 1.0  # the stray pixel
my_per_slice, my_pooled = None, None  # your predictions

# %% tags=["solution"]
per_slice = float(losses.SoftDiceLoss(per_image=True)(batch_truth, batch_prediction))
pooled = float(losses.SoftDiceLoss(per_image=False)(batch_truth, batch_prediction))
print(f"per slice: {per_slice:.3f} (yours: {my_per_slice}); pooled: {pooled:.3f} "
      f"(yours: {my_pooled})")
# per slice: slice 1 scores (8 + 1) / (8 + 1) = 1, slice 2 (0 + 1) / (0 + 1 + 1) = 0.5
assert abs(per_slice - (1 - (1 + 0.5) / 2)) < 1e-3
# pooled: (2 * 4 + 1) / (4 + 5 + 1) = 0.9
assert abs(pooled - (1 - 0.9)) < 1e-3

# %% [markdown]
# ### Exercise 3: which epoch did the run keep?
# `train` wrote one row per epoch to `RUN_DIR / "log.csv"` and kept the epoch with the best
# validation Dice as `best.keras`, naming it in `best.json`. Read both and check that they agree.
# Mind how each counts the epochs: compare with the "Epoch n/N" lines of the training cell.

# %%
best_epoch = None  # your code here

# %% tags=["solution"]
import json

import pandas as pd

log = pd.read_csv(RUN_DIR / "log.csv")
best = json.loads((RUN_DIR / "best.json").read_text())
best_epoch = best["epoch"]
kept = log.loc[log.epoch == best_epoch - 1, "val_dice"].item()  # log.csv counts from 0
print(f"best.json: epoch {best_epoch} (counting from 1, as Keras prints), val_dice "
      f"{best['val_dice']:.4f}; log.csv: highest val_dice {log.val_dice.max():.4f}, in its row "
      f"{best_epoch - 1}: {kept:.4f}")
assert np.isclose(kept, log.val_dice.max()) and np.isclose(kept, best["val_dice"])

# %% [markdown]
# ### Exercise 4: would you train longer? (open question)
# Look at the learning curves and at `log`. Is the validation Dice still rising at the end?
# What would you expect from twice the epochs, and what would you check before trusting it?

# %%
# Your thoughts, and any code to check them

# %% tags=["solution"]
last = log.tail(3)
print(f"validation Dice over the last {len(last)} epochs: "
      + ", ".join(f"{v:.3f}" for v in last.val_dice)
      + f"; training Dice at the end {log.dice.iloc[-1]:.3f}")
print("One answer: if the validation Dice has levelled off while the training Dice still rises, "
      "more epochs mostly fit the training patients. Longer runs help when both still rise; "
      "judge it on validation patients, and since the learning rate decays to zero over the "
      "planned epochs, train a new run with more epochs rather than resume this one.")

# %% [markdown]
# ## Check your understanding
# 1. Why does predicting "no tumour" everywhere fool cross-entropy but not the Dice loss?
# 2. Why does training pool the Dice over the batch rather than score each slice alone?
# 3. What does `train` save after every epoch, and what lets it resume after a disconnect?
# 4. How does a time budget decide the number of epochs and the learning-rate schedule?
# 5. Which precision did this machine train in, and what does mixed precision keep in float32?
