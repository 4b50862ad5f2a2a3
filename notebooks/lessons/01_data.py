# %% [markdown]
# # Lesson 1: the LGG brain MRI data
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/pspseg/pspseg/blob/v0.2.0/notebooks/01_data.ipynb)
#
# **You will learn**
#
# - where the data comes from and how the course finds it
# - what the three MRI sequences show, and what a tumour mask is
# - why the split must be by patient, measured
# - the input pipeline and its augmentation

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
# ## Getting the data
# The LGG segmentation dataset (Buda et al. 2019, Kaggle `mateuszbuda/lgg-mri-segmentation`,
# CC BY-NC-SA 4.0) has 110 patients, 3929 slices, 1373 of them with tumour (its own count).
# `resolve_data_dir` used your folder if you gave one, else Kaggle if it answers (the dataset is
# public: `kagglehub` downloads it, a few hundred MB, without a Kaggle account), else it
# generated a **synthetic** LGG-like dataset: the cell above said which ("given": your folder),
# and why. `find_slices` reads and checks every file once, so problems surface now, and the cell
# counts what your data holds. The copy of this lesson you are reading ran on a folder of 40 of
# the 110 patients (given in `$PSPSEG_DATA_DIR`), so its counts are smaller.
#
# The licence lets you share and adapt the scans, not for profit, if you credit their source and
# share alike. So every figure of a scan in the course carries a credit line along its bottom
# edge: `CREDIT`, set in the Configuration cell from `SOURCE`, names the dataset, its authors and
# its licence, or says that the scans are synthetic.

# %%
records = data.find_slices(DATA_DIR, progress=False)
summary = data.summarize(records, layout="kaggle")
print(f"{SOURCE} data: {summary.patients} patients, {summary.slices} slices, "
      f"{summary.tumour_slices} with tumour ({summary.tumour_slices / summary.slices:.0%})")

# %% [markdown]
# ## Three MRI sequences, one mask
# Each slice stacks three co-registered sequences: pre-contrast, FLAIR (where these gliomas
# show bright) and post-contrast. The mask marks the FLAIR abnormality, drawn by a reader.
# Not every patient has all three: of the 110 patients, 9 lack the post-contrast sequence and 6
# the pre-contrast one, and the dataset puts FLAIR in the missing one's place (its README). The
# cell finds such patients in your data (a channel equal to FLAIR on their largest tumour
# slice), then shows the slice with the largest tumour of a patient with all three sequences,
# and one of a patient who lacks some, if there is one. The RGB panel shows the three
# sequences as red, green and blue: tinted when they differ, grey where FLAIR fills in. The
# last panel outlines the mask on FLAIR in grey, in colours that colour-blind readers tell
# apart too (blue truth here; later lessons fill the prediction orange).

# %%
largest = {}  # each patient's slice with the most tumour
for record in records:
    if record.tumour_pixels > getattr(largest.get(record.patient_id), "tumour_pixels", -1):
        largest[record.patient_id] = record


def lacks_a_sequence(record):
    image = data.read_image(record.image_path)  # FLAIR is channel 1; a blank slice proves nothing
    return image[..., 1].any() and any(np.array_equal(image[..., c], image[..., 1]) for c in (0, 2))


lacking = sorted(patient for patient, record in largest.items() if lacks_a_sequence(record))
print(f"{len(lacking)} of {len(largest)} patients lack a sequence: {', '.join(lacking) or 'none'}")
complete = [record for patient, record in largest.items() if patient not in lacking]
shown = [max(complete, key=lambda r: r.tumour_pixels)]
shown += [max((largest[p] for p in lacking), key=lambda r: r.tumour_pixels)] if lacking else []
for example in shown:
    image, mask = data.read_image(example.image_path), data.read_mask(example.mask_path)
    copies = [name for channel, name in ((0, "pre-contrast"), (2, "post-contrast"))
              if np.array_equal(image[..., channel], image[..., 1])]  # FLAIR in their place
    gap = f" ({' and '.join(copies)}: FLAIR in place)" if copies else ""
    visualize.show_channels(image, mask, credit=CREDIT,
                            title=f"{example.patient_id}, slice {example.slice_index}{gap}")
    plt.show()

# %% [markdown]
# ## Statistics
# Most slices show no tumour, and tumours vary a lot in size: both shape the loss and the
# metrics of lesson 3.

# %%
visualize.plot_dataset_statistics(records, title=f"{SOURCE} data: patients, prevalence, sizes")
plt.show()

# %% [markdown]
# ## Split by patient, not by slice
# Neighbouring slices of one patient look almost alike. Split slices at random and the test set
# holds near-copies of training slices. We measure it with a "model" that can only memorise:
# it copies the mask of the most similar training slice.

# %%
for split_name, scores in course.leakage_demo(records, seed=SEED).items():
    print(f"{split_name:>20}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float)
                                            else f"{k} {v}" for k, v in scores.items()))

# %% [markdown]
# Memorising looks like skill under a slice-level split. Our split is by patient, stratified by
# tumour burden, and seeded; no patient is in two subsets.

# %%
split = data.split_patients(records, val_fraction=0.15, test_fraction=0.15, seed=SEED)
print({name: len(patients) for name, patients in split.items()}, "patients")

# %% [markdown]
# ## The input pipeline
# Slices are decoded once (`tf.io` cannot read TIFF) and kept in memory; `tf.data` then shuffles,
# augments (left-right flip, +-10 degree rotation, 0.9-1.1 scale, intensity gain and gamma, and
# in 15% of slices FLAIR in place of another sequence, as for the patients who lack one),
# batches and prefetches, all from one seed. The model standardises each slice itself.

