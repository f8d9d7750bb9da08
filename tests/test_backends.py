"""The model library runs unchanged on JAX and PyTorch.

The backend-agnostic test files (model, layers) are run again in subprocesses
under `KERAS_BACKEND=jax` and `KERAS_BACKEND=torch`, so the README's one test
command covers all three backends. Each backend's run is split into shards
(`--shard I/N`, tests/conftest.py), so that no test of the suite runs for
minutes; together the shards run every test of the files once.
"""

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shard_of
from distributed_helpers import JAX_TEST_ENV

REPO = Path(__file__).resolve().parents[1]
BACKEND_AGNOSTIC = ("tests/test_model.py", "tests/test_layers.py")
SHARDS = {"jax": 2, "torch": 1}


@pytest.mark.slow
@pytest.mark.backends("tensorflow")  # the outer run; the inner runs switch backend
@pytest.mark.parametrize("backend, shard", [
    (backend, f"{i}/{count}") for backend, count in SHARDS.items() for i in range(count)])
def test_model_tests_pass_under(backend, shard):
    # JAX's persistent compilation cache, shared with the suite's other JAX processes,
    # and cheap XLA optimisation: compiling is most of a cold run's time (both files
    # on JAX with an empty cache: 212 and 211 CPU s with XLA's defaults, 178 and 157).
    env = dict(os.environ, KERAS_BACKEND=backend, **JAX_TEST_ENV)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
         "--durations=0", "--shard", shard, *BACKEND_AGNOSTIC],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200,
    )
    tail = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    summary = result.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    assert "skipped" not in summary and "failed" not in summary, summary
    # Every test of this shard ran: the shards of the collected tests cover them all.
    assert passed == len(shard_of(_collected(), shard)), summary


@functools.cache
def _collected():
    """The node ids the files hold, in collection order (under this process's backend)."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", "-p", "no:cacheprovider",
         *BACKEND_AGNOSTIC], cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    ids = [line for line in result.stdout.splitlines() if "::" in line]
    assert ids, result.stdout[-2000:]
    return ids


def test_shards_cover_every_test_once():
    ids = [f"t{i}" for i in range(10)]
    for count in SHARDS.values():
        shards = [shard_of(ids, f"{i}/{count}") for i in range(count)]
        assert sorted(sum(shards, [])) == sorted(ids)
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
