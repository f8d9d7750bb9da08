"""The recipe features: cutout, flip TTA, EMA evaluation, learning-rate scaling,
their flags' errors, resuming with them, and `benchmarks.time_to_accuracy` on a tiny run."""

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from test_cli_attacks import _assert_one_line, _run
from training_helpers import CHEAP_XLA_FLAGS

from benchmarks import time_to_accuracy
from keras_googlenet import HEADS
from training.cifar import train
from training.config import LR_REFERENCE_BATCH, ConfigError, TrainConfig, default_model
from training.data import build_datasets
from training.evaluation import HeldOutEvaluation, flip_tta_model, heldout_accuracies
from training.recipe import (
    build_model, build_optimizer, build_schedule, compile_model, setup_runtime,
)

pytestmark = pytest.mark.slow  # trains runs


@pytest.mark.parametrize("pipeline", ["tf.data", "numpy"])
def test_cutout_is_only_in_training(pipeline):
    config = TrainConfig(data="synthetic", synthetic_examples=64, image_size=16, batch_size=16,
                         pad=0, cutout=8, pipeline=pipeline).resolve()
    data = build_datasets(config)
    batches = list(data.train) if pipeline == "tf.data" else [data.train[i] for i in range(4)]
    for x, _ in batches:
        x = np.asarray(x)
        zeros = (x == 0).all(axis=-1).sum(axis=(1, 2))
        # Random RGB pixels are almost never (0, 0, 0): each image has its square (16 to 64).
        assert ((zeros >= 16) & (zeros <= 64)).all(), zeros
    val_batches = list(data.val) if pipeline == "tf.data" else [data.val[i] for i in range(len(data.val))]
    val = np.concatenate([np.asarray(b[0]) for b in val_batches])
    assert len(val) == data.num_val and not (val == 0).all(axis=-1).any()  # no square held out


def _softmax(logits):
    z = np.asarray(logits, "float64")
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def test_flip_tta_is_the_mean_of_the_two_predictions_and_its_accuracy_is_weighted():
    import tensorflow as tf

    config = TrainConfig(data="synthetic", model=default_model(width=0.125, stem="cifar"),
                         image_size=16).resolve()
    setup_runtime(config)
    model = build_model(config, 10)
    compile_model(model, config, steps_per_epoch=1)
    tta = flip_tta_model(model)
    assert tta.output_names == model.output_names
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    outputs = dict(zip(model.output_names, model(x, training=False)))
    mirrored = dict(zip(model.output_names, model(np.ascontiguousarray(x[:, :, ::-1]),
                                                  training=False)))
    predicted = tta.predict(x, verbose=0)
    # Labels that the plain and the TTA predictions score differently, and
    # zero weights on the last 4 images (the padding of multi-device runs).
    weights = np.r_[np.ones(8), np.zeros(4)].astype("float32")
    for head in model.output_names:
        direct = _softmax(keras.ops.convert_to_numpy(outputs[head]))
        mirror = _softmax(keras.ops.convert_to_numpy(mirrored[head]))
        np.testing.assert_allclose(predicted[head], (direct + mirror) / 2, atol=1e-5)
        assert not np.allclose(direct, mirror, atol=1e-4)  # the mirror does change the output
    labels = np.argmax(predicted["main"], axis=-1)
    labels[::3] = (labels[::3] + 1) % 10  # a third wrong: accuracy 5/8 over the weighted 8
    onehot = np.eye(10, dtype="float32")[labels]
    val = tf.data.Dataset.from_tensor_slices(
        (x, {h: onehot for h in model.output_names}, weights)).batch(5)
    got = heldout_accuracies(tta, val)
    for head in model.output_names:
        correct = np.argmax(predicted[head], axis=-1) == labels
        assert got[head] == pytest.approx(correct[:8].mean(), abs=1e-6)
    assert got["main"] == pytest.approx(5 / 8, abs=1e-6)
    plain = np.argmax(keras.ops.convert_to_numpy(outputs["main"]), axis=-1) == labels
    assert heldout_accuracies(model, val)["main"] == pytest.approx(
        plain[:8].mean(), abs=1e-6)