# %%
train_records = data.select_patients(records, split["train"])
images, masks = data.load_arrays(train_records[:64], image_size=CONFIG.image_size, progress=False)
index = int(np.argmax(masks.reshape(len(masks), -1).sum(1)))
stream = data.make_dataset(images[index:index + 1].repeat(5, 0),
                           masks[index:index + 1].repeat(5, 0),
                           batch_size=5, augment=True, seed=SEED,
                           missing_sequence_rate=0.5)  # training uses 0.15; 0.5 shows it here
augmented, augmented_masks = next(iter(stream))
visualize.show_augmentations([images[index], *augmented.numpy()[1:]],
                             [masks[index], *augmented_masks.numpy()[1:, ..., 0]], credit=CREDIT)
plt.show()

# %% [markdown]
# ## Browse the patients
# Pick a patient and a slice (in a live notebook; a static figure otherwise).

# %%
visualize.slice_browser(records, credit=CREDIT)

# %% [markdown]
# ## Exercises
# Try each one in the empty cell, then run the solution below it (click to show its code). The
# solutions check themselves, so they also run when the course is tested.
#
# ### Exercise 1: predict the shapes
# The pipeline cell loaded 64 training slices with `load_arrays` at `CONFIG.image_size`. Before
# you run anything: what are the shape and dtype of `images` and of `masks`, and which values
# can a mask hold? Write your guesses down.

# %%
my_images_shape = None  # your guess, e.g. (10, 32, 32, 1)
my_masks_shape = None
my_mask_values = None  # e.g. [0, 255]

# %% tags=["solution"]
print("images:", images.shape, images.dtype, "| masks:", masks.shape, masks.dtype,
      "| mask values:", np.unique(masks))
print("your guesses:", my_images_shape, my_masks_shape, my_mask_values)
assert images.shape == (64, CONFIG.image_size, CONFIG.image_size, 3)  # slices, H, W, sequences
assert masks.shape == images.shape[:3] and set(np.unique(masks).tolist()) <= {0, 1}

# %% [markdown]
# ### Exercise 2: check the split yourself
# Using `split` and `records`, check that no patient is in two subsets and that every patient is
# in one. Then count, per subset, its slices and the share of them with tumour. Are the shares
# alike? (`split_patients` stratifies by tumour burden.)

# %%
per_subset = {}  # your code here: {"train": (slices, share with tumour), ...}

# %% tags=["solution"]
subsets = {name: set(patients) for name, patients in split.items()}
assert not subsets["train"] & subsets["val"] and not subsets["train"] & subsets["test"]
assert not subsets["val"] & subsets["test"]
assert set.union(*subsets.values()) == {r.patient_id for r in records}
for name, patients in subsets.items():
    chosen = data.select_patients(records, patients)
    per_subset[name] = (len(chosen), np.mean([r.has_tumour for r in chosen]))
    print(f"{name:>5}: {len(patients):2d} patients, {per_subset[name][0]:3d} slices, "
          f"{per_subset[name][1]:.0%} with tumour")

# %% [markdown]
# ### Exercise 3: break the split and measure the leak
# Split the slices at random instead: each goes to test with probability 0.2. For each test
# slice, is one of its neighbours (same patient, slice index one up or down) in training?
# Compute the share of test slices that have one, then the same share for the patient split's
# test patients, and compare with the "nearest slice from the same patient" of the demo above.

# %%
rng = np.random.default_rng(SEED)
slice_test = rng.random(len(records)) < 0.2  # True: that slice is a test slice
neighbour_share = None  # your code here


# %% tags=["solution"]
def share_with_neighbour_in_training(test):
    pairs = list(zip(records, test, strict=True))
    training = {(r.patient_id, r.slice_index) for r, t in pairs if not t}
    tested = [r for r, t in pairs if t]
    return np.mean([(r.patient_id, r.slice_index - 1) in training
                    or (r.patient_id, r.slice_index + 1) in training for r in tested])


neighbour_share = share_with_neighbour_in_training(slice_test)
patient_share = share_with_neighbour_in_training([r.patient_id in split["test"] for r in records])
print(f"test slices with a neighbour in training: {neighbour_share:.0%} split by slice, "
      f"{patient_share:.0%} split by patient")
assert neighbour_share > 0.8 and patient_share == 0


# %% [markdown]
# ### Exercise 4: other leaks (open question)
# The patient split keeps a patient's slices on one side. Can test patients still resemble the
# training ones in a way a model could exploit? Think of where the scans were made: the second
# part of a patient id names the institution (`TCGA_CS_4941_19960909`: CS). How would you check
# that with `split`, and what else, besides data, could leak into a test score?

# %%
# Your thoughts, and any code to check them

# %% tags=["solution"]
def institution(patient):
    return patient.split("_")[1]


for name, patients in split.items():
    print(f"{name:>5}: institutions {sorted({institution(p) for p in patients})}")
shared = {institution(p) for p in split["test"]} & {institution(p) for p in split["train"]}
print(f"test institutions also in training: {sorted(shared)}")
print("One answer: scanners and protocols differ between institutions, so test patients from "
      "an institution seen in training may be easier; to measure that, hold whole institutions "
      "out. Choices leak too: pick settings (epochs, threshold) on validation patients, never "
      "on test ones.")

# %% [markdown]
# ## Check your understanding
# 1. How many patients and slices does your data have, and what share of slices shows a tumour?
#    Why does that share matter for training?
# 2. In which sequence do these gliomas show brightest, and what does a grey RGB panel tell you
#    about a patient?
# 3. Why did the memorising "model" score well under the slice-level split and not under the
#    patient-level one?
# 4. Which augmentations must move the mask with the image, and which change only the image?
# 5. What would go wrong if the test subset happened to hold only patients with small tumours?
