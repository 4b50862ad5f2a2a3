# %% [markdown]
# # Lesson 2: PSPNet, step by step
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/pspseg/pspseg/blob/v0.2.0/notebooks/02_architecture.ipynb)
#
# **You will learn**
#
# - what semantic segmentation asks of a network
# - the whole network at a glance, drawn from its own layers
# - dilated convolutions, the output stride, and how coarse its grid is
# - the pyramid pooling module, built cell by cell
# - the three backbones' size and speed
# - why the recipe adds a decoder at stride 4

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
# ## Semantic segmentation in brief
# A segmenter labels every pixel. It needs two things that pull apart: fine detail (where is the
# edge?) and context (is this bright blob a tumour or a vessel?). PSPNet (Zhao et al. 2017) keeps
# detail with a *dilated* backbone and adds context with *pyramid pooling*.

# %% [markdown]
# ## The whole network at a glance
# The network lesson 3 trains, drawn from its own layers: each box is a step, with the shape of
# what it outputs (height x width x channels). The backbone shrinks the slice by the output
# stride, the pyramid pools its features into 1x1, 2x2, 3x3 and 6x6 bins, and the head
# classifies each cell of the feature map. The auxiliary head (used only while training) and
# the stride-4 decoder are the recipe's additions; the sections below take each part in turn.

# %%
settings = {**ps.config.model_settings(CONFIG), "backbone_weights": None}  # shapes need no weights
recipe_model = ps.models.build_pspnet((CONFIG.image_size, CONFIG.image_size, 3), **settings)
visualize.show_architecture(recipe_model)
plt.show()

# %% [markdown]
# ## Backbone and output stride
# Classification networks shrink the image 32 times. PSPNet stops shrinking at 8 (the *output
# stride*) by replacing the last strides with dilated convolutions, which see as far without
# losing resolution. A 3x3 convolution at dilation r spaces its 9 taps r pixels apart: it covers
# (3 - 1) x r + 1 pixels a side with the same 9 weights, and without a stride. The figure asks
# Keras' own `Conv2D` which input pixels it reads for one output pixel:

# %%
visualize.show_dilation(rates=(1, 2, 4))
plt.show()

# %% [markdown]
# Here is VGG16 at three output strides, on a 256 x 256 input:

# %% tags=["nbval-check-output"]
for output_stride in (32, 16, 8):
    backbone = ps.models.build_backbone("vgg16", input_shape=(256, 256, 3),
                                        output_stride=output_stride)
    print(f"output stride {output_stride:>2}: features {backbone.output.shape[1:]}")

# %% [markdown]
# Each feature describes a cell of stride x stride pixels. Below, the slice with the largest
# tumour (its outline in blue), at this profile's size, with the cells drawn over it at output
# stride 32 and at 8; beside each, the slice averaged per cell: all the detail that many values
# can place.

# %%
size = CONFIG.image_size
records = data.find_slices(DATA_DIR, progress=False)
example = max(records, key=lambda r: r.tumour_pixels)
images, truths = data.load_arrays([example], image_size=size, progress=False)
for output_stride in (32, 8):
    visualize.show_output_stride(images[0], output_stride, mask=truths[0], credit=CREDIT)
    plt.show()

# %% [markdown]
# ## The pyramid pooling module, cell by cell
# Pool the features into 1x1, 2x2, 3x3 and 6x6 bins, reduce each to a quarter of the channels
# with a 1x1 convolution, upsample back, and concatenate with the features.

# %% tags=["nbval-check-output"]
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
      "| equal:", ours.shape == library.shape)

# %% [markdown]
# Feature maps need not divide by the bins: adaptive bins overlap by a pixel where needed. The
# pooling is a matrix product; for 4 pixels into 3 bins each row averages one bin:

# %% tags=["nbval-check-output"]
print(ps.models.layers.adaptive_pooling_matrix(4, 3))

