"""Write the five lesson notebooks (without outputs) from the cells below.

    python tools/build_notebooks.py          # then: python3 dev.py course (executes them)

The badge and the Colab install line are made from `pspseg_utils.course.REPO_URL` and the
release tag (`course.RELEASE_TAG`, from the package version), and the Setup cell is the same in
every lesson; tests/test_notebooks.py checks both.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from pspseg_utils import __version__
from pspseg_utils.course import INSTALL_SOURCE, RELEASE_TAG, REPO_URL

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SLUG = REPO_URL.removeprefix("https://github.com/")

SETUP = f"""# On Colab (or Kaggle) install the course package, once, leaving the runtime's packages as they
# are; locally `python3 dev.py course` installed it.
import importlib.metadata
import os
import subprocess
import sys

RELEASE = "{__version__}"  # the release of the course these lessons belong to
SOURCE = "{INSTALL_SOURCE}"
try:
    INSTALLED = importlib.metadata.version("pspseg")
except importlib.metadata.PackageNotFoundError:
    INSTALLED = None
if INSTALLED == RELEASE:
    print(f"pspseg {{RELEASE}} is installed: nothing to do.")
elif "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
    print(f"Installing pspseg {{RELEASE}} and only what this runtime lacks (about a minute) ...")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", SOURCE], check=True)
elif INSTALLED is None:
    raise ModuleNotFoundError("pspseg is missing: run `python3 dev.py course` first")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's start-up log quiet
from pspseg_utils import course

course.setup_notebook()  # imports TensorFlow quietly, prints versions and the GPU

import matplotlib.pyplot as plt
import numpy as np

import pspseg_utils as ps
from pspseg_utils import data, visualize"""

CONFIGURATION = """PROFILE = course.resolve_profile("auto")  # "quick" | "cpu" | "gpu"; auto: PSPSEG_QUICK=1 -> quick
ROOT = course.project_root()
DATA_DIR = None  # a kaggle_3m folder; None: $PSPSEG_DATA_DIR, else Kaggle, else synthetic data
USE_DRIVE = False  # on Colab: True mounts Google Drive and keeps run folders there
RUN_DIR = course.runs_dir(use_drive=USE_DRIVE) / f"course-{PROFILE}"  # lesson 03's model
CONFIG = course.train_config(PROFILE)
SEED = 0

DATA_DIR, SOURCE = data.resolve_data_dir(
    DATA_DIR, synthetic_dir=ROOT / "data" / "synthetic", download=PROFILE != "quick"
)
print(f"Profile {PROFILE!r}: {CONFIG.backbone} at {CONFIG.image_size} px; "
      f"data: {SOURCE}, in {os.path.relpath(DATA_DIR, ROOT)}; runs in {os.path.relpath(RUN_DIR, ROOT)}")"""


def badge(name: str) -> str:
    url = (
        f"https://colab.research.google.com/github/{SLUG}/blob/{RELEASE_TAG}/notebooks/{name}.ipynb"
    )
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def header(name: str, title: str, learn: list[str]) -> list:
    items = "\n".join(f"- {item}" for item in learn)
    return [
        nbformat.v4.new_markdown_cell(
            f"# {title}\n\n{badge(name)}\n\n**You will learn**\n\n{items}"
        ),
        nbformat.v4.new_markdown_cell("## Setup"),
        nbformat.v4.new_code_cell(SETUP),
        nbformat.v4.new_markdown_cell(
            "## Configuration\n\nOne switch, `PROFILE`: `quick` runs in seconds (tests set "
            "`PSPSEG_QUICK=1`), `cpu` trains a small model in minutes, `gpu` uses real data at full "
            "size with mixed precision. Point `DATA_DIR` at the Kaggle data to use real scans."
        ),
        nbformat.v4.new_code_cell(CONFIGURATION),
    ]


def md(text: str):
    return nbformat.v4.new_markdown_cell(text.strip())


def code(text: str):
    return nbformat.v4.new_code_cell(text.strip())


LESSONS: dict[str, tuple[str, list[str], list]] = {}

LESSONS["01_data"] = (
    "Lesson 1: the LGG brain MRI data",
    [
        "where the data comes from and how the course finds it",
        "what the three MRI sequences show, and what a tumour mask is",
        "why the split must be by patient, measured",
        "the input pipeline and its augmentation",
    ],
    [
        md("""
