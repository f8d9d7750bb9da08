"""`--strategy multi-worker` runs to the end: killed and resumed, and measured
against one process.

A two-process run (JAX on 127.0.0.1) whose chief is killed -9, then resumed by
the same commands: the resumed run is also the one the two-process checks read
(global batch split, one run folder, held-out figures over both processes).
Two processes against one with the same global batch, seed and data. The
helpers are in tests/distributed_helpers.py.
"""

import csv
import os
import signal
import time
import types

import numpy as np
import pytest
from distributed_helpers import TINY, cluster, digest, finish, jax_env, start_processes
from training_helpers import last_wins

from benchmarks.reduction_order import NETWORKS, train_processes
from training.distributed import weights_digest


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The two-process runs of `benchmarks.reduction_order` (one global batch that is
    the whole training set of 16 examples, no augmentation or dropout, lr 0.01, 3
    steps: a two-process step sees the same 16 examples as the one-process step, 8 +
    8 of them, so the two differ only in the order of the floating-point sums), both
    `NETWORKS` one after the other in the same two processes:
    `{network: (losses, weights, digests)}`. Its own fixture, read first by a test
    of its own, so that no test waits for both this and `one_process` (the two in one
    fixture took 112 s in a CI run, over the 90 s a test may)."""
    workdir = tmp_path_factory.mktemp("two")
    return train_processes(NETWORKS, 3, workdir, 2, env=jax_env(workdir / "hide_tensorflow"))


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The same runs in one process: `{network: (losses, weights, [])}`."""
    workdir = tmp_path_factory.mktemp("one")
    return train_processes(NETWORKS, 3, workdir, 1, env=jax_env(workdir / "hide_tensorflow"))


@pytest.mark.slow
def test_two_processes_end_each_run_with_the_same_weights_as_the_saved_model(two_processes):
    """Both processes hold the same weights, bit for bit, after each of the two runs
    they trained one after the other, and they are the weights the chief saved."""
    for network, (losses, weights, digests) in two_processes.items():
        assert len(losses) == 3 and all(np.isfinite(losses)), (network, losses)
        assert len(digests) == 2 and digests[0] == digests[1], (network, digests)
        saved = types.SimpleNamespace(get_weights=lambda: weights)
        assert weights_digest(saved) == digests[0], network


@pytest.mark.slow
def test_without_batchnorm_two_processes_reach_the_weights_of_one_process(two_processes,
                                                                          one_process):
    """The 2014 network (LRN, no BatchNorm): the weights agree.

    Tolerance: 2e-3 of each tensor's largest magnitude after the 3 steps. Measured
    (benchmarks/results/multi_worker_reduction_order.json): 1 vs 2 processes differ
    by at most 2.0e-4 of the scale, exactly as much as one process fed the same 16
    examples in other orders differs from itself: only the order of the sums
    differs. The training loss of every step agrees to 1e-5 (measured: 7e-8).
    """
    (loss1, w1, _), (loss2, w2, _) = one_process["no_batchnorm"], two_processes["no_batchnorm"]
    assert len(w1) == len(w2) and len(loss1) == len(loss2) == 3
    for a, b in zip(w1, w2):
        scale = max(float(np.abs(a).max()), 1e-3)
        np.testing.assert_allclose(b, a, rtol=0, atol=2e-3 * scale)
    np.testing.assert_allclose(loss2, loss1, rtol=1e-5)


@pytest.mark.slow
def test_with_batchnorm_two_processes_follow_the_loss_curve_of_one_process(two_processes,
                                                                           one_process):
    """The default network (BatchNorm over the global batch of 16): the losses agree.

    The first step starts from the same weights, so its loss (BatchNorm statistics
    of the whole global batch, on both processes) agrees to 1e-5 (measured: 1.2e-7;
    per-process statistics would not). The weights themselves cannot be compared:
    with BatchNorm over 16 images one process disagrees with itself by up to 14%
    of a tensor's scale after 3 steps when its batch is merely permuted
    (benchmarks/results/multi_worker_reduction_order.json). The losses of steps 2
    and 3 agree within 1e-3 and 5e-3 (relative): one process's permuted batches
    spread them by up to 1.5e-5 and 5.2e-4, one vs two processes by 1.0e-5 and 8.7e-4.
    """
    loss1, loss2 = one_process["batchnorm"][0], two_processes["batchnorm"][0]
    assert len(loss1) == len(loss2) == 3
    for step, (a, b, rtol) in enumerate(zip(loss1, loss2, (1e-5, 1e-3, 5e-3)), start=1):
        assert b == pytest.approx(a, rel=rtol), (step, loss1, loss2)