# %% [markdown]
# ## Does global context help? Measured, not assumed
# A 3x3 convolution at stride 8 sees a few dozen pixels. The 1x1 bin sees the whole slice: the
# network can tell "bright region inside the brain, one hemisphere" from "bright scalp edge".
# Whether that helps on these scans is a question for an experiment. The recipe was trained with
# and without its pyramid (`bins=()`: the head reads the backbone's features directly, 802,226
# parameters instead of 1,012,786), 16 epochs on each of 5 cross-validation folds, so each of
# the 40 development patients was scored by a model that never saw them:
#
# | 16 epochs a fold, 40 patients | mean per-patient Dice | median | worst 4 patients |
# | --- | --- | --- | --- |
# | with the pyramid (bins 1, 2, 3, 6) | 0.764 | 0.830 | 0.273 |
# | without it | 0.757 | 0.825 | 0.198 |
#
# Source: `python benchmarks/cross_validation.py --data ../shared/data/lgg_dev --fold K --epochs
# 16 --set max_gamma=2.0 --set bins=[]` for K = 0 to 4, against the same command without
# `bins=[]`; the lines are in `benchmarks/results/` (`cv_screen_16_epochs_*`). The pyramid helps
# a little, most on the hardest patients, but fold by fold the difference went both ways (+0.02,
# -0.03, -0.02, -0.004, -0.003 without it): a gain this small needs every patient to show. On
# scene parsing, where PSPNet was made, context decides between 150 classes; a brain slice at
# 128 px holds one scene, and the dilated backbone already sees much of it.

# %% [markdown]
# ## The backbones: size and speed
# VGG16 is the article's, ResNet50 the paper's, MobileNetV2 the one for laptops, and MobileNetV2
# at half width (`mobilenetv2_050`) the CPU recipe's. The cell builds each as a PSPNet at this
# profile's size and times two things on this machine, in float32, after a first call that
# traces the graph: a prediction of one slice, and a training step (forward, backward and update)
# on a batch of 8. A single run on a shared machine is a rough guide: timings vary by tens of
# percent from run to run (README, Performance).

# %%
import time


def milliseconds(step, *arguments, repeats=2):
    """Time `step(*arguments)`, once it has been called (and traced) a first time."""
    step(*arguments)
    start = time.perf_counter()
    for _ in range(repeats):
        step(*arguments)
    return (time.perf_counter() - start) / repeats * 1000


rng = np.random.default_rng(SEED)
slices = (rng.random((8, size, size, 3)) * 255).astype(np.float32)
masks = (rng.random((8, size, size, 1)) > 0.9).astype(np.float32)
for name in ("vgg16", "resnet50", "mobilenetv2", "mobilenetv2_050"):
    model = ps.models.build_pspnet((size, size, 3), 1, backbone=name, backbone_weights=None)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    predicting = milliseconds(model.predict_on_batch, slices[:1])
    training_step = milliseconds(model.train_on_batch, slices, masks)
    print(f"{name:>15}: {model.count_params() / 1e6:4.1f} M parameters; {predicting:5.0f} ms to "
          f"predict one slice, {training_step:5.0f} ms a training step of 8")

# %% [markdown]
# Here the half-width MobileNetV2 is the fastest of the four at both; by how much it beats the
# full width differs between the two measures, and from run to run. The README's Performance
# section measured training throughput with more care (`benchmarks/throughput.py`, several timed
# steps): there `mobilenetv2_050` trains about twice as fast as `mobilenetv2` (115 against 59.6
# slices a second at 128 px, batch 16, without the decoder, on an AMD EPYC in mixed bfloat16).

# %% [markdown]
# ## A forward pass on a slice
# The shapes tell the story: the mask comes back at the input's resolution, one probability of
# tumour per pixel. What an untrained network says is not noise but P = 0.5 everywhere: its
# classifier's logits (the values the final sigmoid turns into probabilities) are all close to 0,
# and sigmoid(0) = 0.5.

# %%
model = ps.models.build_pspnet((size, size, 3), 1, backbone=CONFIG.backbone,
                               head_channels=CONFIG.head_channels, backbone_weights=None)
probabilities = model.predict(images.astype("float32"), verbose=0)
print("input", images.shape, "-> output", probabilities.shape, f"in [{probabilities.min():.3f}, "
      f"{probabilities.max():.3f}]")
