"""`--strategy multi-worker`: several `training.cifar` processes on 127.0.0.1 (JAX, gloo on CPU).

Every subprocess runs under a timeout, on a free port, so that nothing can hang CI.
"""

import os
import socket
import subprocess
import sys
import time

import pytest
from training_helpers import REPO, last_wins

#: A tiny run: two epochs of 64 synthetic images, global batch 16.
TINY = ["--data", "synthetic", "--synthetic-examples", "64", "--image-size", "32",
        "--width", "0.1", "--stem", "cifar", "--epochs", "2", "--batch-size", "16",
        "--no-export", "--verbose", "2", "--seed", "1", "--pipeline", "numpy",
        "--strategy", "multi-worker", "--num-processes", "2", "--name", "two"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, tmp_path, backend="jax"):
    env = dict(os.environ, KERAS_BACKEND=backend,
               PYTHONPATH=os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p))
    return subprocess.Popen([sys.executable, "-m", "training.cifar", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs, timeout):
    out = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        out.append((p.returncode, stdout, stderr))
    return out


def _last_line(stderr):
    return [line for line in stderr.splitlines() if line.strip()][-1]


@pytest.mark.slow
def test_two_processes_train_with_the_global_batch_split_and_one_run_folder(tmp_path):
    port = _free_port()
    runs = tmp_path / "runs"
    common = [*TINY, "--job-addresses", f"127.0.0.1:{port}", "--runs-dir", str(runs),
              "--init-timeout", "120"]
    procs = [_start([*common, "--process-id", str(i)], tmp_path) for i in (0, 1)]
    (rc0, out0, err0), (rc1, out1, err1) = _finish(procs, timeout=540)
    assert (rc0, rc1) == (0, 0), (err0[-2000:], err1[-2000:])
    # Each process feeds half of every global batch of 16.
    assert "Process 0 of 2: 8 of every global batch of 16" in out0
    assert "Process 1 of 2: 8 of every global batch of 16" in out1
    # Only the chief wrote: one run folder, the other process left nothing behind.
    assert [p.name for p in runs.iterdir()] == ["two"]
    assert (runs / "two" / "model.keras").is_file() and (runs / "two" / "results.json").is_file()
    assert "Wall time" in out0 and "Wall time" not in out1  # the summary is printed once
    # Both processes end with the same weights, bit for bit.
    digests = [_digest(out, i) for i, out in enumerate((out0, out1))]
    assert digests[0] == digests[1], (out0[-1500:], out1[-1500:])


def _digest(stdout, index):
    prefix = f"Process {index} of 2: weights sha256 "
    [line] = [line for line in stdout.splitlines() if line.startswith(prefix)]
    return line[len(prefix):].strip()


#: One global batch that is the whole training set (16 examples), without
#: augmentation or dropout: every step of a 2-process run then sees the same 16
#: examples as the 1-process run's step (in another order), so the two compute
#: the same function of the same data and differ only in float rounding.
SAME_STEPS = last_wins([*TINY, "--synthetic-examples", "16", "--epochs", "3", "--no-augment",
                        "--dropout", "0", "--aux-dropout", "0", "--name", "same"])


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "known open finding of issue 16: after 3 steps the 2-process weights differ from the "
    "1-process ones by up to 0.019 (first convolution), far beyond float rounding; the cause "
    "(initialization under keras.distribution, or the shards' data) is not yet found"))
def test_two_processes_reach_the_weights_of_one_process_with_the_same_global_batch(tmp_path):
    import keras
    import numpy as np

    import keras_googlenet  # noqa: F401 (registers its layers for load_model)

    port = _free_port()
    two = [*SAME_STEPS, "--job-addresses", f"127.0.0.1:{port}", "--runs-dir",
           str(tmp_path / "two"), "--init-timeout", "120"]
    procs = [_start([*two, "--process-id", str(i)], tmp_path) for i in (0, 1)]
    one = last_wins([*_without(SAME_STEPS, "--num-processes"), "--strategy", "none",
                     "--runs-dir", str(tmp_path / "one")])
    results = _finish(procs, timeout=540)
    [(rc, _, err)] = _finish([_start(one, tmp_path)], timeout=300)
    assert [r[0] for r in results] == [0, 0] and rc == 0, [r[2][-1500:] for r in results] + [err]
    load = keras.saving.load_model
    w2 = load(tmp_path / "two" / "same" / "model.keras", compile=False).get_weights()
    w1 = load(tmp_path / "one" / "same" / "model.keras", compile=False).get_weights()
    assert len(w1) == len(w2)
    # 3 SGD steps of float32 sums in another order (16 examples in one device vs
    # 8 + 8 over gloo): relative differences of float32 rounding (~1e-7 a sum),
    # amplified by the steps; 1e-4 of each tensor's scale is far below what one
    # different example or step would change (the weights move ~1e-2 per step).
    for a, b in zip(w1, w2):
        scale = max(float(np.abs(a).max()), 1e-3)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * scale)
    print("largest difference / tensor scale:", max(
        float(np.abs(a - b).max()) / max(float(np.abs(a).max()), 1e-3) for a, b in zip(w1, w2)))


def _without(args, flag):
    """`args` without `flag` and its value."""
    i = args.index(flag)
    return [*args[:i], *args[i + 2:]]


def test_a_process_without_its_coordinator_fails_in_bounded_time(tmp_path):
    args = [*TINY, "--job-addresses", f"127.0.0.1:{_free_port()}", "--process-id", "1",
            "--init-timeout", "5", "--runs-dir", str(tmp_path / "runs")]
    started = time.monotonic()
    [(rc, _, err)] = _finish([_start(args, tmp_path)], timeout=120)
    assert rc != 0
    assert time.monotonic() - started < 100
    assert "could not reach all 2 processes within --init-timeout 5 s" in _last_line(err)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_processes_started_with_other_settings_both_stop_with_one_line(tmp_path):
    port = _free_port()
    common = [*TINY, "--job-addresses", f"127.0.0.1:{port}", "--runs-dir", str(tmp_path / "runs"),
              "--init-timeout", "60"]
    procs = [_start([*common, "--process-id", "0"], tmp_path),
             _start(last_wins([*common, "--process-id", "1", "--batch-size", "32"]), tmp_path)]
    results = _finish(procs, timeout=240)
    for rc, _, err in results:
        assert rc != 0
        line = _last_line(err)
        assert "other settings than process 0 (--batch-size)" in line, err[-1500:]
    assert not (tmp_path / "runs" / "two" / "model.keras").exists()


def test_multi_worker_on_tensorflow_stops_at_once_pointing_to_jax(tmp_path):
    args = [*TINY, "--job-addresses", f"127.0.0.1:{_free_port()}", "--process-id", "0",
            "--runs-dir", str(tmp_path / "runs")]
    [(rc, _, err)] = _finish([_start(args, tmp_path, backend="tensorflow")], timeout=120)
    assert rc != 0
    line = _last_line(err)
    assert "KERAS_BACKEND=jax" in line and "keras-team/keras#20585" in line
    assert not (tmp_path / "runs").exists()
