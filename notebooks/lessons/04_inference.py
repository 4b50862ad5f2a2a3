# %% [markdown]
# # Lesson 4: inference
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/pspseg/pspseg/blob/v0.2.0/notebooks/04_inference.ipynb)
#
# **You will learn**
#
# - loading a checkpoint
# - predicting a PNG with the article's `predict`
# - the effect of the threshold
# - time per image, export and reload

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
# ## Loading a checkpoint
# We use the model lesson 3 saved. Run alone, this lesson first trains a small one (it says what,
# and for how long): the `gpu` profile's model is lesson 3's to train.

# %%
from pspseg_utils import inference, training

model, MODEL_DIR = course.ensure_model(RUN_DIR, DATA_DIR, PROFILE)
records = data.find_slices(DATA_DIR, progress=False)
test_records = data.select_patients(records, training.load_split(MODEL_DIR)["test"])
print(f"{len(test_records)} slices of patients the model never saw")

# %% [markdown]
# ## One PNG, the article's way
# `predict(model=..., inp=...)` returns a label mask at the image's own resolution.

# %%
import cv2

from pspseg_utils import keras_segmentation as ks

example = max(test_records, key=lambda r: r.tumour_pixels)
png = MODEL_DIR / "example.png"
cv2.imwrite(str(png), data.read_image(example.image_path)[..., ::-1])  # OpenCV writes BGR
pred_mask = ks.predict.predict(model=model, inp=str(png))
print(pred_mask.shape, pred_mask.dtype, "labels", np.unique(pred_mask))
visualize.show_article_figure(data.read_image(png), pred_mask,
                              truth=data.read_mask(example.mask_path),
                              title=f"{example.patient_id}, slice {example.slice_index}",
                              credit=CREDIT)
plt.show()

# %% [markdown]
# ## A folder at once
# `predict_dir` writes article-style masks (0/1 PNG) and overlays for every image.

# %%
patient_dir = example.image_path.parent
written = inference.predict_dir(model, patient_dir, MODEL_DIR / "predictions", progress=False)
print(f"{len(written)} masks in {written[0].parent.relative_to(ROOT)}, overlays beside them")

# %% [markdown]
# ## The threshold
# The network outputs a probability per pixel; the mask is where it crosses a cut-off. A lower
# cut-off finds more tumour and more false alarms; a higher one, fewer of both. `predict` cuts at
# 0.5. Here is the raw prediction (no clean-up) of the slice above at three cut-offs, filled
# orange on the FLAIR slice with the truth outlined in blue, each panel titled with its own Dice
# on this slice.

# %%
from pspseg_utils import metrics

image, truth = data.read_image(example.image_path), data.read_mask(example.mask_path)
_, probabilities = inference.predict(model, image, return_probabilities=True)
figure, axes = plt.subplots(1, 5, figsize=(14, 3.5))
axes[0].imshow(probabilities[..., 0], cmap="magma", vmin=0, vmax=1)
axes[0].set_title("P(tumour)")
axes[1].imshow((truth > 0) * 255, cmap="gray", vmin=0, vmax=255)
axes[1].set_title("true mask")
for axis, threshold in zip(axes[2:], (0.3, 0.5, 0.7), strict=True):
    mask = (probabilities[..., 0] >= threshold).astype(np.uint8)
    axis.imshow(inference.overlay(image, mask, alpha=visualize.FILL_ALPHA, truth=truth,
                                  thickness=visualize.OUTLINE_WIDTH))
    axis.set_title(f"cut at {threshold}: Dice {metrics.dice_score(truth, mask):.2f}")
for axis in axes:
    axis.set_axis_off()
figure.suptitle("Raw prediction on one slice at three cut-offs")
visualize.add_legend(figure, credit=CREDIT)
plt.show()

# %% [markdown]
# On this slice P(tumour) is near 0 or near 1 almost everywhere (left), so the three cut-offs draw
# nearly the same outline and the Dice barely moves. One slice of one patient decides nothing
# about a cut-off. `pspseg evaluate` and lesson 5 cut at 0.3 (`evaluation.CLEAN_UP_THRESHOLD`),
# but that is the cut-off of the *cleaned-up* prediction: averaged with the predictions of the
# mirrored slice and of the slice enlarged 1.5 times, then only the largest region of each
# patient's volume kept, which drops the false alarms that a lower cut-off adds away from the
# tumour. It scored the best mean Dice of the
# validation patients among eleven cut-offs from 0.2 to 0.7 on the real scans, no test patient
# taking part (README, Results). The raw prediction above has no such step to drop them.

# %% [markdown]
# ## Inside the trained network: the pyramid's pooled maps
# Lesson 2 drew what an untrained pyramid hands the head. Here is the same figure from the trained
# model, on the slice above: for each grid (1x1 to 6x6 cells) the channel that responds most to
# this slice, with its scale. The coarse grids summarise the whole slice; the 6x6 grid can tell
# roughly where on it something responds.

# %%
visualize.show_pooled_maps(model, image, credit=CREDIT)
plt.show()

# %% [markdown]
# ## Time per image

# %%
import time

inference.predict(model, image)  # warm-up
start = time.perf_counter()
for _ in range(5):
    inference.predict(model, image)
print(f"{(time.perf_counter() - start) / 5 * 1000:.0f} ms per slice (batch 1, this machine)")

# %% [markdown]
# ## Export and reload
# A `.keras` file for Keras users and a TensorFlow SavedModel for serving.