names = ("head_dropout", "head_classifier")  # what the classifier reads, what it outputs
features, logits = keras.Model(model.input, [model.get_layer(n).output for n in names])(
    images.astype("float32"))
print(f"features into the classifier: standard deviation {np.std(features):.2g}; "
      f"logits within +-{np.max(np.abs(logits)):.2g}")

# %% [markdown]
# Why so close to 0: the signal all but vanishes on its way through the untrained network, as the
# spread of the classifier's input shows. Keras starts each convolution from random weights drawn
# by Glorot's rule, which was worked out for layers without a ReLU, and each ReLU drops the
# negative half of the signal, so it shrinks layer after layer. BatchNorm could scale it up, but at
# inference it uses its running statistics, still at their starting values (mean 0, variance 1),
# so it passes the signal on unchanged. After dozens of layers next to nothing is left, the logits
# are near 0 whatever the slice, and the output is 0.5 everywhere. Training changes both: there
# BatchNorm normalises each batch by its own statistics, and the weights learn.

# %% [markdown]
# ## The auxiliary head
# The paper adds a second, smaller head on the stage before the last (deep supervision): while
# training, its loss, weighted 0.4, joins the main one and gives early layers a shorter path for
# their gradients. At inference the model returns the main output only.

# %%
auxiliary_features, _ = model.get_layer("backbone").output
main, auxiliary = model(images.astype("float32"), training=True)
print("training:  main", tuple(main.shape), "+ auxiliary", tuple(auxiliary.shape),
      "from features", tuple(auxiliary_features.shape[1:]))
print("inference:", tuple(model(images.astype("float32")).shape))

# %% [markdown]
# ## The decoder: a finer grid for small tumours
# At output stride 8 a 128-pixel slice becomes a 16 x 16 grid of features, each cell 8 x 8
# pixels. A tumour a dozen pixels across covers one or two cells, and upsampling the logits
# cannot draw its outline: even the true masks, averaged onto that grid and upsampled back,
# score a per-patient Dice of only 0.81 on the 40 development patients, against 0.93 on a 32 x 32
# grid (`benchmarks/resolution_ceiling.py`). So the recipe adds DeepLabV3+'s decoder
# (`skip_channels`): the head's features, upsampled 2x, meet the backbone's stride-4 features
# reduced to a few channels, and a 3x3 convolution classifies at stride 4. The PSPNet of the paper
# is `skip_channels=None`.

# %%
# The recipe's network, drawn at the top of the lesson, has the decoder.
for name in ("head_dropout", "head_skip_relu", "head_decoder_relu", "head_probabilities"):
    print(f"{name:>18}: {tuple(recipe_model.get_layer(name).output.shape[1:])}")

# %% [markdown]
# The slice on the decoder's grid: at stride 4, four times as many cells as at stride 8, each
# 4 x 4 pixels.

# %%
visualize.show_output_stride(images[0], 4, mask=truths[0], credit=CREDIT)
plt.show()

# %% [markdown]
# ## The pooled feature maps
# What each pyramid branch hands to the classifier: the same slice summarised on grids of 1x1,
# 2x2, 3x3 and 6x6 cells (each branch's most active channel, before upsampling). This network is
# untrained, so what a channel responds to means nothing yet: look at the grids. Lesson 4 draws
# the same maps from the trained network.

# %%
visualize.show_pooled_maps(model, images[0], credit=CREDIT)
plt.show()

# %% [markdown]
# ## Exercises
# Try each one in the empty cell, then run the solution below it (click to show its code). The
# solutions check themselves, so they also run when the course is tested.
#
# ### Exercise 1: predict the feature map
# VGG16 turned a 256 x 256 slice into features of shape (32, 32, 512) at output stride 8. What
# shape comes out for a 128 x 96 input at output stride 16? Write your guess, then run.

# %%
my_guess = None  # e.g. (4, 4, 256)

