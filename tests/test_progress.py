"""The run's progress display (training.progress) on captured output, with a fake clock."""

import io
import os

import pytest

from training.config import TrainConfig, default_model
from training.progress import RunProgress, cpu_advice, format_duration


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _run(progress, clock, epochs, steps, step_s=0.5, compile_s=10.0, val_s=3.0):
    for epoch in range(epochs):
        progress.on_epoch_begin(epoch)
        for batch in range(steps):
            clock.now += compile_s if (epoch == 0 and batch == 0) else step_s
            progress.on_train_batch_end(batch, {"loss": 2.0 - batch / 100})
        progress.on_test_begin()
        clock.now += val_s
        progress.on_epoch_end(epoch, {"loss": 1.5, "val_main_accuracy": 0.25 + epoch / 10})


def test_one_line_per_epoch_with_speed_and_the_whole_runs_eta():
    clock, out = Clock(), io.StringIO()
    progress = RunProgress(epochs=3, steps_per_epoch=20, batch_size=64, advice="ADVICE",
                           stream=out, clock=clock)
    _run(progress, clock, epochs=3, steps=20)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()  # not a terminal: no in-place updates
    # The estimate comes once, after 5 timed steps, compilation excluded: 60 steps x 0.5 s.
    assert lines[0].startswith("Estimated training time: 0:30 for 3 epochs at 128.0 images/s")
    assert not lines[0].endswith("ADVICE")  # a 30 s run needs no advice
    assert lines[1:] == [
        "epoch 1/3  0:22  128.0 img/s  loss 1.5000  val_main_accuracy 0.2500  run ETA 0:26",
        "epoch 2/3  0:13  128.0 img/s  loss 1.5000  val_main_accuracy 0.3500  run ETA 0:13",
        "epoch 3/3  0:13  128.0 img/s  loss 1.5000  val_main_accuracy 0.4500",
    ]
    assert progress.images_per_second() == pytest.approx(128.0)


def test_live_line_fits_the_terminal(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "get_terminal_size",
                        lambda fallback=None: os.terminal_size((60, 20)))
    clock, out = Clock(), Terminal()
    progress = RunProgress(epochs=100, steps_per_epoch=390, batch_size=128, stream=out,
                           clock=clock, advice="try --width 0.25")
    assert progress.live
    _run(progress, clock, epochs=1, steps=10)
    assert "Estimated training time: 5:25:00 for 100 epochs" in out.getvalue()
    updates = [u for u in out.getvalue().split("\r\033[K") if u and "\n" not in u]
    assert updates and all(len(u) <= 59 for u in updates)
    # The whole run's ETA first: about 100 x 390 steps of 0.5 s, plus 99 validations of 3 s.
    assert "256.0 img/s  ETA 5:2" in updates[-1]
    assert "try --width 0.25" in out.getvalue()  # over an hour: the advice is printed
    assert out.getvalue().endswith("run ETA 5:26:42\n")


def test_cpu_advice_names_the_flags_that_help():
    advice = cpu_advice(TrainConfig())
    assert "--width 0.25" in advice and "--epochs 10" in advice and "--limit 5000" in advice
    assert cpu_advice(TrainConfig(model=default_model(width=0.25), epochs=5, limit=1000)) == ""


@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (75, "1:15"), (3725, "1:02:05"),
                                           (6 * 86400 + 61, "6d 0:01:01")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.slow
def test_a_captured_cli_run_shows_speed_eta_and_no_framework_noise(tmp_path):
    from training_helpers import TINY, run_module

    args = [*[a for a in TINY if a not in ("--verbose", "2")], "--data", "synthetic",
            "--synthetic-examples", "200", "--epochs", "2", "--name", "progress",
            "--runs-dir", str(tmp_path / "runs"), "--no-export"]
    result = run_module(args)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout.splitlines()
    estimate = [line for line in out if line.startswith("Estimated training time:")]
    assert len(estimate) == 1 and "images/s" in estimate[0]
    assert "No GPU" not in estimate[0]  # a run of seconds needs no advice
    epochs = [line for line in out if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"]  # not a terminal: one per epoch
    assert all("img/s" in line and "val_main_accuracy" in line for line in epochs)
    assert "run ETA" in epochs[0]
    for noise in ("absl::InitializeLog", "cudart_stub", "cuInit", "cpu_feature_guard"):
        assert noise not in result.stderr