## Getting the data
The LGG segmentation dataset (Buda et al. 2019, Kaggle `mateuszbuda/lgg-mri-segmentation`,
CC BY-NC-SA 4.0) has 110 patients, 3929 slices. `resolve_data_dir` used your folder if you gave
one, else Kaggle if it answers (the dataset is public: `kagglehub` downloads it, a few hundred
MB, without a Kaggle account), else it generated a **synthetic** LGG-like dataset: the cell
above said which, and why. `find_slices` reads and checks every file once, so problems surface now."""),
        code("""
records = data.find_slices(DATA_DIR, progress=False)
summary = data.summarize(records, layout="kaggle")
print(f"{SOURCE} data: {summary.patients} patients, {summary.slices} slices, "
      f"{summary.tumour_slices} with tumour ({summary.tumour_slices / summary.slices:.0%})")"""),
        md("""
## Three MRI sequences, one mask
Each slice stacks three co-registered sequences: pre-contrast, FLAIR (where these gliomas
show bright) and post-contrast. The mask marks the FLAIR abnormality, drawn by a reader.
For 15 of the 110 patients a sequence is missing, and the dataset puts FLAIR in its place: such
a patient's slices look grey in the overlay (RGB = the three sequences), where the
others are tinted."""),
        code("""
example = max(records, key=lambda r: r.tumour_pixels)
image, mask = data.read_image(example.image_path), data.read_mask(example.mask_path)
visualize.show_channels(image, mask, title=f"{example.patient_id}, slice {example.slice_index}")
plt.show()"""),
        md("""
## Statistics
Most slices show no tumour, and tumours vary a lot in size: both shape the loss and the
metrics of lesson 3."""),
        code("""
visualize.plot_dataset_statistics(records, title=f"{SOURCE} data: patients, prevalence, sizes")
plt.show()"""),
        md("""
## Split by patient, not by slice
Neighbouring slices of one patient look almost alike. Split slices at random and the test set
holds near-copies of training slices. We measure it with a "model" that can only memorise:
it copies the mask of the most similar training slice."""),
        code("""
for split_name, scores in course.leakage_demo(records, seed=SEED).items():
    print(f"{split_name:>20}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float)
                                            else f"{k} {v}" for k, v in scores.items()))"""),
        md("""
Memorising looks like skill under a slice-level split. Our split is by patient, stratified by
tumour burden, and seeded; no patient is in two subsets."""),
        code("""
split = data.split_patients(records, val_fraction=0.15, test_fraction=0.15, seed=SEED)
print({name: len(patients) for name, patients in split.items()}, "patients")"""),
        md("""
## The input pipeline
Slices are decoded once (`tf.io` cannot read TIFF) and kept in memory; `tf.data` then shuffles,
augments (left-right flip, +-10 degree rotation, 0.9-1.1 scale, intensity gain and gamma, and
in 15% of slices FLAIR in place of another sequence, as for the patients who lack one),
batches and prefetches, all from one seed. The model standardises each slice itself."""),
        code("""
train_records = data.select_patients(records, split["train"])
images, masks = data.load_arrays(train_records[:64], image_size=CONFIG.image_size, progress=False)
index = int(np.argmax(masks.reshape(len(masks), -1).sum(1)))
stream = data.make_dataset(images[index:index + 1].repeat(5, 0), masks[index:index + 1].repeat(5, 0),
                           batch_size=5, augment=True, seed=SEED,
                           missing_sequence_rate=0.5)  # training uses 0.15; 0.5 shows it here
augmented, augmented_masks = next(iter(stream))
visualize.show_augmentations([images[index], *augmented.numpy()[1:]],
                             [masks[index], *augmented_masks.numpy()[1:, ..., 0]])