def test_ema_evaluation_scores_the_average_and_puts_the_raw_weights_back():
    config = TrainConfig(ema=True, ema_momentum=0.5, weight_decay=0, epochs=3, lr=0.5).resolve()
    inputs = keras.Input((4, 4, 3))
    flat = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, {"main": keras.layers.Dense(3, name="main")(flat)})
    compile_model(model, config, steps_per_epoch=10)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (160, 4, 4, 3)).astype("uint8")
    y = rng.integers(0, 3, 160)
    before, after = [], []

    class Record(keras.callbacks.Callback):
        def __init__(self, into):
            super().__init__()
            self.into = into

        def on_epoch_end(self, epoch, logs=None):
            average = [keras.ops.convert_to_numpy(v).copy()
                       for v in self.model.optimizer._model_variables_moving_average]
            self.into.append((self.model.get_weights(), average, dict(logs)))

    import tensorflow as tf

    onehot = {"main": np.eye(3, dtype="float32")[y]}
    evaluation = HeldOutEvaluation(tf.data.Dataset.from_tensor_slices((x, onehot)).batch(16),
                                   tta_flip=False, ema=True)
    model.fit(x, onehot, batch_size=16, epochs=3, verbose=0,
              shuffle=False, callbacks=[Record(before), evaluation, Record(after)])
    clone = keras.models.clone_model(model)
    for (raw, average, _), (raw_after, average_after, logs) in zip(before, after):
        for a, b in zip(raw, raw_after):  # training goes on from the raw weights
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
        for a, b in zip(average, average_after):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
        assert not np.allclose(raw[0], average[0])
        clone.set_weights(average)
        expected = (np.argmax(clone.predict(x, verbose=0)["main"], axis=-1) == y).mean()
        assert logs["val_main_accuracy_ema"] == pytest.approx(expected, abs=1 / 160 + 1e-9)


def test_lr_scales_linearly_with_the_batch_size_only_when_asked():
    assert LR_REFERENCE_BATCH == 128
    linear = dict(lr=0.1, lr_scaling="linear")
    assert TrainConfig(batch_size=512, **linear).peak_lr == pytest.approx(0.4)
    assert TrainConfig(batch_size=64, **linear).peak_lr == pytest.approx(0.05)
    assert TrainConfig(batch_size=128, **linear).peak_lr == pytest.approx(0.1)
    # The default stays --lr as given (the measurement could not tell the rules apart).
    assert TrainConfig().lr_scaling == "none"
    assert TrainConfig(lr=0.1, batch_size=512).peak_lr == 0.1
    config = TrainConfig(batch_size=256, epochs=10, warmup_epochs=1, **linear).resolve()
    schedule = build_schedule(config, steps_per_epoch=10)
    assert float(schedule(10)) == pytest.approx(0.2)  # the end of warm-up: the scaled peak
    assert float(schedule(5)) == pytest.approx(0.1)  # half-way up the linear warm-up
    plain = build_schedule(TrainConfig(batch_size=256, epochs=10, warmup_epochs=1).resolve(), 10)
    assert float(plain(10)) == pytest.approx(0.1)


def test_a_config_saved_before_the_new_fields_keeps_its_old_behaviour():
    values = TrainConfig(batch_size=64).resolve().to_dict()
    for key in ("cutout", "tta_flip", "lr_scaling"):
        del values[key]
    old = TrainConfig.from_dict(values)
    assert (old.cutout, old.tta_flip, old.lr_scaling, old.peak_lr) == (0, False, "none", 0.1)
    assert TrainConfig(batch_size=64).resolve().resume_differences(old) == []
    linear = TrainConfig(batch_size=64, lr_scaling="linear").resolve()
    assert linear.resume_differences(old) == ["lr_scaling"]  # peak lr 0.05 vs 0.1
    assert TrainConfig(lr_scaling="linear").resolve().resume_differences(  # batch 128: same lr
        TrainConfig().resolve()) == []