# %% tags=["solution"]
backbone = ps.models.build_backbone("vgg16", input_shape=(128, 96, 3), output_stride=16)
found = tuple(backbone.output.shape[1:])
print(f"features {found}; your guess {my_guess}")
assert found == (128 // 16, 96 // 16, 512)  # height and width divided by the stride

# %% [markdown]
# ### Exercise 2: pool into 3 bins by hand
# Take the 4 x 4 map `x` below. With 3 bins per side the bins cover pixels 0-1, 1-2 and 2-3 of
# each axis (they overlap, as the matrix printed above shows). Compute the 3 x 3 pooled map
# with NumPy slicing, then compare it with `ps.models.AdaptiveAveragePooling(3)` (it wants a
# batch and a channel axis: `x[None, :, :, None]`) and with the matrices
# `P @ x @ P.T`, where `P = ps.models.layers.adaptive_pooling_matrix(4, 3)`.

# %%
x = np.arange(16, dtype="float32").reshape(4, 4)
by_hand = None  # your code here: a 3 x 3 array

# %% tags=["solution"]
by_hand = np.array([[x[i:i + 2, j:j + 2].mean() for j in range(3)] for i in range(3)])
layer = np.asarray(ps.models.AdaptiveAveragePooling(3)(x[None, :, :, None]))[0, :, :, 0]
P = ps.models.layers.adaptive_pooling_matrix(4, 3)
print("by hand:\n", by_hand, "\nthe layer:\n", layer)
assert np.allclose(by_hand, layer) and np.allclose(by_hand, P @ x @ P.T)

# %% [markdown]
# ### Exercise 3: more bins, more parameters?
# Each branch reduces the C feature channels to C // (number of bins) with a 1x1 convolution
# without bias (C x C // n weights), then a BatchNorm (4 numbers per channel). Predict first:
# does a fifth bin add parameters to the pyramid? Then count them for bins (1,), (1, 2, 3, 6)
# and (1, 2, 3, 6, 8) on a (32, 32, 512) input, by hand and with `count_params()`.

# %%
counts = {}  # your code here: {bins: parameters}

# %% tags=["solution"]
inputs = keras.Input((32, 32, 512))
for bins in [(1,), (1, 2, 3, 6), (1, 2, 3, 6, 8)]:
    pyramid = keras.Model(inputs, ps.models.pyramid_pooling_module(inputs, bins=bins))
    reduced = 512 // len(bins)
    by_hand = len(bins) * (512 * reduced + 4 * reduced)
    counts[bins] = pyramid.count_params()
    print(f"bins {str(bins):>15}: {counts[bins]:7,} parameters (by hand {by_hand:7,}), "
          f"{pyramid.output.shape[-1]} channels out")
    assert counts[bins] == by_hand

# %% [markdown]
# Each branch gets fewer channels as bins are added, so the pyramid keeps about C x C weights
# whatever the bins; what changes is how much of the map's context each channel summarises.

# %% [markdown]
# ### Exercise 4: which grid for a small tumour? (open question)
# A tumour a dozen pixels across, in a slice of `CONFIG.image_size` pixels: how many feature
# cells does it cover at output stride 16, 8, and 4 (the decoder's)? Which would you change
# first to segment it better, and what would that cost in time and memory?

# %%
# Your thoughts, and any code to check them

# %% tags=["solution"]
for stride in (16, 8, 4):
    cells = CONFIG.image_size // stride
    print(f"stride {stride:>2}: a {cells} x {cells} grid, each cell {stride} x {stride} pixels; "
          f"a 12-pixel tumour spans about {12 / stride:.1f} cells")
print("One answer: the decoder first. It classifies on the stride-4 grid, 4 times as many cells "
      "as stride 8, for one 1x1 and one 3x3 convolution there. A smaller output stride instead "
      "runs the backbone's last stages on the larger map: 4 times their work and memory each "
      "time the stride halves.")

# %% [markdown]
# ## Check your understanding
# 1. What does the output stride count, and what do dilated convolutions let PSPNet keep?
# 2. A 3x3 convolution at dilation 4: how many input pixels does it read, and how wide is its
#    receptive field?
# 3. How many channels leave the pyramid for the (32, 32, 512) features above, and why that many?
# 4. Why does an untrained PSPNet predict 0.5 for every pixel?
# 5. What does the auxiliary head add while training, and what does the model return at
#    inference?
# 6. Which of the four backbones would you pick on a laptop, going by the timings above?
