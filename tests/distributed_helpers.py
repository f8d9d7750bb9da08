"""Helpers of the `--strategy multi-worker` tests: `training.cifar` processes on 127.0.0.1.

Every subprocess runs under a timeout, on a free port, so that nothing can hang CI.
"""

import os
import subprocess
import sys
import tempfile

from training_helpers import CHEAP_XLA_FLAGS, REPO, no_tensorflow_env

from benchmarks.workers import free_port  # noqa: F401 (the tests' too)
from training.distributed import printed_digests

#: A tiny run: two epochs of 64 synthetic images, global batch 16, two processes.
TINY = ["--data", "synthetic", "--synthetic-examples", "64", "--image-size", "32",
        "--width", "0.1", "--stem", "cifar", "--epochs", "2", "--batch-size", "16",
        "--no-export", "--verbose", "2", "--seed", "1", "--pipeline", "numpy",
        "--precision", "float32",
        "--strategy", "multi-worker", "--num-processes", "2", "--name", "two"]


def cluster(args, *, init_timeout=120):
    """`args` plus the flags that join two processes on a free port of 127.0.0.1
    (`--process-id` is added per process by `start_processes`)."""
    return [*args, "--job-addresses", f"127.0.0.1:{free_port()}",
            "--init-timeout", str(init_timeout)]


#: JAX's persistent compilation cache, shared by the tests' JAX processes, for
#: every program however small: each process of these runs compiles the same
#: programs, down to one small initializer per variable (building the width-0.1
#: model on JAX took 44 s the first time, 4 s with this cache filled).
JAX_CACHE_ENV = {
    "JAX_COMPILATION_CACHE_DIR": os.path.join(tempfile.gettempdir(),
                                              f"keras-googlenet-tests-jax-cache-{os.getuid()}"),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}

#: The environment of the tests' JAX processes (training, benchmarks, the model
#: tests under JAX): the shared cache and cheap XLA optimisation (`CHEAP_XLA_FLAGS`),
#: which lowers LLVM's effort on the same XLA programs, not what they compute: the
#: model tests' comparisons (to 1e-5, and the shipped weights' logits recorded on
#: TensorFlow) pass with it (benchmarks/results/test_suite_time.md).
JAX_TEST_ENV = {**JAX_CACHE_ENV, "XLA_FLAGS": CHEAP_XLA_FLAGS}


def jax_env(folder):
    """The environment of the tests' JAX `training.cifar` processes: `JAX_TEST_ENV`, the
    repository on the path, and TensorFlow hidden as if it were not installed (its
    `sitecustomize.py` written into `folder`), as on the GPU machines. Their runs need
    none of it (synthetic data, the numpy pipeline, no export), but with it installed
    `keras.utils.set_random_seed` imports it: 5.6 CPU s a process."""
    return dict(no_tensorflow_env(folder), KERAS_BACKEND="jax", **JAX_TEST_ENV)


def start(args, tmp_path, backend="jax"):
    """`python -m training.cifar ARGS` in `tmp_path`, its output captured (on JAX
    without TensorFlow, `jax_env`)."""
    if backend == "jax":
        env = jax_env(tmp_path / "hide_tensorflow")
    else:
        env = dict(os.environ, KERAS_BACKEND=backend, **JAX_TEST_ENV, PYTHONPATH=os.pathsep.join(
            p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p))
    return subprocess.Popen([sys.executable, "-m", "training.cifar", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def start_processes(args, tmp_path, count=2):
    """One `start` per process id of a `cluster`."""
    return [start([*args, "--process-id", str(i)], tmp_path) for i in range(count)]


def finish(procs, timeout):
    """`(returncode, stdout, stderr)` of each process; kills them all on a timeout."""
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


def last_line(stderr):
    """The last non-empty line of a process's stderr."""
    return [line for line in stderr.splitlines() if line.strip()][-1]


def digest(stdout, index, count=2):
    """The weights digest process `index` printed (`training.distributed.weights_digest`),
    of a process that ran one `fit`."""
    [printed] = printed_digests(stdout, index, count)
    return printed
