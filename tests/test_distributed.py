"""`--strategy multi-worker`: starting several `training.cifar` processes on 127.0.0.1
(JAX, gloo on CPU), the bounded-time failures, and the TensorFlow backend's refusal.

The runs to the end (a two-process run killed and resumed, one process against
two) are in tests/test_distributed_runs.py, so that the two files run on
different xdist workers.
"""

import fcntl
import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from distributed_helpers import TINY, finish, free_port, last_line, start
from training_helpers import REPO, last_wins

from training import distributed
from training.config import ConfigError


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
