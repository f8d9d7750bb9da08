"""`--strategy multi-worker`: starting several `training.cifar` processes on 127.0.0.1
(JAX, gloo on CPU), the bounded-time failures, and the TensorFlow backend's refusal.

The longer runs (one process against two, kill -9 and resume) are in
tests/test_distributed_runs.py, so that the two files run on different xdist workers.
"""

import fcntl
import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from distributed_helpers import (TINY, cluster, digest, finish, free_port, last_line, start,
                                 start_processes)
from training_helpers import REPO, last_wins

from training import distributed
from training.config import ConfigError


@pytest.mark.slow
def test_two_processes_train_with_the_global_batch_split_and_one_run_folder(tmp_path):
    runs = tmp_path / "runs"
    # With --ema and --tta-flip, whose held-out evaluations span both processes.
    procs = start_processes(cluster([*TINY, "--runs-dir", str(runs), "--ema", "--tta-flip"]),
                            tmp_path)
    (rc0, out0, err0), (rc1, out1, err1) = finish(procs, timeout=540)
    assert (rc0, rc1) == (0, 0), (err0[-2000:], err1[-2000:])
    # Each process decoded half of the data (64 training, 6 held-out images) and
    # feeds half of every global batch of 16.
    for i, out in enumerate((out0, out1)):
        assert (f"Process {i} of 2: 8 of every global batch of 16, 4 steps per epoch; its "
                "share of the data: 32 training / 3 held-out images") in out
    # Only the chief wrote: one run folder, the other process left nothing behind.
    assert [p.name for p in runs.iterdir()] == ["two"]
    assert (runs / "two" / "model.keras").is_file() and (runs / "two" / "results.json").is_file()
    assert "Wall time" in out0 and "Wall time" not in out1  # the summary is printed once
    # Both processes end with the same weights, bit for bit.
    digests = [digest(out, i) for i, out in enumerate((out0, out1))]
    assert digests[0] == digests[1], (out0[-1500:], out1[-1500:])
    _assert_heldout_figures_cover_the_whole_split(runs / "two")


def _assert_heldout_figures_cover_the_whole_split(run):
    """The chief's EMA and TTA held-out accuracies are those of its final
    model on all 6 held-out images, recomputed here in one process."""
    import dataclasses
    import json

    import keras

    from training.config import TrainConfig
    from training.data import build_datasets
    from training.evaluation import flip_tta_model, heldout_accuracies
    from training.recipe import compile_model, fan_out_datasets
    from training.run import read_history

    history = read_history(run / "history.csv")
    assert [int(r["epoch"]) for r in history] == [0, 1]
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


@pytest.mark.slow
def test_a_process_without_its_coordinator_fails_in_bounded_time(tmp_path):
    args = [*TINY, "--job-addresses", f"127.0.0.1:{free_port()}", "--process-id", "1",
            "--init-timeout", "5", "--runs-dir", str(tmp_path / "runs")]
    started = time.monotonic()
    [(rc, _, err)] = finish([start(args, tmp_path)], timeout=120)
    assert rc != 0
    assert time.monotonic() - started < 100
    assert "could not reach all 2 processes within --init-timeout 5 s" in last_line(err)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_processes_started_with_other_settings_both_stop_with_one_line(tmp_path):
    port = free_port()
    common = [*TINY, "--job-addresses", f"127.0.0.1:{port}", "--runs-dir", str(tmp_path / "runs"),
              "--init-timeout", "60"]
    procs = [start([*common, "--process-id", "0"], tmp_path),
             start(last_wins([*common, "--process-id", "1", "--batch-size", "32"]), tmp_path)]
    results = finish(procs, timeout=240)
    for rc, _, err in results:
        assert rc != 0
        line = last_line(err)
        assert "other settings than process 0 (--batch-size)" in line, err[-1500:]
    assert not (tmp_path / "runs" / "two" / "model.keras").exists()


