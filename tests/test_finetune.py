"""Fine-tuning pretrained weights: `python -m training.cifar --weights imagenet|PATH.pth`."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import torch
from training_helpers import REPO

import keras_googlenet as kg
from training.callbacks import AtomicBackupAndRestore
from training.cifar import config_from_args, main
from training.config import TrainConfig, default_model
from training.recipe import build_schedule, run_phases, set_trainable, trainable_parameters
from training.run import read_history

pytestmark = [pytest.mark.backends("tensorflow"), pytest.mark.slow]  # slow: every test trains


@pytest.fixture(scope="module")
def pth(tmp_path_factory):
    """A torchvision GoogLeNet state dict (random weights), made in its own process."""
    out = tmp_path_factory.mktemp("pth")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    result = subprocess.run([sys.executable, "-m", "tests.torchvision_reference", str(out)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "googlenet.pth"


def test_weights_default_to_the_imagenet_stem_and_224(pth):
    config = config_from_args(["--weights", str(pth), "--data-dir", "x"]).resolve()
    assert (config.model.stem, config.image_size) == ("imagenet", 224)
    assert config_from_args(["--weights", str(pth), "--image-size", "96"]).image_size == 96
    model_config = config.model_config(10)
    assert {k: getattr(model_config, k) for k in kg.TORCHVISION_OPTIONS} == kg.TORCHVISION_OPTIONS
    assert config_from_args([]).model_config(10).large_branch_kernel == 5  # paper without


def test_fine_tuning_starts_from_the_backbone_with_new_heads(pth, image_folder, tmp_path, capsys):
    args = ["--name", "ft", "--data-dir", str(image_folder), "--weights", str(pth),
            "--image-size", "64", "--epochs", "1", "--batch-size", "8", "--lr", "1e-9",
            "--weight-decay", "0", "--no-export", "--runs-dir", str(tmp_path / "runs"),
            "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    assert "Loaded the pretrained backbone" in capsys.readouterr().out
    run = tmp_path / "runs" / "ft"
    saved = kg.GoogLeNetConfig.load(run / "model_config.json")
    assert saved.classes == 3 and saved.large_branch_kernel == 3 and saved.ceil_mode is True
    model = keras.saving.load_model(run / "model.keras")
    state = torch.load(pth, weights_only=True)
    # A learning rate of 1e-9 leaves the kernels where the .pth put them.
    np.testing.assert_allclose(model.get_layer("inception_4e_5x5").get_weights()[0],
                               state["inception4e.branch3.1.conv.weight"].numpy()
                               .transpose(2, 3, 1, 0), atol=1e-6)
    assert model.get_layer("main").get_weights()[0].shape == (1024, 3)  # a new head
    assert json.loads((run / "results.json").read_text())["epochs"] == 1


@pytest.mark.parametrize("extra, message", [
    (["--stem", "cifar"], ("--stem must be imagenet with --weights ", ".pth; got 'cifar'")),
    (["--width", "0.5"], ("--width must be 1 with --weights ", ".pth; got 0.5")),
])
def test_settings_the_weights_cannot_fit(pth, image_folder, tmp_path, capsys, extra, message):
    args = ["--data-dir", str(image_folder), "--weights", str(pth), "--runs-dir",
            str(tmp_path / "runs"), *extra]
    assert main(args) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(part in err[0] for part in message), err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_unknown_weights(image_folder, tmp_path, capsys):
    assert main(["--data-dir", str(image_folder), "--weights", "nowhere.pth"]) != 0
    assert ("--weights must be one of ['cifar10', 'imagenet'] or an existing torchvision "
            "GoogLeNet .pth/.pt file; got 'nowhere.pth'") in capsys.readouterr().err


# ---- --freeze-epochs: heads first, then the backbone at a lower learning rate ----------


def _phase_run(pth, image_folder, tmp_path):
    return ["--name", "frozen", "--data-dir", str(image_folder), "--weights", str(pth),
            "--image-size", "64", "--limit", "16", "--batch-size", "8", "--epochs", "4",
            "--freeze-epochs", "2", "--lr", "0.001", "--finetune-lr-factor", "0.5",
            "--warmup-epochs", "1", "--no-export", "--verbose", "2",
            "--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")]


def _record_backups(monkeypatch, stop_after=None):
    """Records the model at every backup (the state after each epoch); with
    `stop_after`, interrupts the run (Ctrl-C) right after that many backups."""
    real = AtomicBackupAndRestore._save_model
    saves = []

    def save(self):
        real(self)
        model = self.model
        saves.append(SimpleNamespace(
            epoch=self._current_epoch, phase=self.phase,
            weights={layer.name: [np.array(w) for w in layer.weights]
                     for layer in model.layers if layer.weights},
            trainable={layer.name: layer.trainable for layer in model.layers}))
        if len(saves) == stop_after:
            raise KeyboardInterrupt

    monkeypatch.setattr(AtomicBackupAndRestore, "_save_model", save)
    return saves


def _same(weights, reference, names):
    return [name for name in names
            if all(np.array_equal(a, b) for a, b in zip(weights[name], reference[name]))]


def test_frozen_phase_then_unfrozen_resumes_in_either_phase(
        pth, image_folder, tmp_path, capsys, monkeypatch):
    args = _phase_run(pth, image_folder, tmp_path)
    run = tmp_path / "runs" / "frozen"
    # 1. Killed after epoch 1, in the frozen phase.
    with monkeypatch.context() as m:
        first = _record_backups(m, stop_after=1)
        assert main(args) == 130
    # 2. Resumed: epoch 2 (frozen), the switch (the backup is rewritten with the
    #    unfrozen phase's optimizer), epoch 3; killed there, after the switch.
    with monkeypatch.context() as m:
        second = _record_backups(m, stop_after=3)
        assert main(args) == 130
    assert "Resuming from the backup" in capsys.readouterr().out
    assert [(s.epoch, s.phase) for s in first + second] == [
        (1, "frozen"), (2, "frozen"), (2, "unfrozen"), (3, "unfrozen")]
    # 3. Resumed after the switch: epoch 4 only.
    with monkeypatch.context() as m:
        third = _record_backups(m)
        assert main(args) == 0
    out = capsys.readouterr().out
    assert "epoch 4 of 4" in out and "Phase frozen" not in out and "Phase unfrozen" in out
    assert [(s.epoch, s.phase) for s in third] == [(4, "unfrozen")]

    pretrained = kg.pretrained.keras_arrays(pth)
    backbone = sorted(n for n in pretrained if not kg.architecture.is_head_layer(n))
    batch_norm = [n for n in backbone if n.endswith("_bn")]
    convolutions = [n for n in backbone if n not in batch_norm]
    heads = [n for n in first[0].weights if kg.architecture.is_head_layer(n)]
    assert len(backbone) == 114 and len(batch_norm) == 57 and len(heads) == 9
    # The state after each epoch (second[1] is the switch's rewrite of epoch 2's backup).
    epoch = {s.epoch: s for s in [*first, second[0], second[2], *third]}
    for e in (1, 2):  # frozen: every backbone weight and BatchNorm statistic as loaded
        assert _same(epoch[e].weights, pretrained, backbone) == backbone
        assert not any(epoch[e].trainable[n] for n in backbone)
        assert all(epoch[e].trainable[n] for n in heads)
    assert _same(epoch[2].weights, epoch[1].weights, heads) == []  # while every head learns
    for e in (3, 4):  # unfrozen: the convolutions learn, BatchNorm stays in inference mode
        assert _same(epoch[e].weights, pretrained, convolutions) == []
        assert _same(epoch[e].weights, pretrained, batch_norm) == batch_norm
        assert all(epoch[e].trainable[n] for n in convolutions + heads)
        assert not any(epoch[e].trainable[n] for n in batch_norm)
    assert _same(epoch[4].weights, epoch[3].weights, convolutions) == []

    # The learning rate at each epoch's end: warm-up to --lr over epoch 1, cosine to 0 at
    # epoch 2; then a fresh schedule from 0.001 x 0.5 without warm-up, to 0 at epoch 4.
    rows = read_history(run / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    np.testing.assert_allclose([float(r["learning_rate"]) for r in rows],
                               [0.001, 0.0, 0.00025, 0.0], rtol=1e-6, atol=1e-12)
    results = json.loads((run / "results.json").read_text())
    assert results["resumed_from_epoch"] == 3
    frozen, unfrozen = results["phases"]
    assert (frozen["name"], frozen["epochs"], frozen["peak_learning_rate"]) == (
        "frozen", [1, 2], 0.001)
    assert (unfrozen["name"], unfrozen["epochs"], unfrozen["peak_learning_rate"]) == (
        "unfrozen", [3, 4], 0.0005)
    final = keras.saving.load_model(run / "model.keras")
    head_parameters = sum(int(np.prod(w.shape)) for n in heads
                          for w in final.get_layer(n).trainable_weights)
    assert frozen["trainable_parameters"] == head_parameters
    assert unfrozen["trainable_parameters"] > 2 * head_parameters
    assert not (run / "backup").exists()
    assert _same({n: final.get_layer(n).get_weights() for n in backbone}, epoch[4].weights,
                 backbone) == backbone  # the last epoch's model, in its unfrozen state
    assert final.get_layer("conv1_7x7_s2").trainable
    assert not final.get_layer("conv1_7x7_s2_bn").trainable


def test_resume_at_the_switch_enters_the_unfrozen_phase(
        pth, image_folder, tmp_path, capsys, monkeypatch):
    """Killed after the last frozen epoch's backup, before it was rewritten for the
    unfrozen phase: the resumed run switches then, and trains epoch 2."""
    args = _with_epochs(_phase_run(pth, image_folder, tmp_path), epochs=2, freeze=1)
    with monkeypatch.context() as m:
        first = _record_backups(m, stop_after=1)
        assert main(args) == 130
    with monkeypatch.context() as m:
        second = _record_backups(m)
        assert main(args) == 0
    assert "epoch 2 of 2" in capsys.readouterr().out
    assert [(s.epoch, s.phase) for s in first + second] == [
        (1, "frozen"), (1, "unfrozen"), (2, "unfrozen")]
    assert [int(r["epoch"]) for r in read_history(tmp_path / "runs" / "frozen" / "history.csv")
            ] == [0, 1]
    pretrained = kg.pretrained.keras_arrays(pth)
    assert _same(second[-1].weights, pretrained, ["inception_4e_5x5"]) == []
    assert _same(second[0].weights, first[0].weights, list(first[0].weights)) == list(
        first[0].weights)  # the switch changes no weight


def _with_epochs(args, *, epochs, freeze):
    args = list(args)
    args[args.index("--epochs") + 1] = str(epochs)
    args[args.index("--freeze-epochs") + 1] = str(freeze)
    return args


def test_phase_schedules(tmp_path):
    """Each phase's learning rate per optimizer step (10 steps an epoch)."""
    (tmp_path / "w.pth").touch()
    config = TrainConfig(weights=str(tmp_path / "w.pth"), model=default_model(stem="imagenet"),
                         image_size=64, epochs=4, freeze_epochs=2, warmup_epochs=1,
                         lr=0.1).resolve()
    frozen, unfrozen = run_phases(config)
    assert config.finetune_lr_factor == 0.1  # the default
    lr = {p.name: [float(build_schedule(config, 10, p)(s)) for s in (0, 5, 10, 15, 20)]
          for p in (frozen, unfrozen)}
    np.testing.assert_allclose(lr["frozen"], [0, 0.05, 0.1, 0.05, 0], atol=1e-7)
    np.testing.assert_allclose(lr["unfrozen"], [0.01, 0.01 * (1 + np.cos(np.pi / 4)) / 2,
                                                0.005, 0.01 * (1 - np.cos(np.pi / 4)) / 2, 0],
                               atol=1e-7)
    # Default warm-up: 5% of the frozen phase's epochs (at most 5).
    assert TrainConfig(weights=config.weights, model=default_model(stem="imagenet"),
                       image_size=64, epochs=100, freeze_epochs=10).resolve().warmup_epochs == 0.5
    assert [p.name for p in run_phases(TrainConfig().resolve())] == ["all"]


