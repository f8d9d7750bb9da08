"""Attacks on training runs: concurrent runs, `--overwrite` that fails,
disk full while checkpointing, damaged resume state. Each ends in a one-line error
with nothing lost (the run resumes, or the earlier run is intact)."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
from training_helpers import REPO, TINY, make_image_folder, snapshot

import training.callbacks
import training.cifar
import training.recipe
from training.callbacks import AtomicBackupAndRestore
from training.cifar import main

pytestmark = pytest.mark.slow  # every test here trains, or needs a run that trained


def _args(root, name, data, *extra, runs=None):
    return ["--name", name, "--data-dir", str(data), "--runs-dir", str(runs or root / "runs"),
            "--export-dir", str(root / "saved"), "--no-export", "--run-eagerly",
            *TINY, *extra]


def _with(args, *extra):
    """`args` with the flags of `extra` set: a flag already there gets the new value
    (giving it twice is an error), others are appended."""
    args, extra = list(args), list(extra)
    while extra:
        flag = extra.pop(0)
        value = [extra.pop(0)] if extra and not extra[0].startswith("--") else []
        if flag in args and value:
            args[args.index(flag) + 1] = value[0]
        else:
            args += [flag, *value]
    return args


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for word in words:
        assert word in err[0], err
    return err[0]


def _disk_full(after=0):
    """A save that fails with ENOSPC once `after` calls have succeeded."""
    calls = []

    def wrap(real):
        def save(*args, **kwargs):
            calls.append(1)
            if len(calls) > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[-1]))
            return real(*args, **kwargs)
        return save
    return wrap


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data") / "images", per_class=10)


# ---- two runs of one name at once ------------------------------------------------------

_HOLD_LOCK = """
import sys, time
from training.config import TrainConfig
from training.run import run_lock
with run_lock(TrainConfig(name=sys.argv[1], runs_dir=sys.argv[2])):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_second_run_of_a_name_is_refused_while_the_first_lives(tmp_path, data, capsys):
    args = _args(tmp_path, "shared", data, "--epochs", "1")
    run = tmp_path / "runs" / "shared"
    # What a run killed in its first epoch leaves: its settings, no epoch.
    run.mkdir(parents=True)
    training.cifar.config_from_args(args).resolve().save(run / "config.json")
    before = snapshot(run)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, "shared", str(tmp_path / "runs")], cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for extra in ([], ["--overwrite"]):
            assert main(_with(args, *extra)) == 1
            _one_line_error(capsys, str(run), "another process is training it")
            assert snapshot(run) == before
        os.kill(holder.pid, signal.SIGKILL)  # the OS releases the lock with the process
        holder.wait()
    finally:
        holder.kill()
        holder.wait()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "interrupted before it finished an epoch: starting it over" in out
    assert (run / "results.json").exists()
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name != "shared"]


def test_the_lock_is_taken_by_exactly_one_of_many_processes(tmp_path):
    procs = [subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK.replace("600", "5"), "race", str(tmp_path)],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    winners = [out for out, _ in results if out.strip() == "locked"]
    assert len(winners) == 1, results
    assert all("another process is training it" in err for out, err in results if not out)


# ---- --overwrite that cannot start leaves the finished run ----------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("finished")
    args = _args(root, "done", data, "--epochs", "1")
    assert main(args) == 0
    return SimpleNamespace(root=root, args=args, run=root / "runs" / "done")


@pytest.mark.parametrize("case", ["width_too_large", "build_fails", "disk_full_on_start"])
def test_overwrite_that_cannot_start_leaves_the_finished_run_intact(
        finished, capsys, monkeypatch, case):
    before = snapshot(finished.root)
    extra = ["--overwrite", "--epochs", "2"]
    if case == "width_too_large":
        extra += ["--width", "1000"]  # passes no check before building: out of memory
    elif case == "build_fails":
        def out_of_memory(*args, **kwargs):
            raise MemoryError("simulated: OOM when allocating the weights")
        monkeypatch.setattr(training.recipe, "build_model", out_of_memory)
    else:
        monkeypatch.setattr("keras_googlenet._internal.fileio.atomic_write_bytes",
                            _disk_full()(None))
    assert main(_with(finished.args, *extra)) == 1
    _one_line_error(capsys)
    assert snapshot(finished.root) == before
    assert sorted(p.name for p in (finished.root / "runs").iterdir()) == ["done"]


