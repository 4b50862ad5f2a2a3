"""Fixtures shared by every test file: one tiny synthetic dataset per test session.

    tiny_kaggle_dir    6 synthetic patients, 6..8 slices each, 64 x 64, Kaggle layout (kaggle_3m/)
    tiny_records       its checked SliceRecords (data.find_slices), sorted by (patient, slice)
    tiny_article_dir   the same slices converted by data.prepare: images/ + masks/ PNGs, masks 0/1

They are session-scoped and shared: treat them as read-only (copy them before breaking anything).
"""

from __future__ import annotations

import os

# Before anything imports TensorFlow: keep its C++ start-up chatter out of the test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402

from pspseg_utils import data  # noqa: E402
from pspseg_utils.models import backbones  # noqa: E402
from pspseg_utils.synthetic import generate_dataset  # noqa: E402

# TrainConfig settings of a run that takes seconds on the tiny dataset (eager: tracing the graph
# costs more than these few steps); tests import it as `from conftest import TINY_TRAINING`.
TINY_TRAINING = dict(
    run_eagerly=True,
    image_size=48,
    head_channels=8,
    batch_size=4,
    steps_per_epoch=1,
    epochs=1,
    precision="float32",
    val_fraction=0.2,
    test_fraction=0.2,
)

# A test of TensorFlow's own parts (tf.data, GradientTape, SavedModel): skipped on the other
# backends, which CI also runs the suite on (`python3 dev.py jax`).
tensorflow_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TensorFlow's own parts"
)

TINY_PATIENTS = 6
TINY_IMAGE_SIZE = 64
TINY_SLICES_PER_PATIENT = (6, 8)


@pytest.fixture(scope="session")
def tiny_kaggle_dir(tmp_path_factory):
    """Path of a `kaggle_3m` folder: 6 patients x 6..8 slices of 64 x 64, seed 0."""
    return generate_dataset(
        tmp_path_factory.mktemp("tiny_kaggle"),
        num_patients=TINY_PATIENTS,
        seed=0,
        image_size=TINY_IMAGE_SIZE,
        slices_per_patient=TINY_SLICES_PER_PATIENT,
        progress=False,
    )


@pytest.fixture(scope="session")
def tiny_records(tiny_kaggle_dir):
    """The SliceRecords of `tiny_kaggle_dir`, as `data.find_slices` returns them."""
    return data.find_slices(tiny_kaggle_dir, progress=False)


@pytest.fixture(scope="session")
def tiny_article_dir(tiny_kaggle_dir, tmp_path_factory):
    """Path of a folder holding images/<patient>_<n>.png and masks/<patient>_<n>.png (0/1)."""
    out_dir = tmp_path_factory.mktemp("tiny_article")
    data.prepare(tiny_kaggle_dir, out_dir, progress=False)
    return out_dir


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and an empty Keras weights cache, on any machine."""

    def refuse(*args, **kwargs):
        raise OSError("simulated: no network")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(backbones.socket, "create_connection", refuse)