plt.show()"""),
        md("""
## Browse the patients
Pick a patient and a slice (in a live notebook; a static figure otherwise)."""),
        code("visualize.slice_browser(records)"),
    ],
)

LESSONS["02_architecture"] = (
    "Lesson 2: PSPNet, step by step",
    [
        "what semantic segmentation asks of a network",
        "dilated backbones and the output stride",
        "the pyramid pooling module, built cell by cell",
        "the three backbones' size and speed",
        "why the recipe adds a decoder at stride 4",
    ],
    [
        md("""
## Semantic segmentation in brief
A segmenter labels every pixel. It needs two things that pull apart: fine detail (where is the
edge?) and context (is this bright blob a tumour or a vessel?). PSPNet (Zhao et al. 2017) keeps
detail with a *dilated* backbone and adds context with *pyramid pooling*."""),
        md("""
## Backbone and output stride
Classification networks shrink the image 32 times. PSPNet stops shrinking at 8 (the *output
stride*) by replacing the last strides with dilated convolutions, which see as far without
losing resolution. Here is VGG16 at three output strides, on a 256 x 256 input:"""),
        code("""
# NBVAL_CHECK_OUTPUT
for output_stride in (32, 16, 8):
    backbone = ps.models.build_backbone("vgg16", input_shape=(256, 256, 3),
                                        output_stride=output_stride)
    print(f"output stride {output_stride:>2}: features {backbone.output.shape[1:]}")"""),
        md("""
## The pyramid pooling module, cell by cell
Pool the features into 1x1, 2x2, 3x3 and 6x6 bins, reduce each to a quarter of the channels
with a 1x1 convolution, upsample back, and concatenate with the features."""),
        code("""
# NBVAL_CHECK_OUTPUT
import keras
from keras import layers