def test_overwrite_replaces_the_finished_run_once_the_new_one_starts(finished, capsys):
    old = json.loads((finished.run / "results.json").read_text())
    assert main(_with(finished.args, "--overwrite", "--epochs", "2")) == 0
    new = json.loads((finished.run / "results.json").read_text())
    assert (old["epochs"], new["epochs"]) == (1, 2) and new["resumed_from_epoch"] == 0
    assert sorted(p.name for p in (finished.root / "runs").iterdir()) == ["done"]


# ---- disk full while checkpointing: one line, the backup intact, resumable --------------


@pytest.mark.parametrize("target, after, resumed", [
    ("training.callbacks.atomic_save_weights", 1, "Resuming from the backup"),  # epoch 2's backup
    ("training.callbacks.atomic_save_model", 0, "interrupted before it finished an epoch"),
    ("training.trainer.atomic_save_model", 0, "All 2 epochs were trained already"),  # model.keras
    ("training.results.atomic_write_json", 0, "All 2 epochs were trained already"),  # results
])
def test_disk_full_while_checkpointing_is_one_line_and_resumable(
        tmp_path, data, capsys, monkeypatch, target, after, resumed):
    args = _args(tmp_path, "full", data, "--epochs", "2", "--lr", "0.01")
    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(target, _disk_full(after)(getattr(sys.modules[module], name)))
    assert main(args) == 1
    _one_line_error(capsys, "No space left on device", "run the same command again")
    run = tmp_path / "runs" / "full"
    assert not (run / "results.json").exists()
    assert not [p for p in run.rglob(".tmp-*")]
    monkeypatch.undo()
    assert main(args) == 0
    assert resumed in capsys.readouterr().out
    rows = (run / "history.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1"]


@pytest.fixture
def small_disk(tmp_path):
    """A real filesystem of its own (a 64 MB tmpfs): skipped where mounting is not permitted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode:
        pytest.skip(f"mount -t tmpfs is not permitted here ({mounted.stderr.strip()})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk):
    """Writes a file that takes all the free space of `disk`; returns it."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    assert shutil.disk_usage(disk).free < (1 << 16)
    return filler


@pytest.mark.parametrize("backups_before_full, kept, resumed", [
    (0, "no epoch was backed up yet", "interrupted before it finished an epoch"),
    (1, "the last completed epoch (1) is kept", "Resuming from the backup"),
])
def test_a_real_full_disk_is_one_line_and_resumable(
        small_disk, data, capsys, monkeypatch, backups_before_full, kept, resumed):
    """The run folder's filesystem really fills up (before the first backup's weights,
    an HDF5 file, are written; or after it): one line, no crash, the backup intact;
    once the space is back, the same command resumes."""
    args = _args(small_disk, "full", data, "--epochs", "2", "--lr", "0.01")
    real, saves, filled = AtomicBackupAndRestore._save_model, [], []

    def save_then_fill(self):
        if not backups_before_full:
            filled.append(_fill(small_disk))
        real(self)
        saves.append(1)
        if len(saves) == backups_before_full:
            filled.append(_fill(small_disk))

    monkeypatch.setattr(AtomicBackupAndRestore, "_save_model", save_then_fill)
    assert main(args) == 1
    *notices, error = capsys.readouterr().err.strip().splitlines()
    # The curves are a picture: a notice says that they could not be drawn.
    assert all(line.startswith("notice: the training curves") for line in notices), notices
    run = small_disk / "runs" / "full"
    assert error.startswith(f"error: the run stopped: No space left on device ({run}"), error
    assert kept in error and "run the same command again" in error, error
    assert not [p for p in run.rglob(".tmp-*")]
    assert len(list((run / "backup").glob("*.weights.h5"))) == backups_before_full
    monkeypatch.undo()
    filled[0].unlink()  # the space is back
    assert main(args) == 0
    assert resumed in capsys.readouterr().out
    rows = (run / "history.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1"]


