"""The model library runs unchanged on JAX and PyTorch.

The backend-agnostic test files (model, layers) are run again
in a subprocess under `KERAS_BACKEND=jax` and `KERAS_BACKEND=torch`, so the
README's one test command covers all three backends.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BACKEND_AGNOSTIC = ("tests/test_model.py", "tests/test_layers.py")


@pytest.mark.slow
@pytest.mark.backends("tensorflow")  # the outer run; the inner runs switch backend
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_model_tests_pass_under(backend):
    env = dict(os.environ, KERAS_BACKEND=backend)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
         *BACKEND_AGNOSTIC],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=2400,
    )
    tail = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    summary = result.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    assert "skipped" not in summary and "failed" not in summary, summary
    assert passed == _collected(), summary  # every test of the three files ran


def _collected():
    """How many tests the three files hold (collected under this process's backend)."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", "-p", "no:cacheprovider",
         *BACKEND_AGNOSTIC], cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    return int(re.search(r"(\d+) tests? collected", result.stdout).group(1))