features = keras.Input((32, 32, 512), name="features")
branches = [features]
for bins in (1, 2, 3, 6):
    pooled = ps.models.AdaptiveAveragePooling(bins)(features)
    reduced = layers.Conv2D(512 // 4, 1, use_bias=False)(pooled)
    upsampled = layers.Resizing(32, 32, interpolation="bilinear")(reduced)
    print(f"bins {bins}: pooled {pooled.shape[1:]} -> reduced {reduced.shape[1:]} "
          f"-> upsampled {upsampled.shape[1:]}")
    branches.append(upsampled)
ours = layers.Concatenate()(branches)
library = ps.models.pyramid_pooling_module(features, bins=(1, 2, 3, 6))
print("concatenated:", ours.shape[1:], "| library's:", library.shape[1:],
      "| equal:", ours.shape == library.shape)"""),
        md("""
Feature maps need not divide by the bins: adaptive bins overlap by a pixel where needed. The
pooling is a matrix product; for 4 pixels into 3 bins each row averages one bin:"""),
        code("""
# NBVAL_CHECK_OUTPUT
print(ps.models.layers.adaptive_pooling_matrix(4, 3))"""),
        md("""
## Why global context helps
A 3x3 convolution at stride 8 sees a few dozen pixels. The 1x1 bin sees the whole slice: the
network can tell "bright region inside the brain, one hemisphere" from "bright scalp edge"."""),
        md("""
## The backbones: size and speed
VGG16 is the article's, ResNet50 the paper's, MobileNetV2 the one for laptops, and MobileNetV2
at half width (`mobilenetv2_050`) the CPU recipe's, which trains twice as fast again on a CPU
(the README's Performance section has the measured table)."""),
        code("""
import time

size = CONFIG.image_size
batch = np.zeros((1, size, size, 3), np.float32)
for name in ("vgg16", "resnet50", "mobilenetv2", "mobilenetv2_050"):
    model = ps.models.build_pspnet((size, size, 3), 1, backbone=name, backbone_weights=None)
    model.predict(batch, verbose=0)  # build and trace once
    start = time.perf_counter()
    model.predict(batch, verbose=0)
    milliseconds = (time.perf_counter() - start) * 1000
    print(f"{name:>15}: {model.count_params() / 1e6:5.1f} M parameters, {milliseconds:6.0f} ms "
          f"per {size}x{size} slice")"""),
        md("""
## A forward pass on a slice
An untrained network outputs noise, but the shapes tell the story: the mask comes back at the
input's resolution, one probability of tumour per pixel."""),
        code("""
records = data.find_slices(DATA_DIR, progress=False)
example = max(records, key=lambda r: r.tumour_pixels)
images, _ = data.load_arrays([example], image_size=size, progress=False)
model = ps.models.build_pspnet((size, size, 3), 1, backbone=CONFIG.backbone,
                               head_channels=CONFIG.head_channels, backbone_weights=None)
probabilities = model.predict(images.astype("float32"), verbose=0)
print("input", images.shape, "-> output", probabilities.shape, f"in [{probabilities.min():.3f}, "
      f"{probabilities.max():.3f}] (untrained: everything near 0.5)")"""),
        md("""
## The auxiliary head
The paper adds a second, smaller head on the stage before the last (deep supervision): while
training, its loss, weighted 0.4, joins the main one and gives early layers a shorter path for
their gradients. At inference the model returns the main output only."""),
        code("""
auxiliary_features, _ = model.get_layer("backbone").output
main, auxiliary = model(images.astype("float32"), training=True)
print("training:  main", tuple(main.shape), "+ auxiliary", tuple(auxiliary.shape),
      "from features", tuple(auxiliary_features.shape[1:]))
print("inference:", tuple(model(images.astype("float32")).shape))"""),
        md("""
## The decoder: a finer grid for small tumours
At output stride 8 a 128-pixel slice becomes a 16 x 16 grid of features, each cell 8 x 8
pixels. A tumour a dozen pixels across covers one or two cells, and upsampling the logits
cannot draw its outline: even the true masks, averaged onto that grid and upsampled back,
score a per-patient Dice of only 0.81 on the 40 development patients, against 0.93 on a 32 x 32
grid (`benchmarks/resolution_ceiling.py`). So the recipe adds DeepLabV3+'s decoder
(`skip_channels`): the head's features, upsampled 2x, meet the backbone's stride-4 features
reduced to a few channels, and a 3x3 convolution classifies at stride 4. The PSPNet of the paper
is `skip_channels=None`."""),
        code("""
decoder_model = ps.models.build_pspnet((size, size, 3), 1, backbone=CONFIG.backbone,
                                       head_channels=CONFIG.head_channels,
                                       skip_channels=CONFIG.skip_channels, backbone_weights=None)
for name in ("head_dropout", "head_skip_relu", "head_decoder_relu", "head_probabilities"):
    print(f"{name:>18}: {tuple(decoder_model.get_layer(name).output.shape[1:])}")"""),
        md("""
## The pooled feature maps
What each pyramid branch hands to the classifier: the same slice summarised at four scales
(first channel of each branch, before upsampling)."""),
        code("""
names = [f"ppm_pool{bins}_relu" for bins in (1, 2, 3, 6)]
probe = keras.Model(model.input, [model.get_layer(name).output for name in names])
figure, axes = plt.subplots(1, 5, figsize=(13, 2.8))
axes[0].imshow(images[0][..., 1], cmap="gray")
axes[0].set_title("input (FLAIR)")
for axis, name, output in zip(axes[1:], names, probe(images.astype("float32"))):
    output = np.asarray(output, dtype="float32")
    axis.imshow(output[0, ..., 0], cmap="magma")
    axis.set_title(name.replace("_relu", ""))
for axis in axes:
    axis.set_axis_off()
figure.suptitle("Pyramid pooling: the slice at 1x1, 2x2, 3x3 and 6x6")
plt.show()"""),
    ],
)

