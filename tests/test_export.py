"""Tests of pspseg_utils.export: the exported `.keras` file reloads in a fresh process and the
SavedModel serves, both giving the same output as the model that was exported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from pspseg_utils import export
from pspseg_utils.models import build_pspnet

SIZE = 48

# Loads the exported file with nothing but Keras and the package, as a user's notebook would.
RELOAD = textwrap.dedent(
    """
    import sys
    import keras, numpy as np
    import pspseg_utils.models  # registers the PSPNet class and its layers
    model = keras.saving.load_model(sys.argv[1], safe_mode=True)
    np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
    """
)


def _run_folder(root, model: keras.Model):
    (root / "run").mkdir()
    model.save(root / "run" / "best.keras")
    return root / "run"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(model, images, its outputs, export folder, sizes) for a one-layer stand-in model, compiled
    and with optimizer state, saved as run/best.keras and exported: seconds, not a minute."""
    root = tmp_path_factory.mktemp("export_small")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(
        inputs, keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs)
    )
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.optimizer.build(model.trainable_variables)
    images = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    model.fit(images, np.ones((2, SIZE, SIZE, 1)), epochs=1, verbose=0)  # optimizer state != 0
    expected = model.predict(images, verbose=0)
    sizes = export.export(_run_folder(root, model), root / "out")
    return model, images, expected, root, sizes


@pytest.fixture(scope="module")
def pspnet(tmp_path_factory):
    """The same for a tiny PSPNet (its SavedModel export traces the whole network: ~30 s)."""
    root = tmp_path_factory.mktemp("export_pspnet")
    keras.utils.set_random_seed(0)
    model = build_pspnet(
        (SIZE, SIZE, 3), 1, backbone="mobilenetv2", head_channels=8, backbone_weights=None
    )
    images = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    expected = model.predict(images, verbose=0)
    sizes = export.export(_run_folder(root, model), root / "out")
    return model, images, expected, root, sizes


@pytest.mark.parametrize("which", ["small", pytest.param("pspnet", marks=pytest.mark.slow)])
def test_export_writes_both_formats_with_sizes(which, request):
    _, _, _, root, sizes = request.getfixturevalue(which)
    out = root / "out"
    assert set(sizes) == {"model.keras", "saved_model"}
    assert (out / "model.keras").is_file()
    assert (out / "saved_model" / "saved_model.pb").is_file()
    assert sizes["model.keras"] == (out / "model.keras").stat().st_size > 0
    assert sizes["saved_model"] == export.folder_size(out / "saved_model") > 0


@pytest.mark.slow
def test_exported_pspnet_reloads_in_a_fresh_process(pspnet):
    _, images, expected, root, _ = pspnet
    np.save(root / "images.npy", images)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            RELOAD,
            str(root / "out" / "model.keras"),
            str(root / "images.npy"),
            str(root / "outputs.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_allclose(np.load(root / "outputs.npy"), expected, atol=1e-6)


@pytest.mark.parametrize("which", ["small", pytest.param("pspnet", marks=pytest.mark.slow)])
def test_exported_saved_model_serves_the_same_output(which, request):
    _, images, expected, root, _ = request.getfixturevalue(which)
    served = tf.saved_model.load(str(root / "out" / "saved_model"))
    assert "serve" in served.signatures
    outputs = served.serve(tf.constant(images))
    np.testing.assert_allclose(outputs.numpy(), expected, atol=1e-5)


def test_exported_keras_file_has_the_weights_but_no_optimizer_state(small):
    model, images, expected, root, _ = small
    checkpoint = keras.saving.load_model(root / "run" / "best.keras", safe_mode=True)
    assert checkpoint.optimizer.iterations.numpy() == 1  # the run folder's file has it ...
    exported = keras.saving.load_model(root / "out" / "model.keras", safe_mode=True)
    assert getattr(exported, "optimizer", None) is None  # ... the exported file does not
    np.testing.assert_allclose(exported.predict(images, verbose=0), expected, atol=1e-6)


def test_export_without_a_model_says_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="train first"):
        export.export(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
