# %% [markdown]
# # Lesson 5: evaluation
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/pspseg/pspseg/blob/v0.2.0/notebooks/05_evaluation.ipynb)
#
# **You will learn**
#
# - per-slice and per-patient Dice, and why per patient
# - how we compare with published results
# - best and worst patients
# - where the model fails, and why

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
# ## Evaluation on held-out patients
# Buda et al. (2019) report Dice per *volume*: one number per patient over all their slices.
# We report the same, on the test patients of the run's own split, after the clean-up shown
# further down.

# %%
import pandas as pd

from pspseg_utils import evaluation, inference, training

model, MODEL_DIR = course.ensure_model(RUN_DIR, DATA_DIR, PROFILE)
records = data.find_slices(DATA_DIR, progress=False)
test_records = data.select_patients(records, training.load_split(MODEL_DIR)["test"])
result = evaluation.evaluate(model, test_records, progress=False)
pd.Series({name: value if isinstance(value, int) else round(value, 3)  # counts stay integers
           for name, value in result.summary.items()}, dtype=object).to_frame("value")

# %% [markdown]
# ## Per patient
# One row per test patient, over all their slices: Dice and IoU, precision (the share of the
# predicted pixels that are tumour) and recall (the share of the tumour found), and `hd95`: the
# 95th percentile of the distance in pixels between the predicted outline and the true one,
# averaged over the slices where both show tumour. It is NaN (not a number) for a patient with
# no such slice, as when the model found none of their tumour.

# %%
patients = pd.DataFrame(result.patients).set_index("patient")
patients[["dice", "iou", "precision", "recall", "hd95", "tumour_pixels", "slices"]].round(3)

# %%
visualize.plot_patient_scores(result.patients, title=f"Test patients ({SOURCE} data)")
plt.show()

# %% [markdown]
# ## Against the published numbers
# Buda et al. (2019) report a mean per-volume Dice of **82%** for their U-Net. An earlier account
# of the same work, on Buda's blog (mateuszbuda.github.io, December 2017), gave 83.6% mean and
# 87.3% median in 22-fold cross-validation, and put two expert human readers' agreement at about
# **84%**. Those are on the real scans, with a U-Net trained for hours on a GPU.

# %%
print(f"This run: mean per-patient Dice {result.summary['patient_dice_mean']:.3f}, median "
      f"{result.summary['patient_dice_median']:.3f}, on {result.summary['patients']} test patients "
      f"of {SOURCE} data, {model.backbone_name} at {model.input_height} px, profile {PROFILE!r}.")
if SOURCE == "synthetic":
    print("These are synthetic scans: the numbers say the code works, not how well it does on MRI.")

# %% [markdown]
# ## One model to ship, five to measure it
# This lesson's run held some patients out of training so that we could score it here. The
# model `pspseg train` ships (the README's CPU recipe) holds none out: it learns from every
# labelled patient it is given, but for a validation share (15%) that only picks the epoch
# (`best.keras`); the 0.3 cut-off below was chosen on validation patients too. With 40 patients,
# holding 6 out for testing would take 15% of what the model learns from, to buy a score that
# one patient moves by 0.1.
#
# How well does it do on patients it never saw, then? That is measured apart, by patient-level
# cross-validation (`benchmarks/cross_validation.py`): the patients are dealt into five folds,
# the recipe is trained five times, each time on four folds, and each fold's patients are
# scored by the model that never saw them. Every patient is tested exactly once; the five
# models are then thrown away, and their scores stand for the one trained on all (a little
# low: each learned from fewer patients). A few random test patients, as above, are not enough:
# seven random 6-patient splits of the 40 averaged 0.818, but the same recipe scored 0.709 on
# 70 other patients of the dataset. Five-fold cross-validation of the 25-minute recipe over all
# 40, cleaned up as below, gave a mean of 0.810, median 0.855, and 0.42 over the worst tenth of
# the patients (0.778, 0.840 and 0.21 predicting at one scale). The README's Results section
# gives the recipe's cross-validated numbers, each with its command.

# %% [markdown]
# ## Cleaning up the prediction
# Three standard steps, all on by default in `evaluation.evaluate` and `pspseg evaluate`: average
# with the prediction of the mirrored scan (`tta=True`: the brain is roughly symmetric, the
# model's mistakes need not be); average with the prediction of the scan enlarged 1.5 times
# (`scales=(1.0, 1.5)`, the PSPNet paper's multi-scale testing: the same network, copied to take
# the larger input, sees a small tumour over more pixels); and keep only the largest connected
# region of each patient's volume (`keep_largest=True`, as Buda et al. evaluate): the tumour is
# one region across its slices, a false alarm on a slice far from it is another. With these,
# the probability is cut at 0.3 rather than 0.5 (`evaluation.CLEAN_UP_THRESHOLD`): more of a
# faint tumour is found, and the false alarms the lower cut adds away from it are dropped with
# the smaller regions. The scales and the cut were chosen on validation patients of the real
# data, never on test ones (`benchmarks/EXPERIMENTS.md`).