@pytest.mark.slow
def test_multi_worker_on_tensorflow_stops_at_once_pointing_to_jax(tmp_path):
    args = [*TINY, "--job-addresses", f"127.0.0.1:{free_port()}", "--process-id", "0",
            "--runs-dir", str(tmp_path / "runs")]
    [(rc, _, err)] = finish([start(args, tmp_path, backend="tensorflow")], timeout=120)
    assert rc != 0
    line = last_line(err)
    assert "KERAS_BACKEND=jax" in line and "keras-team/keras#20585" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_keras_fit_still_fails_under_tensorflows_multi_worker_strategy(tmp_path):
    """Why TensorFlow is refused, checked with the installed versions: two real
    workers of tf.distribute.MultiWorkerMirroredStrategy on 127.0.0.1 (TF_CONFIG),
    our model built and compiled in the strategy's scope, model.fit on tf.data
    (tests/tf_multi_worker_probe.py, the shape of TensorFlow's multi-worker Keras
    tutorial). If this test fails, fit works now: support TensorFlow in
    training.distributed and drop TF_MULTI_WORKER_UNSUPPORTED."""
    ports = f"{free_port()},{free_port()}"
    probe = str(REPO / "tests" / "tf_multi_worker_probe.py")
    procs = [subprocess.Popen([sys.executable, probe, ports, str(i)], cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in (0, 1)]
    for rc, out, err in finish(procs, timeout=300):
        assert "replicas in sync: 2" in out, err[-2000:]  # the two workers did join
        assert rc != 0 and "FIT FINISHED" not in out
        assert "Attempt to convert a value (PerReplica" in err, err[-2000:]


@pytest.mark.slow
def test_a_second_process_with_the_same_process_id_stops_with_one_line(tmp_path, monkeypatch):
    """Two processes started with --process-id 0: the second stops at once with one
    line naming the id and the first's pid; the first is not aborted by it."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the processes' lock files
    port = free_port()
    args = [*TINY, "--job-addresses", f"127.0.0.1:{port}", "--process-id", "0",
            "--init-timeout", "60", "--runs-dir", str(tmp_path / "runs")]
    first = start(args, tmp_path)
    try:
        lock = tmp_path / os.path.basename(distributed.process_id_lock(port, 0))
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.2)
        [(rc, _, err)] = finish([start(args, tmp_path)], timeout=60)
        assert rc == 1, err[-1500:]
        line = last_line(err)
        assert line.startswith("error: --process-id 0: another process (pid "
                               f"{first.pid})"), err[-1500:]
        assert "Traceback" not in err and "Check failure" not in err
        assert first.poll() is None  # still waiting for process 1, not aborted
    finally:
        first.kill()
        first.communicate()
    assert not (tmp_path / "runs").exists()


def test_claim_process_id_refuses_a_held_id_or_a_busy_coordinator_port(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(distributed, "_CLAIMED", {})
    port = free_port()
    with open(distributed.process_id_lock(port, 1), "w") as held:  # another process's lock
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242")
        held.flush()
        with pytest.raises(ConfigError, match=r"--process-id 1: another process \(pid 4242\) "
                           rf"on this host is already process 1 of the run with coordinator "
                           rf"127.0.0.1:{port}"):
            distributed.claim_process_id(f"127.0.0.1:{port},127.0.0.1:1", 1)
    with socket.socket() as listener:  # another program on the coordinator's port
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with pytest.raises(ConfigError, match=f"coordinator's port {port} .* already in use"):
            distributed.claim_process_id(f"127.0.0.1:{port}", 0)
    assert distributed._CLAIMED == {}  # nothing held after a refusal
    distributed.claim_process_id(f"127.0.0.1:{port}", 0)  # free again: claimed
    distributed.claim_process_id(f"127.0.0.1:{port}", 0)  # a second run in this process
    for lock in distributed._CLAIMED.values():
        lock.close()
