"""Training: the run folder, exact resume, a real kill -9 mid-training, budget and schedule."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import tensorflow_only

from pspseg_utils import data, inference, training
from pspseg_utils.models import PSPNet
from pspseg_utils.training import TrainConfig

TINY = dict(
    run_eagerly=True,  # tracing a graph costs more than these few tiny steps
    image_size=48,
    head_channels=8,
    batch_size=4,
    steps_per_epoch=2,
    precision="float32",
    learning_rate=1e-3,
    val_fraction=0.2,
    test_fraction=0.2,
)


def _weights(path):
    return keras.saving.load_model(path, safe_mode=True).get_weights()


def _log_epochs(run_dir):
    with (run_dir / "log.csv").open() as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_train_writes_a_complete_run_folder(tiny_kaggle_dir, tiny_records, tmp_path):
    result = training.train(
        tiny_kaggle_dir, tmp_path, TrainConfig(epochs=2, **TINY), progress=False
    )

    assert result.epochs_done == 2
    for name in ("config.json", "split.json", "last.keras", "best.keras", "best.json", "log.csv"):
        assert (tmp_path / name).exists(), name
    split = json.loads((tmp_path / "split.json").read_text())
    subsets = [set(split[k]) for k in ("train", "val", "test")]
    assert all(subsets) and not (
        subsets[0] & subsets[1] or subsets[0] & subsets[2] or subsets[1] & subsets[2]
    )
    assert set().union(*subsets) == {r.patient_id for r in tiny_records}
    config, data_dir = training.load_run_config(tmp_path)
    assert config.epochs == 2 and data_dir == str(tiny_kaggle_dir.resolve())
    model = keras.saving.load_model(tmp_path / "best.keras", safe_mode=True)
    assert model.aux_loss_weight == 0.4  # trained with the auxiliary head, by default
    assert model.skip_channels == 32  # and the stride-4 decoder
    assert _log_epochs(tmp_path) == [0, 1]
    assert np.isfinite(result.history["loss"]).all()


def test_train_with_context_slices_gives_a_model_of_slices_and_their_neighbours(
    tiny_kaggle_dir, tiny_records, tmp_path
):
    config = TrainConfig(epochs=1, context_slices=1, aux_loss_weight=0, **TINY)
    training.train(tiny_kaggle_dir, tmp_path, config, progress=False)
    model = keras.saving.load_model(tmp_path / "best.keras", safe_mode=True)
    assert model.input_shape == (None, 48, 48, 9)
    assert training.load_run_config(tmp_path)[0].context_slices == 1
    # It predicts a file from the files beside it, at the file's own size.
    assert inference.predict(model, tiny_records[1].image_path).shape == (64, 64)


@pytest.mark.parametrize(
    "averaging",
    [{}, pytest.param(dict(ema_momentum=0.5, precise_bn_batches=2), marks=pytest.mark.slow)],
    ids=["plain", "ema-precise-bn"],
)
def test_resumed_run_matches_an_uninterrupted_one(tiny_kaggle_dir, tmp_path, averaging):
    """Same batches, same optimizer state (weight averages included), the same BatchNorm batches:
    the same weights. Dropout is off because Keras does not save a dropout layer's
    random-generator state in a checkpoint."""
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    exact = dict(TINY, dropout_rate=0.0, **averaging)
    training.train(tiny_kaggle_dir, straight, TrainConfig(epochs=2, **exact), progress=False)
    # Interrupted after its first epoch (by a tiny time budget), with the same plan of 2 epochs.
    cut_short = TrainConfig(epochs=2, time_budget_minutes=1e-4, **exact)
    assert training.train(tiny_kaggle_dir, interrupted, cut_short, progress=False).epochs_done == 1
    resumed = training.train(
        tiny_kaggle_dir, interrupted, TrainConfig(epochs=2, **exact), progress=False
    )

    assert resumed.epochs_done == 2
    assert _log_epochs(interrupted) == [0, 1]
    for a, b in zip(
        _weights(straight / "last.keras"), _weights(interrupted / "last.keras"), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_best_checkpoint_holds_the_averaged_weights_and_last_the_raw_ones(
    tiny_kaggle_dir, tmp_path
):
    config = TrainConfig(epochs=1, ema_momentum=0.5, **TINY)
    result = training.train(tiny_kaggle_dir, tmp_path, config, progress=False)
    # After fit, Keras puts the averages into the model; the one epoch is also the best one.
    averaged = [v.numpy() for v in result.model.trainable_variables]
    best = keras.saving.load_model(tmp_path / "best.keras", safe_mode=True)
    last = keras.saving.load_model(tmp_path / "last.keras", safe_mode=True)
    for a, b in zip(averaged, [v.numpy() for v in best.trainable_variables], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    raw = [v.numpy() for v in last.trainable_variables]
    assert any(not np.allclose(a, r) for a, r in zip(averaged, raw, strict=True))


def test_precise_batch_norm_averages_the_batch_statistics():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.9, name="bn")(inputs))
    # Batch means (1, 3) and (3, 5), variances (0, 0) and (1, 1): averages (2, 4) and (0.5, 0.5).
    batches = [np.array([[1.0, 3.0], [1.0, 3.0]]), np.array([[2.0, 4.0], [4.0, 6.0]])]
    callback = training.PreciseBatchNorm(lambda epoch: iter(batches))
    callback.set_model(model)
    callback.on_epoch_begin(0)
    callback.on_test_begin()
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), [2.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), [0.5, 0.5], rtol=1e-6)
    assert bn.momentum == 0.9  # put back for training


def test_finished_run_is_not_trained_again(tiny_kaggle_dir, tmp_path):
    training.train(tiny_kaggle_dir, tmp_path, TrainConfig(epochs=1, **TINY), progress=False)
    before = (tmp_path / "last.keras").stat().st_mtime_ns
    again = training.train(tiny_kaggle_dir, tmp_path, TrainConfig(epochs=1, **TINY), progress=False)
    assert again.epochs_done == 1
    assert (tmp_path / "last.keras").stat().st_mtime_ns == before


def test_time_budget_stops_after_the_epoch(tiny_kaggle_dir, tmp_path):
    config = TrainConfig(epochs=5, time_budget_minutes=1e-4, **TINY)
    result = training.train(tiny_kaggle_dir, tmp_path, config, progress=False)
    assert result.epochs_done == 1
    assert "time budget" in result.stopped_early
    assert _log_epochs(tmp_path) == [0]


@pytest.mark.slow
def test_killed_training_resumes_without_losing_a_finished_epoch(tiny_kaggle_dir, tmp_path):
    """Kill -9 a real training process twice, at different moments, then finish the run."""
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "pspseg_utils", "train", "--data", str(tiny_kaggle_dir),
        "--out", str(run_dir), "--quick", "--epochs", "12", "--precision", "float32",
    ]  # fmt: skip
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for delay in (0.0, 0.7):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 240
        last = run_dir / "last.keras"
        seen = last.stat().st_mtime_ns if last.exists() else None
        # Wait for a new checkpoint, then kill at `delay` seconds into the next epoch.
        while time.monotonic() < deadline and process.poll() is None:
            if last.exists() and last.stat().st_mtime_ns != seen:
                break
            time.sleep(0.05)
        time.sleep(delay)
        assert process.poll() is None, "training ended before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        assert last.exists(), "no checkpoint was written before the kill"
        model = keras.saving.load_model(last, safe_mode=True)  # never a half-written file
        assert model.optimizer.iterations.numpy() > 0

    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "Resuming" in finished.stdout
    assert _log_epochs(run_dir) == list(range(12))
    steps = training.load_run_config(run_dir)[0].steps_per_epoch
    final = keras.saving.load_model(run_dir / "last.keras", safe_mode=True)
    assert final.optimizer.iterations.numpy() == 12 * steps


@pytest.mark.parametrize(
    ("schedule", "step", "expected"),
    [
        ("poly", 0, 1e-3),  # starts at the peak
        ("poly", 50, 1e-3 * 0.5**0.9),  # (1 - 50/100) ** 0.9 = 0.5359
        ("poly", 100, 0.0),  # ends at zero
        ("cosine", 50, 0.5e-3),  # (1 + cos(pi/2)) / 2 = 0.5
        ("constant", 70, 1e-3),
    ],
)
def test_learning_rate_schedules(schedule, step, expected):
    rate = training.learning_rate_schedule(TrainConfig(learning_rate=1e-3, schedule=schedule), 100)
    value = rate(step) if callable(rate) else rate
    assert float(value) == pytest.approx(expected, rel=1e-5, abs=1e-9)


@tensorflow_only
def test_decay_schedule_length_can_change_after_tracing():
    import tensorflow as tf

    schedule = training.DecaySchedule(1e-3, 100)
    traced = tf.function(lambda step: schedule(step))  # as inside a compiled train step
    assert float(traced(50)) == pytest.approx(1e-3 * 0.5**0.9, rel=1e-5)
    schedule.set_total_steps(200)  # (1 - 50/200) ** 0.9 = 0.75 ** 0.9
    assert float(traced(50)) == pytest.approx(1e-3 * 0.75**0.9, rel=1e-5)
    assert float(traced(400)) == 0.0  # stays at zero past the end
    again = training.DecaySchedule.from_config(schedule.get_config())
    assert float(again(50)) == pytest.approx(1e-3 * 0.75**0.9, rel=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [(dict(kind="step"), "kind must be"), (dict(total_steps=0), "total_steps must be >= 1")],
)
def test_decay_schedule_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        training.DecaySchedule(1e-3, **{"total_steps": 10, **kwargs})


@pytest.mark.parametrize(
    ("elapsed", "epoch", "done", "expected"),
    [
        (100.0, 20.0, 2, 25),  # 500 s left / (1.05 x 20 s) = 23.8: 23 more
        (100.0, 500.0, 2, 2),  # not one more epoch fits
        (700.0, 20.0, 3, 3),  # already over the budget
    ],
)
def test_epochs_that_fit_a_600_second_budget(elapsed, epoch, done, expected):
    fitted = training.epochs_that_fit(
        budget_seconds=600.0, elapsed_seconds=elapsed, epoch_seconds=epoch, epochs_done=done
    )
    assert fitted == expected


def test_epochs_that_fit_rejects_a_zero_epoch_time():
    with pytest.raises(ValueError, match="epoch_seconds must be > 0, got 0"):
        training.epochs_that_fit(
            budget_seconds=60, elapsed_seconds=0, epoch_seconds=0, epochs_done=1
        )


def started_budget_callback(tmp_path, *, minutes, ticks, steps_per_epoch):
    """A FitScheduleToBudget over a 100-epoch schedule whose clock reads `ticks` in turn, as
    model.fit starts it; returns (callback, schedule, model)."""
    ticks = iter(ticks)
    schedule = training.DecaySchedule(1e-3, 100 * steps_per_epoch)
    callback = training.FitScheduleToBudget(
        minutes, schedule=schedule, steps_per_epoch=steps_per_epoch,
        plan_path=tmp_path / "plan.json", clock=lambda: next(ticks),
    )  # fmt: skip
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.stop_training = False
    callback.set_model(model)
    callback.set_params({"epochs": 100})
    callback.on_train_begin()
    return callback, schedule, model


def run_epochs(callback, epochs):
    for epoch in epochs:
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch)
        yield epoch


def test_fit_schedule_to_budget_times_the_second_epoch(tmp_path):
    """A 10-minute budget; epoch 1 takes 130 s (tracing), epoch 2 takes 20 s: 450 s are left,
    which hold 21 more epochs of 21 s (20 s + 5%): 23 in all, of the 100 planned."""
    # Train begins; epoch 1 begins, ends; epoch 2 begins, ends; epoch 23 begins, ends (well
    # inside the budget, so that only the plan stops the run).
    callback, schedule, model = started_budget_callback(
        tmp_path, minutes=10, ticks=[0.0, 0.0, 130.0, 130.0, 150.0, 400.0, 420.0],
        steps_per_epoch=10,
    )  # fmt: skip
    list(run_epochs(callback, (0, 1)))
    assert json.loads((tmp_path / "plan.json").read_text()) == {"epochs": 23, "budget_minutes": 10}
    assert int(schedule.total_steps.numpy()) == 230
    assert not model.stop_training
    list(run_epochs(callback, (22,)))  # the 23rd epoch
    assert model.stop_training


def test_fit_schedule_to_budget_plans_again_from_the_median_epoch(tmp_path):
    """A 10-minute budget; epoch 1 traces (130 s), epoch 2 is slowed (40 s), the rest take 20 s.
    The plan follows the median epoch time while in its first half."""
    ticks = [0.0, 0.0, 130.0, 130.0, 170.0, 170.0, 190.0, 190.0, 210.0, 210.0, 230.0]
    callback, schedule, _ = started_budget_callback(
        tmp_path, minutes=10, ticks=ticks, steps_per_epoch=10
    )
    plans = [callback.planned_epochs for _ in run_epochs(callback, range(5))]
    # After epoch 2: 430 s left / (1.05 x 40 s) -> 10 more. Epoch 3: median 30 s, 410 s left
    # -> 13 more. Epoch 4: median 20 s, 390 s left -> 18 more. Epoch 5: 370 s -> 17 more.
    assert plans == [None, 12, 16, 22, 22]
    assert json.loads((tmp_path / "plan.json").read_text())["epochs"] == 22
    assert int(schedule.total_steps.numpy()) == 220


def test_fit_schedule_to_budget_keeps_the_plan_in_its_second_half(tmp_path):
    """Planned 4 epochs (an 80 s epoch 2 ends at 90 s of a 5-minute budget: 210 s hold 2 more);
    epoch 3 takes 1 s, which would allow more, but 3 > 4 / 2: the plan stays, and the run stops
    after epoch 4."""
    callback, schedule, model = started_budget_callback(
        tmp_path, minutes=5, ticks=[0.0, 0.0, 10.0, 10.0, 90.0, 90.0, 91.0, 91.0, 92.0],
        steps_per_epoch=1,
    )  # fmt: skip
    stops = [model.stop_training for _ in run_epochs(callback, range(4))]
    assert stops == [False, False, False, True]
    assert callback.planned_epochs == 4 and int(schedule.total_steps.numpy()) == 4


def test_fit_schedule_to_budget_ends_sooner_when_late_epochs_turn_slow(tmp_path):
    """Planned 4 epochs as above; epoch 3 then takes 160 s and ends at 250 s: the median epoch
    (120 s) leaves room for no 4th, so the schedule now ends after epoch 3, where the run stops."""
    callback, schedule, model = started_budget_callback(
        tmp_path, minutes=5, ticks=[0.0, 0.0, 10.0, 10.0, 90.0, 90.0, 250.0], steps_per_epoch=1
    )
    plans = [callback.planned_epochs for _ in run_epochs(callback, range(3))]
    assert plans == [None, 4, 3]
    assert model.stop_training and int(schedule.total_steps.numpy()) == 3
    assert json.loads((tmp_path / "plan.json").read_text())["epochs"] == 3


def test_a_resumed_run_keeps_the_epochs_it_fitted_to_its_budget(tiny_kaggle_dir, tmp_path):
    first = TrainConfig(epochs=4, time_budget_minutes=1e-4, **TINY)  # stops after one epoch
    assert training.train(tiny_kaggle_dir, tmp_path, first, progress=False).epochs_done == 1
    (tmp_path / "schedule.json").write_text('{"epochs": 2}')  # as if epoch 2 had been timed
    resumed = TrainConfig(epochs=4, time_budget_minutes=60, **TINY)
    result = training.train(tiny_kaggle_dir, tmp_path, resumed, progress=False)
    assert result.epochs_done == 2
    assert float(result.model.optimizer.learning_rate) == 0.0  # the poly schedule's end

    fresh = training.train(tiny_kaggle_dir, tmp_path, first, resume=False, progress=False)
    assert fresh.epochs_done == 1 and not (tmp_path / "schedule.json").exists()


def test_a_budgeted_run_writes_its_plan(tiny_kaggle_dir, tmp_path):
    config = TrainConfig(epochs=3, time_budget_minutes=60, **TINY)  # 3 epochs fit in an hour
    result = training.train(tiny_kaggle_dir, tmp_path, config, progress=False)
    assert result.epochs_done == 3 and result.stopped_early is None
    assert json.loads((tmp_path / "schedule.json").read_text())["epochs"] == 3


def test_a_given_split_is_the_runs_split(tiny_kaggle_dir, tiny_records, tmp_path):
    patients = sorted({r.patient_id for r in tiny_records})
    split = {"train": patients[:4], "val": patients[4:5], "test": patients[5:]}
    config = TrainConfig(epochs=1, **TINY)
    training.train(tiny_kaggle_dir, tmp_path, config, progress=False, split=split)
    assert training.load_split(tmp_path) == split
    with pytest.raises(ValueError, match="trained with another split"):
        other = {"train": patients[1:5], "val": patients[:1], "test": patients[5:]}
        training.train(tiny_kaggle_dir, tmp_path, config, progress=False, split=other)


def test_a_split_missing_a_patient_is_refused(tiny_kaggle_dir, tiny_records, tmp_path):
    patients = sorted({r.patient_id for r in tiny_records})
    split = {"train": patients[:3], "val": patients[3:4], "test": patients[4:5]}
    with pytest.raises(ValueError, match=f"differs on \\['{patients[5]}'\\]"):
        training.train(tiny_kaggle_dir, tmp_path, TrainConfig(**TINY), progress=False, split=split)
    assert not tmp_path.joinpath("config.json").exists()


def test_precision_choice_on_cpu(monkeypatch):
    assert training.choose_precision("float32") == "float32"
    monkeypatch.setattr(training.hardware, "_cpu_has_bfloat16", lambda: False)
    assert training.choose_precision("auto") == "float32"
    monkeypatch.setattr(training.hardware, "_cpu_has_bfloat16", lambda: True)
    assert training.choose_precision("auto") == "mixed_bfloat16"


@pytest.mark.parametrize(
    ("capability", "expected"),
    [((7, 5), "mixed_float16"), ((8, 0), "mixed_bfloat16"), ((6, 1), "float32")],
    ids=["T4", "A100", "P100"],
)
def test_precision_choice_on_a_gpu(monkeypatch, capability, expected):
    monkeypatch.setattr(training.hardware, "gpu_capability", lambda: capability)
    assert training.choose_precision("auto") == expected


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="asks TensorFlow")
def test_gpu_capability_as_tensorflow_reports_it(monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"])
    details = {"compute_capability": (7, 5)}
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda gpu: details)
    assert training.hardware.gpu_capability() == (7, 5)
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    assert training.hardware.gpu_capability() is None


def test_mixed_float16_training_scales_its_loss_and_saves_a_float32_output(
    tiny_kaggle_dir, tmp_path
):
    config = TrainConfig(epochs=1, **{**TINY, "precision": "mixed_float16"})
    result = training.train(tiny_kaggle_dir, tmp_path, config, progress=False)
    assert isinstance(result.model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(result.history["loss"]).all()
    reloaded = inference.load_model(tmp_path)
    probabilities = reloaded.predict(np.zeros((1, 48, 48, 3), "float32"), verbose=0)
    assert probabilities.dtype == np.float32


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("schedule", "step"),
        ("precision", "float64"),
        ("epochs", 0),
        ("learning_rate", -1.0),
        ("aux_loss_weight", -0.4),
        ("skip_channels", -1),
        ("ema_momentum", 1.0),
        ("precise_bn_batches", -1),
        ("missing_sequence_rate", 1.5),
        ("scanner_variation_rate", -0.1),
        ("max_gamma", 0.5),
        ("context_slices", -1),
    ],
)
def test_bad_config_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_oversampling_adds_tumour_slices_only():
    images = np.zeros((4, 2, 2, 3), np.uint8)
    masks = np.array([[[0, 0], [0, 0]], [[1, 0], [0, 0]], [[0, 0], [0, 0]], [[0, 1], [1, 0]]])
    more_images, more_masks = training.run._oversample(images, masks, 1.0, seed=0)
    # 2 tumour slices x factor 1 = 2 extra copies, each with tumour
    assert len(more_images) == len(more_masks) == 6
    assert more_masks[4:].reshape(2, -1).any(axis=1).all()


def test_run_folder_from_before_the_auxiliary_head_and_averaging_resumes_without_them(tmp_path):
    saved = {"config": {"epochs": 3}, "data_dir": "data"}  # none of the later fields recorded
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config, _ = training.load_run_config(tmp_path)
    assert (config.aux_loss_weight, config.ema_momentum, config.precise_bn_batches) == (0, None, 0)
    assert config.missing_sequence_rate == 0.0 and config.context_slices == 0
    assert config.skip_channels == 0 and config.max_gamma == 1.25
    assert config.epochs == 3


def test_resuming_from_another_network_says_what_to_do(tmp_path):
    small = dict(input_shape=(48, 48, 3), backbone="mobilenetv2_035", head_channels=8)
    without_aux = PSPNet(**small)
    without_aux.compile(optimizer="adam", loss="binary_crossentropy")
    without_aux.save(tmp_path / "last.keras")
    with_aux = PSPNet(**small, aux_loss_weight=0.4)
    with_aux.compile(optimizer="adam", loss="binary_crossentropy")
    with pytest.raises(ValueError, match=r"last\.keras holds a different network.*--no-resume"):
        training.restore_checkpoint(with_aux, tmp_path / "last.keras")


@pytest.mark.parametrize("gpu", [False, True])
def test_the_shipped_recipes_train_on_every_patient_but_the_validation_ones(gpu, tiny_records):
    config = training.default_config(gpu=gpu)
    split = data.split_patients(
        tiny_records, val_fraction=config.val_fraction, test_fraction=config.test_fraction
    )
    assert split["test"] == [] and len(split["val"]) == 1
    assert len(split["train"]) == len({r.patient_id for r in tiny_records}) - 1


def test_a_new_schedule_length_reaches_the_compiled_train_step():
    # Traced or compiled with a schedule that has barely begun, then ended after one step: the
    # next step's learning rate is 0, so the weight must not move (on JAX only if the step
    # was compiled again).
    schedule = training.DecaySchedule(1.0, 10**6)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="mse")
    x, y = np.ones((1, 1), "float32"), np.ones((1, 1), "float32")
    model.train_on_batch(x, y)
    moved = keras.ops.convert_to_numpy(model.weights[0]).copy()
    assert moved.item() != 0.0
    training.callbacks.set_schedule_length(model, schedule, 1)
    model.train_on_batch(x, y)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.weights[0]), moved)


# --- what fit reads, on every backend --------------------------------------------------------


def test_batch_sequence_gives_the_tf_data_batches(tiny_arrays_for_feeding):
    # The PyDataset that JAX and PyTorch runs read gives tf.data's batches, bit for bit, from
    # the same batch on: the same order, the same augmentation, the same resume.
    from pspseg_utils.training.feeding import BatchSequence

    images, masks = tiny_arrays_for_feeding
    settings = dict(batch_size=4, augment=True, shuffle=True, repeat=True, seed=7,
                    missing_sequence_rate=0.5, drop_remainder=True)  # fmt: skip
    expected = list(data.make_dataset(images, masks, first_batch=2, **settings).take(3))
    sequence = BatchSequence(data.SliceBatches(images, masks, workers=2, **settings), first_batch=2)
    assert sequence.num_batches is None
    for index, (x, y) in enumerate(expected):
        got_x, got_y = sequence[index]
        np.testing.assert_array_equal(got_x, x.numpy())
        np.testing.assert_array_equal(got_y, y.numpy())


def test_batch_sequence_of_one_pass_counts_from_its_first_batch(tiny_arrays_for_feeding):
    from pspseg_utils.training.feeding import BatchSequence

    batches = data.SliceBatches(*tiny_arrays_for_feeding, batch_size=5)  # 12 slices: 3 batches
    assert BatchSequence(batches, first_batch=1).num_batches == 2
    assert [len(x) for x, _ in BatchSequence(batches)] == [5, 5, 2]
    with pytest.raises(ValueError, match=r"first_batch must be in \[0, 3\), got 3"):
        BatchSequence(batches, first_batch=3)


# Run with KERAS_BACKEND=jax and TensorFlow made unimportable, as on the GPU machines: train
# with a time budget, resume, then evaluate the test patients.
_WITHOUT_TENSORFLOW = """
import importlib.abc, json, sys