LESSONS["03_training"] = (
    "Lesson 3: training",
    [
        "why class imbalance decides the loss",
        "Dice and IoU, and what empty masks score",
        "checkpoints and auto-resume, shown by interrupting",
        "learning curves, and the article's API",
    ],
    [
        md("""
## Class imbalance and the loss
Tumour is a few percent of the pixels. A network that predicts "no tumour" everywhere gets a
low cross-entropy; the Dice loss, which only counts the tumour, does not fall for it."""),
        code("""
records = data.find_slices(DATA_DIR, progress=False)
share = sum(r.tumour_pixels for r in records) / (len(records) * 256 * 256)
print(f"tumour pixels: {share:.2%} of all pixels")"""),
        code("""
# NBVAL_CHECK_OUTPUT
from pspseg_utils import losses

truth = np.zeros((1, 8, 8, 1), np.float32)
truth[0, 2:4, 2:4] = 1  # 4 tumour pixels of 64
all_background = np.full_like(truth, 0.05)
rough_guess = np.where(truth > 0, 0.7, 0.2).astype(np.float32)
for name, loss in [("BCE", "crossentropy"), ("Dice", "dice"), ("BCE + Dice", "bce_dice")]:
    fn = losses.get_loss(loss, num_classes=1)
    print(f"{name:>10}: all background {float(fn(truth, all_background)):.3f}, "
          f"rough guess {float(fn(truth, rough_guess)):.3f}")"""),
        md("""
We train with BCE + Dice: cross-entropy gives smooth gradients everywhere, Dice keeps the
tumour in focus. Training pools the Dice over the batch (`"bce_batch_dice"`, as nnU-Net does
for 2D networks): with one Dice per slice, a slice without tumour loses half its Dice to one
confident stray pixel, and the network learns to hold back wherever it is unsure. On the real
scans the pooled Dice scored higher on the validation patients, on average over three patient
splits (`benchmarks/EXPERIMENTS.md`).

## Metrics
Dice = 2|T and P| / (|T| + |P|), IoU = |T and P| / |T or P|. A slice with no tumour and no
prediction scores 1 (a correct "nothing here")."""),
        code("""
# NBVAL_CHECK_OUTPUT
from pspseg_utils import metrics

truth = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
prediction = np.array([[1, 1, 1], [0, 0, 0], [0, 0, 0]])
# tp = 2, fp = 1, fn = 1: Dice = 4 / 6, IoU = 2 / 4
print(f"Dice {metrics.dice_score(truth, prediction):.3f}, IoU {metrics.iou_score(truth, prediction):.3f}")
print("empty vs empty:", metrics.dice_score(np.zeros((3, 3)), np.zeros((3, 3))))"""),
        md("""
## Training, interrupted and resumed
`train` checkpoints every epoch into the run folder (atomically: a crash never leaves a broken
file) with the optimizer state and the patient split. A tiny time budget stops the first call
after one epoch, as a Colab disconnect would; calling `train` again resumes after the last
finished epoch, with the same learning-rate plan.

A time budget also sizes the run: once an epoch has been timed, `train` plans as many epochs
as fit in the budget (at most `epochs`) and lets the learning rate decay to zero over exactly
those, so a slow laptop and a fast one both finish their schedule in time. It plans again
after each epoch from the median epoch time, so one slow epoch does not decide; after half-way
a new plan may only end sooner, so the learning rate never climbs back up near the end.

On Colab the `gpu` profile trains for at most 20 minutes, its budget (on a free T4, an estimated
35 of its 60 epochs fit). A runtime that disconnects loses its disk: set `USE_DRIVE = True` in
the Configuration cell to keep the run folder on Google Drive, then run this lesson again after
a disconnect and `train` resumes where it stopped (skip the cell that starts from scratch)."""),
        code("""
import dataclasses
import shutil
from pspseg_utils import training

shutil.rmtree(RUN_DIR, ignore_errors=True)  # this lesson trains from scratch, every time
print("precision:", training.choose_precision(CONFIG.precision))
interrupted = dataclasses.replace(CONFIG, time_budget_minutes=0.01)  # stops after one epoch
first = training.train(DATA_DIR, RUN_DIR, interrupted, progress=False)
print(f"stopped after epoch {first.epochs_done}; folder: {sorted(p.name for p in RUN_DIR.iterdir())}")"""),
        code("""
result = training.train(DATA_DIR, RUN_DIR, CONFIG, progress=False)
print(f"{result.epochs_done} epochs done" + (f", stopped by the {result.stopped_early}"
                                              if result.stopped_early else ""))"""),
        md("""
On a GPU the `gpu` profile trains in mixed precision (bfloat16 or float16, whichever the card
has): half the memory, several times the speed. Several GPUs are used together through
`tf.distribute.MirroredStrategy`.

## Learning curves"""),
        code("""
visualize.plot_history(RUN_DIR / "log.csv", title=f"{CONFIG.backbone} PSPNet on {SOURCE} data")
plt.show()"""),
        md("""
## The article's code, on Keras 3
The blog article's `keras_segmentation` code runs with only its import line changed. It reads
the `images/` + `masks/` PNG layout, which `data.prepare` writes from the Kaggle layout."""),
        code("""
article_dir = ROOT / "runs" / f"article-{PROFILE}"
if not (article_dir / "images").exists():
    data.prepare(DATA_DIR, article_dir, progress=False)
shutil.rmtree(article_dir / "ckpts", ignore_errors=True)  # a fresh run each time, as above

from pspseg_utils import keras_segmentation as ks  # was: import keras_segmentation as ks

model = ks.models.pspnet.vgg_pspnet(n_classes=2, input_height=CONFIG.image_size,
                                    input_width=CONFIG.image_size)
model.train(train_images=str(article_dir / "images"), train_annotations=str(article_dir / "masks"),
            checkpoints_path=str(article_dir / "ckpts"), epochs=1, auto_resume_checkpoint=True,
            steps_per_epoch=2)
model = ks.predict.model_from_checkpoint_path(str(article_dir / "ckpts"))
print("restored:", type(model).__name__, "with n_classes =", model.n_classes)"""),
    ],
)