# %%
from pspseg_utils import export

sizes = export.export(MODEL_DIR, MODEL_DIR / "export")
print({name: f"{size / 1e6:.1f} MB" for name, size in sizes.items()})
reloaded = inference.load_model(MODEL_DIR / "export" / "model.keras")
same = np.array_equal(inference.predict(reloaded, image), inference.predict(model, image))
print("reloaded model predicts the same mask:", same)

# %% [markdown]
# ## Exercises
# Try each one in the empty cell, then run the solution below it (click to show its code). The
# solutions check themselves, so they also run when the course is tested.
#
# ### Exercise 1: predict the shapes
# The model works at `CONFIG.image_size` pixels; `image` is the slice read above. Predict the
# shape and dtype of what `inference.predict` returns for a batch of two, `np.stack([image,
# image])`, and of the probabilities it returns with `return_probabilities=True`. Then run.

# %%
my_guess = None  # e.g. {"masks": (2, 64, 64, 3), "probabilities": ...}

# %% tags=["solution"]
batch = np.stack([image, image])
batch_masks, batch_probabilities = inference.predict(model, batch, return_probabilities=True)
print("image", image.shape, "| masks", batch_masks.shape, batch_masks.dtype,
      "| probabilities", batch_probabilities.shape, batch_probabilities.dtype)
print("your guess:", my_guess)
assert batch_masks.shape == batch.shape[:3]  # the image's own size, not the model's
assert batch_probabilities.shape == (*batch.shape[:3], 1)  # one channel: P(tumour)

# %% [markdown]
# ### Exercise 2: mirror and average by hand
# `predict(..., tta=True)` averages the prediction of the slice with that of its left-right
# mirror image, mirrored back. Do it yourself with `inference.predict_probabilities(model,
# [image, image[:, ::-1]])` and compare with the probabilities `tta=True` returns.

# %%
averaged = None  # your code here: (H, W, 1) probabilities

# %% tags=["solution"]
plain, mirrored = inference.predict_probabilities(model, [image, image[:, ::-1]])
averaged = (plain + mirrored[:, ::-1]) / 2  # mirror the mirrored prediction back first
_, library = inference.predict(model, image, tta=True, return_probabilities=True)
difference = np.abs(averaged - library).max()
print(f"largest difference from tta=True: {difference:.1e}")
assert difference < 1e-4

# %% [markdown]
# ### Exercise 3: pick the cut-off on validation patients
# Choose the cut-off among 0.2, 0.3, ..., 0.7 that gives the best Dice on the **validation**
# patients (all their pixels together), then measure the test patients at that cut-off, once.
# Why not pick it on the test patients?

# %%
val_records = data.select_patients(records, training.load_split(MODEL_DIR)["val"])
thresholds = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
best_threshold = None  # your code here


# %% tags=["solution"]
def probabilities_and_truths(chosen):
    images = [data.read_image(r.image_path) for r in chosen]
    truths = np.stack([data.read_mask(r.mask_path) for r in chosen])
    return np.stack(inference.predict_probabilities(model, images))[..., 0], truths


val_p, val_truths = probabilities_and_truths(val_records)
val_dice = {t: metrics.dice_score(val_truths, val_p >= t) for t in thresholds}
best_threshold = max(val_dice, key=val_dice.get)
print("validation Dice:", ", ".join(f"{t}: {d:.3f}" for t, d in val_dice.items()))
test_p, test_truths = probabilities_and_truths(test_records)
test_dice = metrics.dice_score(test_truths, test_p >= best_threshold)
print(f"chosen on {len(val_records)} validation slices: {best_threshold}; "
      f"test Dice at it: {test_dice:.3f}")

# %% [markdown]
# Picked on the test patients, the cut-off would fit them, and their score would no longer
# tell you how the model does on patients it has never met.

# %% [markdown]
# ### Exercise 4: where is the model unsure? (open question)
# On the slice above P(tumour) is near 0 or 1 almost everywhere. Where would you expect the
# pixels in between, and what does that say about how much the cut-off can matter? Check your
# idea: what share of the pixels with 0.1 < P < 0.9 lies within 2 pixels of the truth's edge?

# %%
# Your thoughts, and any code to check them

# %% tags=["solution"]
from scipy import ndimage

p = probabilities[..., 0]
unsure = (p > 0.1) & (p < 0.9)
edge = truth.astype(bool) ^ ndimage.binary_erosion(truth.astype(bool))
near_edge = ndimage.binary_dilation(edge, iterations=2)
share = near_edge[unsure].mean() if unsure.any() else float("nan")
print(f"{unsure.sum()} unsure pixels of {p.size}; within 2 pixels of the edge: {share:.0%}")
print("One answer: along the tumour's outline, where the truth itself is a reader's judgement; "
      "a cut-off moves that outline by a pixel or so, which matters most for small tumours.")

# %% [markdown]
# ## Check your understanding
# 1. At what size does the model see a slice, and at what size does `predict` return the mask?
# 2. What does lowering the cut-off from 0.5 to 0.3 add, and what is the risk?
# 3. Why is the cut-off chosen on validation patients, and why did the slice above not decide it?
# 4. What does test-time mirroring average, and how many predictions per slice does `predict`
#    make with `tta=True`, and with `tta=True, scales=(1.0, 1.5)` as `pspseg evaluate` does?
# 5. Which two formats does `export` write, and how did the lesson check the reloaded model?