class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] == "tensorflow":
            raise ImportError("no TensorFlow on this machine")

sys.meta_path.insert(0, NoTensorFlow())
from pspseg_utils import data, evaluation, inference, training
data_dir, run_dir, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = training.TrainConfig(**settings)
training.train(data_dir, run_dir, config, progress=False)
more = training.TrainConfig(**{**settings, "epochs": settings["epochs"] + 1})
result = training.train(data_dir, run_dir, more, progress=False)
records = data.select_patients(data.find_slices(data_dir, progress=False),
                               training.checkpoints.load_split(run_dir)["test"])
scores = evaluation.evaluate(inference.load_model(run_dir), records, progress=False)
print(json.dumps({"epochs": result.epochs_done, "patients": len(scores.patients),
                  "tensorflow": "tensorflow" in sys.modules}))
"""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_jax_trains_resumes_and_evaluates_without_tensorflow(tiny_kaggle_dir, tmp_path):
    settings = {**TINY, "epochs": 1, "time_budget_minutes": 5.0}
    environment = {**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": ""}
    finished = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TENSORFLOW, str(tiny_kaggle_dir), str(tmp_path / "run"),
         json.dumps(settings)],
        env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    summary = json.loads(finished.stdout.strip().splitlines()[-1])
    assert summary == {"epochs": 2, "patients": 1, "tensorflow": False}
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["0", "1"]


@pytest.fixture(scope="module")
def tiny_arrays_for_feeding(tiny_records):
    return data.load_arrays(tiny_records[:12], progress=False)