def test_counting_a_phases_parameters_leaves_the_layers_as_they_were(tmp_path):
    """`trainable_parameters` counts what `set_trainable` would train, and
    changes no layer's `trainable` flag."""
    (tmp_path / "w.pth").touch()
    config = TrainConfig(weights=str(tmp_path / "w.pth"), model=default_model(stem="imagenet"),
                         image_size=64, epochs=3, freeze_epochs=1).resolve()
    model = kg.GoogLeNet(input_shape=(64, 64, 3), classes=5, width=0.125)
    model.get_layer("inception_3a").trainable = False  # a flag of the caller's own
    flags = [layer.trainable for layer in model.layers]
    counts = {p.name: trainable_parameters(model, p) for p in run_phases(config)}
    assert [layer.trainable for layer in model.layers] == flags
    for phase in run_phases(config):
        set_trainable(model, phase)
        assert counts[phase.name] == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert 0 < counts["frozen"] < counts["unfrozen"]


@pytest.mark.parametrize("extra, status, message", [
    (["--freeze-epochs", "1"], 1,
     "--freeze-epochs must be 0 without --weights (only pretrained weights have a backbone "
     "to freeze); got 1"),
    (["W", "--freeze-epochs", "3", "--epochs", "3"], 1,
     "--freeze-epochs must be an integer in [0, --epochs - 1]"),
    (["W", "--freeze-epochs", "-1"], 1, "--freeze-epochs must be an integer in [0, --epochs - 1]"),
    (["W", "--freeze-epochs", "two"], 2, "argument --freeze-epochs: invalid int value: 'two'"),
    (["W", "--finetune-lr-factor", "0.5"], 1,
     "--finetune-lr-factor must be unset without --freeze-epochs N"),
    (["W", "--freeze-epochs", "1", "--epochs", "3", "--finetune-lr-factor", "2"], 1,
     "--finetune-lr-factor must be in (0, 1]; got 2.0"),
    (["W", "--freeze-epochs", "1", "--epochs", "3", "--finetune-lr-factor", "nan"], 1,
     "--finetune-lr-factor must be in (0, 1]; got nan"),
    (["W", "--freeze-epochs", "1", "--epochs", "3", "--warmup-epochs", "2"], 1,
     "--warmup-epochs must be in [0, --freeze-epochs] (warm-up is part of the frozen phase); "
     "got 2.0"),
])
def test_bad_freeze_flags(image_folder, tmp_path, capsys, extra, status, message):
    weights = tmp_path / "w.pth"
    weights.touch()
    extra = [x for e in extra for x in (["--weights", str(weights)] if e == "W" else [e])]
    runs = tmp_path / "runs"
    assert main(["--data-dir", str(image_folder), "--runs-dir", str(runs), *extra]) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not runs.exists()