# %%
steps = {"raw": (False, (1.0,), False, 0.5), "mirrored": (True, (1.0,), False, 0.5),
         "mirrored + largest, at 0.5": (True, (1.0,), True, 0.5),
         f"mirrored + largest, at {evaluation.CLEAN_UP_THRESHOLD}": (True, (1.0,), True, None)}
summaries = {
    name: evaluation.evaluate(model, test_records, tta=tta, scales=scales, keep_largest=largest,
                              threshold=threshold, progress=False).summary
    for name, (tta, scales, largest, threshold) in steps.items()
}
summaries["+ scale 1.5 (the default)"] = result.summary
table = pd.DataFrame(summaries).loc[["patient_dice_mean", "patient_dice_median", "slice_dice_mean"]]
table.T.round(3)

# %% [markdown]
# A cut-off, like a scale, belongs to the data it was chosen on. On the validation patients of
# the real scans the lower cut found more of the faint tumours that the model half sees, and the
# second scale more of the small ones (the recipe's weak point); the table's last three rows
# show what they did for this run's test patients. Synthetic tumours are not faint or small in
# the same way, so on synthetic scans they may gain nothing, or even cost a little. Choose such
# settings on validation patients of your own data, never on the test patients, and report
# what they did there.

# %% [markdown]
# ## Best and worst patients
# The patients with the highest and the lowest Dice, each at their slice with the most tumour,
# predicted as `evaluate` scored them: cleaned up (mirrored, at two scales, cut at 0.3, the
# largest region of the patient's volume kept). The prediction filled orange, the truth
# outlined in blue. Each title gives the patient's Dice over all their slices, then this
# slice's own Dice.

# %%
from pspseg_utils import metrics

ranked = patients.sort_values("dice")
for patient in (ranked.index[-1], ranked.index[0]):
    volume = sorted((r for r in test_records if r.patient_id == patient),
                    key=lambda r: r.slice_index)
    masks = inference.predict(model, [r.image_path for r in volume], tta=True,
                              scales=evaluation.CLEAN_UP_SCALES,
                              threshold=evaluation.CLEAN_UP_THRESHOLD)
    masks = inference.largest_component(np.stack(masks))  # over the volume, as evaluate does
    position = max(range(len(volume)), key=lambda index: volume[index].tumour_pixels)
    chosen, mask = volume[position], masks[position]
    image, truth = data.read_image(chosen.image_path), data.read_mask(chosen.mask_path)
    visualize.show_prediction(image, truth, mask, title=(
        f"{patient}: patient Dice {patients.loc[patient, 'dice']:.2f} over {len(volume)} slices; "
        f"slice {chosen.slice_index}: Dice {metrics.dice_score(truth, mask):.2f}"), credit=CREDIT)
    plt.show()

# %% [markdown]
# ## Failure analysis
# Small tumours are hard (a few pixels wrong is a large share of them), and empty slices can only
# lose, through false positives.

# %%
slices = pd.DataFrame(result.slices)
with_tumour, empty = slices[slices.true_pixels > 0], slices[slices.true_pixels == 0]
print(f"empty slices with a false positive: {(empty.predicted_pixels > 0).mean():.1%} "
      f"of {len(empty)}; slices with tumour found: {(with_tumour.predicted_pixels > 0).mean():.1%}")
figure, axis = plt.subplots(figsize=(6, 3.5))
axis.scatter(with_tumour.true_pixels, with_tumour.dice, s=10)
axis.set(xscale="log", xlabel="tumour pixels on the slice", ylabel="slice Dice", ylim=(0, 1),
         title="Small tumours score lower")
axis.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## Look for yourself
# Browse the test patients with the model's predictions (live notebook; static otherwise).

# %%
visualize.slice_browser(test_records, predict=lambda image: inference.predict(model, image),
                        credit=CREDIT)

# %% [markdown]
# ## Exercises
# Try each one in the empty cell, then run the solution below it (click to show its code). The
# solutions check themselves, so they also run when the course is tested.
#
# ### Exercise 1: Dice by hand
# Count the true positives, false positives and false negatives of the two 4 x 4 masks below,
# then compute Dice = 2 TP / (2 TP + FP + FN) and IoU = TP / (TP + FP + FN) on paper. Check
# your numbers with `metrics.dice_score` and `metrics.iou_score`.

