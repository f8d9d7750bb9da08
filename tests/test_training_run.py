"""End-to-end runs of `python -m training.cifar` on tiny models and data."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from training_helpers import (
    CLASSES,
    REPO,
    heldout_accuracy,
    make_image_folder,
    run_args,
    run_module,
    snapshot,
    tar_with,
)

from keras_googlenet import HEADS
from keras_googlenet._internal import fileio
from training.callbacks import AtomicBackupAndRestore, AtomicModelCheckpoint
from training.cifar import main
from training.config import TrainConfig
from training.recipe import build_schedule, compile_model


def _history(run):
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished run (2 epochs, EMA, SavedModel export) shared by the tests below."""
    root = tmp_path_factory.mktemp("finished")
    data = make_image_folder(root / "data", per_class=10)
    args = run_args(root, "tiny", data, "--epochs", "2", "--ema")
    assert main(args) == 0
    return SimpleNamespace(root=root, data=data, args=args, run=root / "runs" / "tiny",
                           export=root / "saved" / "tiny")


@pytest.mark.slow
def test_run_folder_holds_config_history_logs_checkpoints_and_results(finished):
    run = finished.run
    names = {p.name for p in run.iterdir()}
    assert {"config.json", "labels.txt", "history.csv", "logs", "best.keras", "model.keras",
            "results.json"} <= names
    assert "backup" not in names and not [n for n in names if n.startswith(".tmp-")]

    config = TrainConfig.load(run / "config.json")
    assert (config.epochs, config.data, config.precision, config.jit) == (
        2, "folder", "float32", False)
    assert (run / "labels.txt").read_text().split() == list(CLASSES)

    rows = _history(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    for prefix in ("", "val_"):
        for head in HEADS:
            assert f"{prefix}{head}_accuracy" in rows[0] and f"{prefix}{head}_loss" in rows[0]
    assert float(rows[0]["learning_rate"]) > 0 and float(rows[0]["images_per_second"]) > 0
    elapsed = [float(r["elapsed_s"]) for r in rows]  # the run's wall time, for curves.png
    assert 0 < elapsed[0] < elapsed[1]
    from PIL import Image

    with Image.open(run / "curves.png") as image:  # redrawn after every epoch
        assert image.format == "PNG" and image.size == (1200, 800)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    expected_tags = {
        "train": {"epoch_main_accuracy", "epoch_aux1_loss", "epoch_learning_rate"},
        "validation": {"epoch_main_accuracy", "epoch_aux2_accuracy"},
    }
    for split, tags in expected_tags.items():
        events = EventAccumulator(str(run / "logs" / split))
        events.Reload()
        assert tags <= set(events.Tags()["tensors"])

    results = json.loads((run / "results.json").read_text())
    assert set(results["val_accuracy"]) == set(HEADS)
    assert all(0 <= v <= 1 for v in results["val_accuracy"].values())
    assert (results["num_train"], results["num_val"], results["epochs"]) == (27, 3, 2)
    assert results["train_images_per_second"] > 0 and results["wall_time_s"] > 0
    assert results["saved_model"] == str(finished.export)
    assert results["final_weights"] == "ema"
    # The reported accuracy is the saved (EMA) model's on the held-out split that
    # load_arrays rebuilds from config.json.
    accuracy, model, _ = heldout_accuracy(run / "model.keras", run / "config.json")
    assert accuracy == pytest.approx(results["val_accuracy"]["main"])
    assert list(model.output_names) == list(HEADS)
    best = keras.saving.load_model(run / "best.keras", compile=False)
    assert list(best.output_names) == list(HEADS)


def test_load_model_folder_rebuilds_the_run_model_with_its_weights(finished):
    from keras_googlenet import GoogLeNetConfig, load_model_folder

    run = finished.run
    config = TrainConfig.load(run / "config.json")
    assert GoogLeNetConfig.load(run / "model_config.json") == config.model_config(len(CLASSES))
    _, model, x_val = heldout_accuracy(run / "model.keras", run / "config.json")
    rebuilt = load_model_folder(run)
    assert list(rebuilt.output_names) == list(HEADS)
    for got, expected in zip(rebuilt.predict(x_val, verbose=0), model.predict(x_val, verbose=0)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_saved_model_takes_uint8_images_and_returns_probabilities(finished):
    import tensorflow as tf

    _, model, x_val = heldout_accuracy(finished.run / "model.keras", finished.run / "config.json")
    served = tf.saved_model.load(str(finished.export)).signatures["serving_default"]
    probabilities = next(iter(served(tf.constant(x_val, tf.uint8)).values())).numpy()
    assert probabilities.shape == (3, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert (probabilities.argmax(1) == model.predict(x_val, verbose=0)[-1].argmax(1)).all()
    assert (finished.export / "labels.txt").read_text().split() == list(CLASSES)


def test_rerunning_a_finished_run_refuses_and_changes_nothing(finished, capsys):
    before = snapshot(finished.root / "runs"), snapshot(finished.root / "saved")
    assert main(finished.args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already finished" in err[0] and "--overwrite" in err[0]
    assert (snapshot(finished.root / "runs"), snapshot(finished.root / "saved")) == before


def _bad_input(case, finished, tmp):
    """Arguments that point the finished run's name at a bad input, with --overwrite."""
    data = tmp / "data"
    extra = []
    if case == "missing_folder":
        data = tmp / "nowhere"
    elif case == "empty_folder":
        data.mkdir()
    elif case == "class_mismatch":
        make_image_folder(data, per_class=4)
        make_image_folder(data, split="val", classes=("cat", "dog"), per_class=2)
    elif case == "non_image_file":
        make_image_folder(data, per_class=4)
        (data / "train" / "dog" / "readme.txt").write_text("hello")
    elif case == "corrupt_archive":
        data = tmp / "data.tar.xz"
        data.write_bytes(os.urandom(4096))
    elif case == "escaping_archive":
        import tarfile

        data = tar_with(tmp / "data.tar", [(tarfile.TarInfo("../escaped.txt"), b"x")])
    elif case == "batch_larger_than_data":
        data, extra = finished.data, ["--batch-size", "512"]
    elif case == "unknown_value":
        data, extra = finished.data, ["--precision", "fp8"]
    args = run_args(finished.root, "tiny", data, "--epochs", "2", "--overwrite")
    for flag, value in zip(extra[::2], extra[1::2]):  # a flag may be given only once
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


@pytest.mark.parametrize("case, message", [
    ("missing_folder", "data folder not found"),
    ("empty_folder", "has no train/ folder"),
    ("class_mismatch", "differ from train/"),
    ("non_image_file", "unreadable or non-image file"),
    ("corrupt_archive", "corrupt or truncated"),
    ("escaping_archive", "refusing to extract"),
    ("batch_larger_than_data", "larger than the 27 training examples"),
    ("unknown_value", "invalid choice: 'fp8'"),
])
def test_bad_inputs_fail_with_one_line_and_leave_the_earlier_run_intact(
        finished, tmp_path, capsys, case, message):
    before = snapshot(finished.root / "runs"), snapshot(finished.root / "saved")
    assert main(_bad_input(case, finished, tmp_path)) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert (snapshot(finished.root / "runs"), snapshot(finished.root / "saved")) == before
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_an_unfinished_run_with_other_settings_is_not_resumed(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", per_class=4)
    args = run_args(tmp_path, "partial", data, "--epochs", "3")
    run = tmp_path / "runs" / "partial"
    run.mkdir(parents=True)
    # What a run killed during its first epochs leaves: its config, no results.
    from training.cifar import config_from_args

    config_from_args(args).resolve().save(run / "config.json")
    before = snapshot(run)
    assert main(args[:-1] + ["4"]) == 1  # --epochs 4 instead of 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "started with other settings (epochs: 3 -> 4," in err[0]
    assert snapshot(run) == before


def test_a_new_run_does_not_replace_an_existing_export(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", per_class=4)
    (tmp_path / "saved" / "taken").mkdir(parents=True)
    (tmp_path / "saved" / "taken" / "saved_model.pb").write_bytes(b"someone else's")
    assert main(run_args(tmp_path, "taken", data, "--epochs", "1")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0] and "--overwrite" in err[0]
    assert (tmp_path / "saved" / "taken" / "saved_model.pb").read_bytes() == b"someone else's"
    assert not (tmp_path / "runs" / "taken").exists()


@pytest.mark.slow
def test_a_failed_export_is_retried_by_running_the_same_command(tmp_path, monkeypatch, capsys):
    data = make_image_folder(tmp_path / "data", per_class=10)
    args = run_args(tmp_path, "retry", data, "--epochs", "1", "--run-eagerly")

    def full_disk(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr("keras_googlenet.export.export_saved_model", full_disk)
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SavedModel export" in err[0] and "No space left" in err[0]
    run = tmp_path / "runs" / "retry"
    assert (run / "model.keras").exists() and (run / "backup").is_dir()
    assert not (run / "results.json").exists()

    monkeypatch.undo()
    assert main(args) == 0
    assert "All 1 epochs were trained already" in capsys.readouterr().out
    results = json.loads((run / "results.json").read_text())
    assert results["resumed_from_epoch"] == 1 and [r["epoch"] for r in _history(run)] == ["0"]
    assert (tmp_path / "saved" / "retry" / "saved_model.pb").exists()


def test_ema_weights_become_the_final_model():
    """With --ema, fit() leaves the moving average (not the last step) in the model."""
    config = TrainConfig(ema=True, ema_momentum=0.5, weight_decay=0, epochs=1, lr=0.5).resolve()
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="main")(inputs))
    compile_model(model, config, steps_per_epoch=4)
    raw = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raw.append([w.copy() for w in model.get_weights()])

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 16)]
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[Record()])
    # Keras starts the average at the weights after the first step.
    expected = raw[0]
    for step in raw[1:]:
        expected = [0.5 * e + 0.5 * w for e, w in zip(expected, step)]
    for final, average, last in zip(model.get_weights(), expected, raw[-1]):
        np.testing.assert_allclose(final, average, rtol=1e-5, atol=1e-6)
        assert not np.allclose(final, last)


def test_learning_rate_warms_up_then_decays_to_zero():
    config = TrainConfig(epochs=10, warmup_epochs=2, lr=0.4).resolve()
    schedule = build_schedule(config, steps_per_epoch=10)
    lr = lambda step: float(schedule(step))
    assert lr(0) == 0 and lr(10) == pytest.approx(0.2) and lr(20) == pytest.approx(0.4)
    assert lr(60) == pytest.approx(0.2, rel=1e-4) and lr(100) == pytest.approx(0, abs=1e-7)


@pytest.mark.slow
def test_nan_loss_stops_the_run_with_a_clear_message(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", per_class=20)  # 3 steps per epoch
    # Eager: this checks the callback wiring, not compilation (and saves the trace time).
    args = run_args(tmp_path, "nan", data, "--epochs", "2", "--no-export", "--lr", "1e30",
                    "--warmup-epochs", "0", "--run-eagerly")
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loss became NaN or infinite at epoch" in err[0]
    run = tmp_path / "runs" / "nan"
    assert not (run / "results.json").exists() and not (run / "model.keras").exists()


# ---- atomic writes --------------------------------------------------------------


def _tiny_model():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="main")(inputs))
    model.compile(optimizer="sgd", loss="mse")
    return model


def _crash_while_writing(path, *args, **kwargs):
    with open(path, "wb") as f:
        f.write(b"half a file")
    raise OSError("killed mid-write")


def _open_that_dies_mid_write(path, mode="r", *args, **kwargs):
    if "w" not in mode:
        return open(path, mode, *args, **kwargs)
    with open(path, mode, *args, **kwargs) as f:
        f.write(b"half a file" if "b" in mode else "half a file")
    raise OSError("killed mid-write")


def test_checkpoint_is_replaced_atomically(tmp_path, monkeypatch):
    path = tmp_path / "best.keras"
    model = _tiny_model()
    callback = AtomicModelCheckpoint(str(path))
    callback.set_model(model)
    callback.on_epoch_end(0, {"loss": 1.0})
    good = path.read_bytes()
    keras.saving.load_model(path)  # a complete, loadable file
    monkeypatch.setattr(model, "save", _crash_while_writing)
    with pytest.raises(OSError, match="killed mid-write"):
        callback.on_epoch_end(1, {"loss": 0.5})
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["best.keras"]


def test_backup_is_replaced_atomically_and_restores(tmp_path, monkeypatch):
    model = _tiny_model()
    backup = AtomicBackupAndRestore(str(tmp_path / "backup"))
    backup.set_model(model)
    backup.on_epoch_end(2)
    weights = [w.copy() for w in model.get_weights()]
    files = snapshot(tmp_path / "backup")
    # The weights file is written by keras_googlenet._internal.fileio with `open`: die in it.
    monkeypatch.setattr(fileio, "open", _open_that_dies_mid_write, raising=False)
    with pytest.raises(OSError, match="killed mid-write"):
        backup.on_epoch_end(3)
    assert snapshot(tmp_path / "backup") == files and backup.saved_epoch() == 3
    fresh = _tiny_model()
    restore = AtomicBackupAndRestore(str(tmp_path / "backup"))
    restore.set_model(fresh)
    restore.on_train_begin()
    for a, b in zip(fresh.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    assert fresh._initial_epoch == 3


# ---- subprocesses: kill -9 and resume, multi-device, JAX without TensorFlow -----


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_completed_epoch(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=12)
    # Eager: resuming does not depend on compilation, and the tiny model runs
    # faster op by op than tf.function takes to trace it (twice here).
    args = run_args(tmp_path, "resume", data, "--epochs", "8", "--no-export", "--run-eagerly")
    run = tmp_path / "runs" / "resume"
    metadata = run / "backup" / "training_metadata.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "training.cifar", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and proc.poll() is None:
            if metadata.exists() and json.loads(metadata.read_text() or "{}").get("epoch", 0) >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    saved_epoch = json.loads(metadata.read_text())["epoch"]
    assert 2 <= saved_epoch < 8 and not (run / "results.json").exists()

    second = run_module(args)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"epoch {saved_epoch + 1} of 8" in second.stdout
    rows = _history(run)
    assert [int(r["epoch"]) for r in rows] == list(range(8))  # no gap, no duplicate
    # The run's wall time continues from the killed session's (curves.png's time axis).
    elapsed = [float(r["elapsed_s"]) for r in rows]
    assert all(a < b for a, b in zip(elapsed, elapsed[1:])), elapsed
    # The optimizer state came back too: the learning rate follows one schedule.
    config = TrainConfig.load(run / "config.json")
    steps = json.loads((run / "results.json").read_text())["num_train"] // 16
    schedule = build_schedule(config, steps_per_epoch=steps)
    for r in rows:
        expected = float(schedule((int(r["epoch"]) + 1) * steps))
        assert float(r["learning_rate"]) == pytest.approx(expected, rel=1e-5, abs=1e-8)
    results = json.loads((run / "results.json").read_text())
    assert results["resumed_from_epoch"] == saved_epoch
    assert not (run / "backup").exists()