# ---- damaged resume state: name the file, offer --overwrite, change nothing ------------


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, data):
    """A run of 3 epochs interrupted (Ctrl-C) after its first epoch's backup."""
    root = tmp_path_factory.mktemp("interrupted")
    # A relative --runs-dir (part of the settings a resume must match), so that the
    # tests can run it from a copy.
    args = _args(root, "cut", data, "--epochs", "3", runs="runs")
    real = AtomicBackupAndRestore._save_model

    def save_then_interrupt(self):
        real(self)
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as m:
        m.chdir(root)
        m.setattr(AtomicBackupAndRestore, "_save_model", save_then_interrupt)
        assert main(args) == 130
    return SimpleNamespace(root=root, args=args)


def _moved(interrupted, runs, monkeypatch):
    """The interrupted run's arguments, run from a copy of its runs folder at `runs`."""
    shutil.copytree(interrupted.root / "runs", runs)
    monkeypatch.chdir(runs.parent)
    return interrupted.args


def _flip(path, offset):
    raw = bytearray(path.read_bytes())
    offset = offset if offset >= 0 else len(raw) // 2
    raw[offset:offset + 8] = bytes(b ^ 0xFF for b in raw[offset:offset + 8])
    path.write_bytes(bytes(raw))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _weights(run):
    (path,) = (run / "backup").glob("*.weights.h5")
    return path


DAMAGE = {  # case: (what it does to the run folder, the file the error must name)
    "weights_flipped_mid": (lambda run: _flip(_weights(run), -1), ".weights.h5"),
    "weights_flipped_header": (lambda run: _flip(_weights(run), 0), ".weights.h5"),
    "weights_truncated": (lambda run: _truncate(_weights(run)), ".weights.h5"),
    "weights_missing": (lambda run: _weights(run).unlink(), ".weights.h5"),
    "metadata_truncated": (lambda run: _truncate(run / "backup" / "training_metadata.json"),
                           "training_metadata.json"),
    "metadata_wrong_type": (lambda run: (run / "backup" / "training_metadata.json").write_text(
        '{"epoch": "one"}'), "training_metadata.json"),
    "config_truncated": (lambda run: _truncate(run / "config.json"), "config.json"),
    "config_deeply_nested": (lambda run: (run / "config.json").write_text(
        "[" * 100000 + "]" * 100000), "config.json"),
    "config_a_list": (lambda run: (run / "config.json").write_text("[]"), "config.json"),
    "history_garbage_row": (lambda run: (run / "history.csv").write_text(
        (run / "history.csv").read_text().replace("\n0,", "\nzero,")), "history.csv"),
    "history_nul_bytes": (lambda run: (run / "history.csv").write_bytes(
        (run / "history.csv").read_bytes().replace(b".", b"\0")), "history.csv"),
    "history_header_lost": (lambda run: (run / "history.csv").write_text(
        "\n".join((run / "history.csv").read_text().splitlines()[1:]) + "\n"), "history.csv"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_resume_state_names_the_file_and_changes_nothing(
        interrupted, tmp_path, capsys, monkeypatch, case):
    runs = tmp_path / "runs"
    args = _moved(interrupted, runs, monkeypatch)
    damage, file_name = DAMAGE[case]
    damage(runs / "cut")
    before = snapshot(runs)
    assert main(args) == 1
    _one_line_error(capsys, file_name, "--overwrite")
    assert snapshot(runs) == before


def test_a_damaged_run_starts_over_with_overwrite(interrupted, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    args = _moved(interrupted, runs, monkeypatch)
    _flip(_weights(runs / "cut"), -1)
    assert main(_with(args, "--overwrite")) == 0
    results = json.loads((runs / "cut" / "results.json").read_text())
    assert results["resumed_from_epoch"] == 0 and results["epochs"] == 3


def test_the_interrupted_run_resumes_from_its_backup(interrupted, tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    assert main(_moved(interrupted, runs, monkeypatch)) == 0, capsys.readouterr().err
    assert "epoch 2 of 3" in capsys.readouterr().out
    assert json.loads((runs / "cut" / "results.json").read_text())["resumed_from_epoch"] == 1