# %%
truth_4x4 = np.array([[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
predicted_4x4 = np.array([[0, 0, 0, 0], [0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]])
my_dice, my_iou = None, None  # your numbers

# %% tags=["solution"]
tp = int(np.sum((truth_4x4 == 1) & (predicted_4x4 == 1)))
fp = int(np.sum((truth_4x4 == 0) & (predicted_4x4 == 1)))
fn = int(np.sum((truth_4x4 == 1) & (predicted_4x4 == 0)))
dice, iou = 2 * tp / (2 * tp + fp + fn), tp / (tp + fp + fn)
print(f"TP {tp}, FP {fp}, FN {fn}: Dice {dice:.3f}, IoU {iou:.3f}; yours: {my_dice}, {my_iou}")
assert np.isclose(dice, metrics.dice_score(truth_4x4, predicted_4x4))
assert np.isclose(iou, metrics.iou_score(truth_4x4, predicted_4x4))

# %% [markdown]
# ### Exercise 2: what does an empty slice score?
# Predict the Dice of a slice with no tumour when the prediction is also empty, and when it
# marks one pixel. Then run, and use the answer to explain why `slice_dice_mean` and
# `slice_dice_tumour_mean` differ in the summary at the top.

# %%
my_empty_empty, my_empty_one_pixel = None, None  # your guesses

# %% tags=["solution"]
empty_truth = np.zeros((4, 4), dtype=np.uint8)
one_pixel = empty_truth.copy()
one_pixel[0, 0] = 1
empty_empty = metrics.dice_score(empty_truth, empty_truth)
empty_one_pixel = metrics.dice_score(empty_truth, one_pixel)
print(f"empty vs empty: {empty_empty}; empty vs one pixel: {empty_one_pixel}; "
      f"yours: {my_empty_empty}, {my_empty_one_pixel}")
assert (empty_empty, empty_one_pixel) == (1.0, 0.0)
print(f"summary: slice_dice_mean {result.summary['slice_dice_mean']:.3f} over all slices, "
      f"slice_dice_tumour_mean {result.summary['slice_dice_tumour_mean']:.3f} over those with "
      "tumour: each empty slice adds a 1 (no false alarm) or a 0")

# %% [markdown]
# ### Exercise 3: a patient's Dice from its slices
# A patient's Dice counts the pixels of all its slices together. Recompute it for the worst
# patient from the slice table `slices` (columns `patient`, `tp`, `true_pixels`,
# `predicted_pixels`, `dice`) and compare with `patients`. Is it the mean of its slices' Dice?

# %%
worst = ranked.index[0]
worst_dice = None  # your code here

# %% tags=["solution"]
rows = slices[slices.patient == worst]
worst_dice = 2 * rows.tp.sum() / (rows.true_pixels.sum() + rows.predicted_pixels.sum())
print(f"{worst}: Dice {worst_dice:.3f} from the summed counts, {patients.loc[worst, 'dice']:.3f} "
      f"in the table; the mean of its {len(rows)} slices' Dice is {rows.dice.mean():.3f}")
assert np.isclose(worst_dice, patients.loc[worst, "dice"])

# %% [markdown]
# The mean of the slices' Dice weighs a slice with a few tumour pixels as much as one with
# thousands, and counts each empty slice as 0 or 1; the volume Dice weighs every pixel alike.

# %% [markdown]
# ### Exercise 4: how far does the mean go? (open question)
# The summary's mean Dice comes from a handful of test patients. How much would it move with
# other patients? Try leaving each test patient out in turn. What would you do to report a
# number you can trust?

# %%
# Your thoughts, and any code to check them

# %% tags=["solution"]
dice_by_patient = patients["dice"]
left_out = {p: dice_by_patient.drop(p).mean() for p in dice_by_patient.index}
print(f"mean over all {len(dice_by_patient)}: {dice_by_patient.mean():.3f}; leaving one out: "
      f"{min(left_out.values()):.3f} to {max(left_out.values()):.3f}")
print("One answer: with few patients one of them moves the mean a lot. Cross-validate by "
      "patient, so that every patient is a test patient once, and report the spread as well "
      "as the mean (benchmarks/cross_validation.py does that).")

# %% [markdown]
# ## Check your understanding
# 1. Why is Dice reported per patient volume, as Buda et al. do, rather than per slice?
# 2. What do the two clean-up steps do, and on which patients was the 0.3 cut-off chosen?
# 3. Why do small tumours score lower, as the scatter plot shows?
# 4. Why does an empty slice score either 1 or 0, and which summary number does that affect?
# 5. Why can the Dice of this run not be set against the 82% of Buda et al.?
# 6. Why does the model `pspseg train` ships hold out no test patients, and how is its score on
#    new patients measured?