LESSONS["04_inference"] = (
    "Lesson 4: inference",
    [
        "loading a checkpoint",
        "predicting a PNG with the article's `predict`",
        "the effect of the threshold",
        "time per image, export and reload",
    ],
    [
        md("""
## Loading a checkpoint
We use the model lesson 3 saved. Run alone, this lesson first trains a small one (it says what,
and for how long): the `gpu` profile's model is lesson 3's to train."""),
        code("""
from pspseg_utils import inference, training

model, MODEL_DIR = course.ensure_model(RUN_DIR, DATA_DIR, PROFILE)
records = data.find_slices(DATA_DIR, progress=False)
test_records = data.select_patients(records, training.load_split(MODEL_DIR)["test"])
print(f"{len(test_records)} slices of patients the model never saw")"""),
        md("""
## One PNG, the article's way
`predict(model=..., inp=...)` returns a label mask at the image's own resolution."""),
        code("""
import cv2

from pspseg_utils import keras_segmentation as ks

example = max(test_records, key=lambda r: r.tumour_pixels)
png = MODEL_DIR / "example.png"
cv2.imwrite(str(png), data.read_image(example.image_path)[..., ::-1])  # OpenCV writes BGR
pred_mask = ks.predict.predict(model=model, inp=str(png))
print(pred_mask.shape, pred_mask.dtype, "labels", np.unique(pred_mask))
visualize.show_article_figure(data.read_image(png), pred_mask,
                              title=f"{example.patient_id}, slice {example.slice_index}")
plt.show()"""),
        md("""
## A folder at once
`predict_dir` writes article-style masks (0/1 PNG) and overlays for every image."""),
        code("""
patient_dir = example.image_path.parent
written = inference.predict_dir(model, patient_dir, MODEL_DIR / "predictions", progress=False)
print(f"{len(written)} masks in {written[0].parent.relative_to(ROOT)}, overlays beside them")"""),
        md("""
## The threshold
The network outputs a probability per pixel; the mask is where it crosses a threshold.
Lower finds more tumour and more false alarms; higher, fewer of both. `predict` cuts at 0.5;
lesson 5's cleaned-up evaluation cuts lower, at 0.3, and drops the false alarms that adds."""),
        code("""
from pspseg_utils import metrics

image, truth = data.read_image(example.image_path), data.read_mask(example.mask_path)
_, probabilities = inference.predict(model, image, return_probabilities=True)
figure, axes = plt.subplots(1, 4, figsize=(12, 3))
axes[0].imshow(probabilities[..., 0], cmap="magma", vmin=0, vmax=1)
axes[0].set_title("P(tumour)")
for axis, threshold in zip(axes[1:], (0.3, 0.5, 0.7)):
    mask = (probabilities[..., 0] >= threshold).astype(np.uint8)
    axis.imshow(inference.overlay(image, mask))
    axis.set_title(f"threshold {threshold}: Dice {metrics.dice_score(truth, mask):.2f}")
for axis in axes:
    axis.set_axis_off()
figure.suptitle("The threshold's effect on one slice")
plt.show()"""),
        md("## Time per image"),
        code("""
import time

inference.predict(model, image)  # warm-up
start = time.perf_counter()
for _ in range(5):
    inference.predict(model, image)
print(f"{(time.perf_counter() - start) / 5 * 1000:.0f} ms per slice (batch 1, this machine)")"""),
        md("""
## Export and reload
A `.keras` file for Keras users and a TensorFlow SavedModel for serving."""),
        code("""
from pspseg_utils import export

sizes = export.export(MODEL_DIR, MODEL_DIR / "export")
print({name: f"{size / 1e6:.1f} MB" for name, size in sizes.items()})
reloaded = inference.load_model(MODEL_DIR / "export" / "model.keras")
same = np.array_equal(inference.predict(reloaded, image), inference.predict(model, image))
print("reloaded model predicts the same mask:", same)"""),
    ],
)