def _wait_for_epochs(run_dir, epochs, procs, timeout=420):
    """Waits until the chief's backup holds `epochs` completed epochs."""
    from training.callbacks import AtomicBackupAndRestore

    backup = AtomicBackupAndRestore(str(run_dir / "backup"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), "a process ended before it was killed"
        try:
            if backup.saved_epoch() >= epochs:
                return
        except Exception:  # noqa: BLE001 (a backup being replaced: look again)
            pass
        time.sleep(0.2)
    raise AssertionError(f"no backup of {epochs} epochs within {timeout} s")


#: A dead chief is noticed at once; another process within JAX's heartbeat
#: timeout (the run's --init-timeout 20 + 15 s); 45 s to spare.
KILL_NOTICED_WITHIN = 20 + 15 + 45


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A two-process run of 2 epochs (with --ema and --tta-flip, whose held-out
    evaluations span both processes) whose process 0 (the chief: it writes the
    backups and hosts the coordinator) is killed -9 after its first epoch.

    Returns a namespace: `args` (the command's flags, less `--process-id`),
    `tmp_path`, `run_dir`, and `survivor` (`(returncode, stderr, seconds from
    the kill until it stopped)` of process 1). (Killing process 1 instead was
    checked by hand: its peer stopped after JAX's heartbeat timeout, 36 s, and
    the run resumed the same way.)
    """
    tmp_path = tmp_path_factory.mktemp("killed")
    args = cluster(last_wins([*TINY, "--epochs", "2", "--runs-dir", str(tmp_path / "runs"),
                              "--ema", "--tta-flip"]), init_timeout=20)
    run_dir = tmp_path / "runs" / "two"
    procs = start_processes(args, tmp_path)
    _wait_for_epochs(run_dir, 1, procs)
    os.kill(procs[0].pid, signal.SIGKILL)
    killed_at = time.monotonic()
    [(rc, _, err)] = finish([procs[1]], timeout=KILL_NOTICED_WITHIN + 60)
    procs[0].wait()
    return types.SimpleNamespace(args=args, tmp_path=tmp_path, run_dir=run_dir,
                                 survivor=(rc, err, time.monotonic() - killed_at))


@pytest.fixture(scope="module")
def resumed(killed):
    """The same two commands again, after `killed`: `[(rc, stdout, stderr)]` of
    processes 0 and 1."""
    return finish(start_processes(killed.args, killed.tmp_path), timeout=540)


@pytest.mark.slow
def test_kill_9_of_the_chief_stops_the_other_process_after_a_backed_up_epoch(killed):
    from training.callbacks import AtomicBackupAndRestore

    rc, err, seconds = killed.survivor
    assert rc != 0, "the surviving process finished a run its peer left"
    assert seconds < KILL_NOTICED_WITHIN, err[-1500:]
    assert AtomicBackupAndRestore(str(killed.run_dir / "backup")).saved_epoch() == 1


@pytest.mark.slow
def test_both_commands_again_resume_the_run_from_its_last_completed_epoch(killed, resumed):
    """Every epoch is trained once, and both processes end with the same weights."""
    assert [rc for rc, _, _ in resumed] == [0, 0], [err[-1500:] for _, _, err in resumed]
    for _, out, _ in resumed:
        [line] = [line for line in out.splitlines() if line.startswith("Resuming from")]
        assert line.endswith("backup: epoch 2 of 2"), line
    assert digest(resumed[0][1], 0) == digest(resumed[1][1], 1)
    with open(killed.run_dir / "history.csv", newline="") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1]
    run_dir = killed.run_dir
    assert (run_dir / "results.json").is_file() and not (run_dir / "backup").exists()


@pytest.mark.slow
def test_two_processes_train_with_the_global_batch_split_and_one_run_folder(killed, resumed):
    """The resumed run, as any two-process run: each process feeds its half of
    every global batch, only the chief writes, and the held-out figures (EMA,
    TTA) cover the whole held-out split."""
    run_dir = killed.run_dir
    (rc0, out0, err0), (rc1, out1, err1) = resumed
    assert (rc0, rc1) == (0, 0), (err0[-2000:], err1[-2000:])
    # Each process decoded half of the data (64 training, 6 held-out images) and
    # feeds half of every global batch of 16.
    for i, out in enumerate((out0, out1)):
        assert (f"Process {i} of 2: 8 of every global batch of 16, 4 steps per epoch; its "
                "share of the data: 32 training / 3 held-out images") in out
    # Only the chief wrote: one run folder, the other process left nothing behind.
    assert [p.name for p in run_dir.parent.iterdir()] == ["two"]
    assert (run_dir / "model.keras").is_file() and (run_dir / "results.json").is_file()
    assert "Wall time" in out0 and "Wall time" not in out1  # the summary is printed once
    # Both processes end with the same weights, bit for bit.
    digests = [digest(out, i) for i, out in enumerate((out0, out1))]
    assert digests[0] == digests[1], (out0[-1500:], out1[-1500:])
    _assert_heldout_figures_cover_the_whole_split(run_dir, epochs=2)


def _assert_heldout_figures_cover_the_whole_split(run, epochs):
    """The chief's EMA and TTA held-out accuracies are those of its final
    model on all 6 held-out images, recomputed here in one process, and every
    one of the `epochs` epochs has its EMA and TTA figures."""
    import dataclasses
    import json

    import keras

    from training.config import TrainConfig
    from training.data import build_datasets
    from training.evaluation import flip_tta_model, heldout_accuracies
    from training.recipe import compile_model, fan_out_datasets
    from training.run import read_history

    history = read_history(run / "history.csv")
    assert [int(r["epoch"]) for r in history] == list(range(epochs))
    for column in ("val_main_accuracy_tta", "val_main_accuracy_ema", "val_main_accuracy_ema_tta"):
        assert all(0 <= float(r[column]) <= 1 for r in history), column
    results = json.loads((run / "results.json").read_text())
    assert results["num_val"] == 6 and results["final_weights"] == "ema"
    config = TrainConfig.load(run / "config.json")
    config = dataclasses.replace(config, strategy="none", num_processes=None, process_id=None,
                                 job_addresses=None).resolve()
    data = build_datasets(config)
    model = keras.models.load_model(run / "model.keras")
    compile_model(model, config, data.steps_per_epoch)
    data = fan_out_datasets(data, model.output_names)
    heads = list(model.output_names)
    plain = heldout_accuracies(model, data.val)
    # Accuracies over 6 images of random labels are coarse (mostly 0): the loss of
    # the same evaluate over the same batches shows they span all 6 images.
    logs = model.evaluate(data.val, return_dict=True, verbose=0)
    assert results["val_loss"]["main"] == pytest.approx(logs["main_loss"], rel=1e-4)
    tta = heldout_accuracies(flip_tta_model(model), data.val)
    for head in heads:  # 6 images: any other share of them would be off by 1/6 or more
        assert results["val_accuracy"][head] == pytest.approx(plain[head], abs=1e-6), head
        assert results["val_accuracy_tta"][head] == pytest.approx(tta[head], abs=1e-6), head
    # The last epoch's EMA figures are the final model's (EMA) weights too.
    assert float(history[-1]["val_main_accuracy_ema"]) == pytest.approx(plain["main"], abs=1e-6)
    assert float(history[-1]["val_main_accuracy_ema_tta"]) == pytest.approx(tta["main"],
                                                                               abs=1e-6)