@pytest.mark.parametrize("flags, words", [
    (["--cutout", "-1"], ["--cutout", "-1"]),
    (["--cutout", "17"], ["--cutout", "17", "--image-size"]),
    (["--cutout", "4", "--no-augment"], ["--cutout", "--no-augment"]),
    (["--lr-scaling", "sqrt"], ["--lr-scaling", "sqrt"]),
    (["--cutout", "x"], ["--cutout", "'x'"]),
])
def test_bad_recipe_flags_are_one_line_errors(tmp_path, capsys, flags, words):
    status, err = _run(tmp_path, capsys, *flags)
    _assert_one_line(status, err, *words)
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ConfigError, match="--tta-flip"):
        TrainConfig(tta_flip="yes").validate()


class _Interrupt(keras.callbacks.Callback):
    """Stops the run like a kill after its first completed epoch (before the second's backup)."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


def _tiny(tmp_path, **fields):
    return TrainConfig(data="synthetic", synthetic_examples=48, model=default_model(width=0.125),
                       image_size=16,
                       batch_size=16, epochs=3, verbose=0, export=False, run_eagerly=True,
                       runs_dir=str(tmp_path / "runs"), name="r", **fields)


def test_a_run_with_the_new_fields_resumes_and_records_tta_and_ema(tmp_path):
    config = _tiny(tmp_path, cutout=4, tta_flip=True, ema=True, ema_momentum=0.5,
                   pipeline="numpy")
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[_Interrupt()])
    with pytest.raises(Exception, match="cutout"):  # another cutout is another run
        train(_tiny(tmp_path, cutout=2, tta_flip=True, ema=True, ema_momentum=0.5))
    results = train(config)
    assert results["resumed_from_epoch"] == 1
    with open(tmp_path / "runs" / "r" / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    for suffix in ("", "_tta", "_ema", "_ema_tta"):
        for head in ("aux1", "aux2", "main"):
            assert all(0 <= float(r[f"val_{head}_accuracy{suffix}"]) <= 1 for r in rows)
    assert results["best_metric"] == "val_main_accuracy_tta"
    best = max(float(r["val_main_accuracy_tta"]) for r in rows)
    assert results["best_val_main_accuracy"] == pytest.approx(best, abs=1e-6)
    assert set(results["val_accuracy_tta"]) == {"aux1", "aux2", "main"}
    assert results["final_weights"] == "ema"


def test_time_to_accuracy_records_curves_levels_and_a_plot(tmp_path):
    out = tmp_path / "tta.json"
    status = time_to_accuracy.main([
        "--flags", "--width 0.125 --image-size 16 --batch-size 16 --synthetic-examples 48 "
        "--epochs 2 --run-eagerly", "--recipe", "cut=--cutout 4", "--seeds", "3", "--tta-flip",
        "--levels", "0,1", "--output", str(out), "--runs-dir", str(tmp_path / "runs")])
    assert status == 0
    doc = json.loads(out.read_text())
    run = doc["results"][0]["runs"][0]
    curve = run["curve"]
    assert curve["epoch"] == [1, 2] and curve["steps"] == [3, 6] and curve["images"] == [48, 96]
    assert run["seed"] == 3 and "--cutout 4" in run["command"] and "--seed 3" in run["command"]
    assert curve["train_s"][0] > 0 and curve["train_s"][1] > curve["train_s"][0]
    history = list(csv.DictReader(open(tmp_path / "runs" / "cut-seed3" / "history.csv")))
    assert curve["tta"] == [float(r["val_main_accuracy_tta"]) for r in history]
    rows = {r["evaluation"]: r for r in doc["summary"]}
    assert set(rows) == {"plain", "tta"}
    assert rows["plain"]["levels"]["0"] == {"reached": "1/1", "steps_median": 3,
                                            "epochs_median": 1, "seconds_est": pytest.approx(
                                                3 * 16 / run["images_per_second"], abs=0.1)}
    assert rows["plain"]["levels"]["1"] == {"reached": "0/1"}
    assert doc["environment"]["cpu"] == doc["lscpu"]["model"]  # the machine is recorded
    assert len(doc["lscpu"]["flags"]) > 10 and "sse2" in doc["lscpu"]["flags"]
    png = out.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_time_to_accuracy_runs_on_jax_without_tensorflow(tmp_path, no_tensorflow_env):
    import jax  # noqa: F401  (in the test extra: a missing JAX fails, not skips)

    out = tmp_path / "jax.json"
    env = dict(no_tensorflow_env, KERAS_BACKEND="jax", XLA_FLAGS=CHEAP_XLA_FLAGS,
               JAX_LOG_COMPILES="1")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.time_to_accuracy", "--flags",
         "--width 0.125 --image-size 16 --batch-size 16 --synthetic-examples 48 --epochs 2",
         "--recipe", "cut=--cutout 4", "--seeds", "1", "--tta-flip", "--levels", "0",
         "--output", str(out), "--runs-dir", str(tmp_path / "runs")],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env=env,
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert "TensorFlow is not installed" in proc.stdout + proc.stderr  # it was hidden
    results = json.loads((tmp_path / "runs" / "cut-seed1" / "results.json").read_text())
    assert results["backend"] == "jax"
    curve = doc["results"][0]["runs"][0]["curve"]
    assert curve["steps"] == [3, 6] and len(curve["tta"]) == 2
    assert out.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    # The network runs compiled (training, the held-out and TTA evaluations),
    # never op by op: JAX compiled no convolution on its own.
    assert "compilation of jit(train_step)" in proc.stderr
    assert "compilation of jit(conv_general_dilated)" not in proc.stderr


def _recipe(name, ips, curves, batch=16, steps_per_epoch=10):
    runs = [{"seed": seed, "batch_size": batch, "images_per_second": ips[seed],
             "curve": {"epoch": [1, 2, 3], "steps": [steps_per_epoch * e for e in (1, 2, 3)],
                       **{evaluation: c[seed] for evaluation, c in curves.items()}}}
            for seed in range(3)]
    return {"name": name, "runs": runs}


def test_steps_to_each_level_are_medians_over_the_seeds_that_all_reached_it():
    a = _recipe("a", [100, 120, 80], {
        "plain": [[0.1, 0.3, 0.5], [0.2, 0.25, 0.6], [0.3, 0.4, 0.45]],
        "tta": [[0.1, 0.3, 0.5], [0.2, 0.3, 0.6], [0.3, 0.4, 0.5]]})
    b = _recipe("b", [200, 240, 160], {"plain": [[0.5, 0.6, 0.7]] * 3})  # no tta: no row
    summary = time_to_accuracy.summarise([a, b], [0.2, 0.3, 0.5])
    rows = {(r["recipe"], r["evaluation"]): r for r in summary}
    assert list(rows) == [("a", "plain"), ("a", "tta"), ("b", "plain")]
    plain = rows["a", "plain"]
    assert (plain["final_mean"], plain["final_min"], plain["final_max"]) == (0.5167, 0.45, 0.6)
    assert plain["images_per_second"] == 100 and plain["images_per_second_vs_first"] == 1
    # 0.2: epochs 2, 1 (0.2 >= 0.2 counts), 1 -> steps 20, 10, 10; seconds = 10 x 16 / 100.
    assert plain["levels"]["0.2"] == {"reached": "3/3", "steps_median": 10, "epochs_median": 1,
                                      "seconds_est": 1.6}
    assert plain["levels"]["0.3"] == {"reached": "3/3", "steps_median": 20, "epochs_median": 2,
                                      "seconds_est": 3.2}
    assert plain["levels"]["0.5"] == {"reached": "2/3"}  # seed 2 ends at 0.45: no median
    assert rows["a", "tta"]["levels"]["0.5"]["steps_median"] == 30
    assert rows["b", "plain"]["images_per_second_vs_first"] == 2.0  # paired by seed
    assert rows["b", "plain"]["levels"]["0.5"]["seconds_est"] == pytest.approx(10 * 16 / 200)
    table = time_to_accuracy.markdown(summary, [0.2, 0.3, 0.5]).splitlines()
    assert table[0] == ("| recipe | eval | final acc (mean, min-max) | images/s vs first | "
                        "steps to 0.2 | steps to 0.3 | steps to 0.5 |")
    assert table[2] == "| a | plain | 0.517 (0.450-0.600) | 1.00x | 10 | 20 | (2/3) |"
    assert time_to_accuracy.first_reaching(a["runs"][2]["curve"], "plain", 0.9) is None


@pytest.mark.parametrize("argv, words", [
    (["--recipe", "no-equals-sign"], ["NAME=FLAGS", "'no-equals-sign'"]),
    (["--recipe", "a=", "--recipe", "a=--cutout 8"], ["--recipe names must differ", "'a'"]),
    (["--levels", "0.5,1.5"], ["--levels", "[0.5, 1.5]"]),
    (["--seeds", ","], ["--seeds"]),
])
def test_time_to_accuracy_refuses_bad_arguments_in_one_line(tmp_path, capsys, argv, words):
    out = tmp_path / "t.json"
    assert time_to_accuracy.main([*argv, "--output", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    _assert_one_line(1, err, *words)
    assert not out.exists() and not out.with_suffix(".png").exists()


@pytest.mark.parametrize("argv, words", [
    (["--levels", "x"], ["--levels", "'x'"]),
    (["--seeds", "1.5"], ["--seeds", "'1.5'"]),
])
def test_time_to_accuracy_flag_types_are_one_line_errors(capsys, argv, words):
    assert time_to_accuracy.main(argv) == 2
    _assert_one_line(2, capsys.readouterr().err.strip().splitlines(), *words)


def test_time_to_accuracy_merges_earlier_documents_without_training(tmp_path, capsys):
    recipes = [_recipe("a", [100, 120, 80], {"plain": [[0.1, 0.3, 0.5]] * 3}),
               _recipe("old", [100, 100, 100], {"plain": [[0.9, 0.9, 0.9]] * 3})]
    first, second = tmp_path / "1.json", tmp_path / "2.json"
    first.write_text(json.dumps({"benchmark": "time_to_accuracy", "results": recipes}))
    second.write_text(json.dumps({"benchmark": "time_to_accuracy", "results": [
        _recipe("b", [200, 240, 160], {"plain": [[0.2, 0.3, 0.4]] * 3})]}))
    out = tmp_path / "all.json"
    merged = ["--merge", str(first), "--merge", str(second), "--levels", "0.3"]
    assert time_to_accuracy.main([*merged, "--drop", "old", "--output", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [r["name"] for r in doc["results"]] == ["a", "b"]
    assert doc["settings"]["sources"] == {"a": str(first), "b": str(second)}
    assert [r["levels"]["0.3"]["steps_median"] for r in doc["summary"]] == [20, 20]
    assert out.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    capsys.readouterr()
    assert time_to_accuracy.main([*merged, "--merge", str(first), "--output", str(out)]) == 1
    _assert_one_line(1, capsys.readouterr().err.strip().splitlines(), "'a'", "--drop")
    assert time_to_accuracy.main(["--merge", str(tmp_path / "none.json")]) == 1
    _assert_one_line(1, capsys.readouterr().err.strip().splitlines(), "none.json")


@pytest.mark.backends("tensorflow")
@pytest.mark.parametrize("built, traces", [(True, 1), (False, 2)])
def test_fit_traces_the_training_step_once_when_the_compile_state_is_built(
        monkeypatch, built, traces):
    """Keras creates the loss trackers and metrics inside the first trace of the
    step, and TensorFlow then traces it again; `compile_model` creates them
    before `fit` (`training.recipe.build_compile_state`). The unbuilt case shows that
    the count can fail."""
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    calls = []
    original = TensorFlowTrainer.train_step
    monkeypatch.setattr(TensorFlowTrainer, "train_step",
                        lambda self, data: calls.append(1) or original(self, data))
    config = TrainConfig(epochs=1).resolve()
    inputs = keras.Input((4,))
    model = keras.Model(inputs, [keras.layers.Dense(3, name=h)(inputs) for h in HEADS])
    if built:
        compile_model(model, config, steps_per_epoch=2)
    else:  # Keras's compile alone (the optimizer built as compile_model does)
        model.compile(optimizer=build_optimizer(config, 2), loss="categorical_crossentropy",
                      weighted_metrics={h: ["accuracy"] for h in HEADS})
        model.optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 8)]
    model.fit(rng.normal(size=(8, 4)).astype("float32"), {h: y for h in HEADS},
              batch_size=4, epochs=2, verbose=0)
    assert len(calls) == traces