LESSONS["05_evaluation"] = (
    "Lesson 5: evaluation",
    [
        "per-slice and per-patient Dice, and why per patient",
        "how we compare with published results",
        "best and worst patients",
        "where the model fails, and why",
    ],
    [
        md("""
## Evaluation on held-out patients
Buda et al. (2019) report Dice per *volume*: one number per patient over all their slices.
We report the same, on the test patients of the run's own split, after the clean-up shown
further down."""),
        code("""
import pandas as pd

from pspseg_utils import evaluation, inference, training

model, MODEL_DIR = course.ensure_model(RUN_DIR, DATA_DIR, PROFILE)
records = data.find_slices(DATA_DIR, progress=False)
test_records = data.select_patients(records, training.load_split(MODEL_DIR)["test"])
result = evaluation.evaluate(model, test_records, progress=False)
pd.Series(result.summary).round(3).to_frame("value")"""),
        md("## Per patient"),
        code("""
patients = pd.DataFrame(result.patients).set_index("patient")
patients[["dice", "iou", "precision", "recall", "hd95", "tumour_pixels", "slices"]].round(3)"""),
        code("""
visualize.plot_patient_scores(result.patients, title=f"Test patients ({SOURCE} data)")
plt.show()"""),
        md("""
## Against the published numbers
Buda et al. report a mean per-volume Dice of **82%** (83.6% mean, 87.3% median in 22-fold
cross-validation); two human readers agree at about **84%**. Those are on the real scans with a
U-Net trained for hours on a GPU."""),
        code("""
print(f"This run: mean per-patient Dice {result.summary['patient_dice_mean']:.3f}, median "
      f"{result.summary['patient_dice_median']:.3f}, on {result.summary['patients']} test patients "
      f"of {SOURCE} data, {model.backbone_name} at {model.input_height} px, profile {PROFILE!r}.")
if SOURCE == "synthetic":
    print("These are synthetic scans: the numbers say the code works, not how well it does on MRI.")"""),
        md("""
## Cleaning up the prediction
Two standard steps, both on by default in `evaluation.evaluate` and `pspseg evaluate`: average
with the prediction of the mirrored scan (`tta=True`: the brain is roughly symmetric, the
model's mistakes need not be), and keep only the largest connected region of each patient's
volume (`keep_largest=True`, as Buda et al. evaluate): the tumour is one region across its
slices, a false alarm on a slice far from it is another. With both, the probability is cut at
0.3 rather than 0.5 (`evaluation.CLEAN_UP_THRESHOLD`): more of a faint tumour is found, and the
false alarms the lower cut adds away from it are dropped with the smaller regions. The cut was
chosen on validation patients of the real data, never on test ones
(`benchmarks/EXPERIMENTS.md`)."""),
        code("""
steps = {"raw": (False, False, 0.5), "mirrored": (True, False, 0.5),
         "mirrored + largest, at 0.5": (True, True, 0.5)}
summaries = {
    name: evaluation.evaluate(model, test_records, tta=tta, keep_largest=largest,
                              threshold=threshold, progress=False).summary
    for name, (tta, largest, threshold) in steps.items()
}
summaries[f"mirrored + largest, at {evaluation.CLEAN_UP_THRESHOLD}"] = result.summary  # the default
pd.DataFrame(summaries).loc[["patient_dice_mean", "patient_dice_median", "slice_dice_mean"]].T.round(3)"""),
        md("""
A cut-off belongs to the data it was chosen on. On the real scans the lower one found more of
the faint tumours that the model half sees (the recipe's weak point). The synthetic tumours are
not faint in the same way, so here it may gain nothing, or even cost a little. Choose such
settings on validation patients of your own data, never on the test patients, and report what
they did there."""),
        md("""
## Best and worst patients
Each patient's largest tumour slice, truth in green, prediction in red."""),
        code("""
ranked = patients.sort_values("dice")
for patient in (ranked.index[-1], ranked.index[0]):
    slices = [r for r in test_records if r.patient_id == patient]
    chosen = max(slices, key=lambda r: r.tumour_pixels)
    image, truth = data.read_image(chosen.image_path), data.read_mask(chosen.mask_path)
    visualize.show_prediction(image, truth, inference.predict(model, image),
                              title=f"{patient}, slice {chosen.slice_index}",
                              dice=patients.loc[patient, "dice"])
    plt.show()"""),
        md("""
## Failure analysis
Small tumours are hard (a few pixels wrong is a large share of them), and empty slices can only
lose, through false positives."""),
        code("""
slices = pd.DataFrame(result.slices)
with_tumour, empty = slices[slices.true_pixels > 0], slices[slices.true_pixels == 0]
print(f"empty slices with a false positive: {(empty.predicted_pixels > 0).mean():.1%} "
      f"of {len(empty)}; slices with tumour found: {(with_tumour.predicted_pixels > 0).mean():.1%}")
figure, axis = plt.subplots(figsize=(6, 3.5))
axis.scatter(with_tumour.true_pixels, with_tumour.dice, s=10)
axis.set(xscale="log", xlabel="tumour pixels on the slice", ylabel="slice Dice", ylim=(0, 1),
         title="Small tumours score lower")
axis.grid(alpha=0.3)
plt.show()"""),
        md("""
## Look for yourself
Browse the test patients with the model's predictions (live notebook; static otherwise)."""),
        code(
            "visualize.slice_browser(test_records, predict=lambda image: inference.predict(model, image))"
        ),
    ],
)


def build(name: str) -> nbformat.NotebookNode:
    title, learn, cells = LESSONS[name]
    notebook = nbformat.v4.new_notebook()
    notebook.cells = header(name, title, learn) + cells
    notebook.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    }
    return notebook


def main() -> None:
    for name in LESSONS:
        nbformat.write(build(name), NOTEBOOKS / f"{name}.ipynb")
        print("wrote", NOTEBOOKS / f"{name}.ipynb")


if __name__ == "__main__":
    main()
