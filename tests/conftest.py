"""Shared fixtures and markers of the test suite.

Markers:
    backends(*names): the test runs only under these Keras backends
        (e.g. `@pytest.mark.backends("tensorflow")` for tf.data, TFLite and
        keras-tuner code); under another `KERAS_BACKEND` it is skipped with
        the reason. CI runs the whole suite on TensorFlow and the model tests
        on JAX and PyTorch, so nothing marked here goes untested.
    slow: tests that train, convert TFLite files or start subprocesses
        (each over about 3 s); `-m "not slow"` is the quick loop.

Fixtures are the helpers several test files need: a repository path, a
seeded random generator, raw-pixel images, a small image folder, and an
environment that hides TensorFlow (to check the JAX/PyTorch paths).
"""

import os
import sys
from pathlib import Path

# Under pytest-xdist, each worker and the processes it starts share the cores
# with the other workers: OpenMP (PyTorch, OpenBLAS) gets the worker's share of
# them, not every core, before numpy or torch is imported. Spare OpenMP threads
# spin-wait on cores the other worker is using: the PyTorch run of the model
# tests took 33.2 CPU seconds with 2 threads and 25.9 with 1 (2 cores, 2
# workers; benchmarks/results/test_suite_time.md).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(
        1, len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Test files import `training_helpers` (beside this file) as a plain module.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The export tests' trained model and images, defined here once: a session fixture
# that each test file imports is a fixture of that file, set up again for each.
from export_helpers import images, model  # noqa: E402,F401

#: Test files that run on the same pytest-xdist worker, so that they share its
#: session fixtures (a file's own module fixtures are built on one worker anyway):
#: `--dist loadfile` with these files as one unit (`pytest_xdist_make_scheduler`).
SAME_WORKER = (
    ("tests/test_export.py", "tests/test_export_cli.py"),  # the fitted `model`
)


def current_backend():
    """The Keras backend this pytest process runs (KERAS_BACKEND, else TensorFlow)."""
    import keras

    return keras.backend.backend()


def pytest_addoption(parser):
    parser.addoption(
        "--shard", default=None, metavar="I/N",
        help="run only every N-th collected test, starting at the I-th (0-based); "
             "tests/test_backends.py splits the JAX and PyTorch runs with it")


def shard_of(items, shard):
    """The tests of `shard` ("I/N"): every N-th item from the I-th, in collection order."""
    index, count = (int(v) for v in shard.split("/"))
    return items[index::count]


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "backends(*names): run only under these Keras backends; skipped (with the reason) "
        "under the others",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile`, the files of each `SAME_WORKER` group sent to one worker."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    unit = {path: group[0] for group in SAME_WORKER for path in group}

    class FileGroups(LoadFileScheduling):
        def _split_scope(self, nodeid):
            path = super()._split_scope(nodeid)
            return unit.get(path, path)

    return FileGroups(config, log)


def pytest_collection_modifyitems(config, items):
    if config.getoption("shard"):
        kept = shard_of(items, config.getoption("shard"))
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
    backend = None
    for item in items:
        marker = item.get_closest_marker("backends")
        if marker is None:
            continue
        backend = backend or current_backend()
        if backend not in marker.args:
            item.add_marker(pytest.mark.skip(
                reason=f"needs the {' or '.join(marker.args)} backend; this run uses {backend}"
            ))


@pytest.fixture(scope="session")
def repo():
    """The repository root."""
    return REPO


@pytest.fixture
def rng():
    """A seeded numpy generator (seed 0)."""
    return np.random.default_rng(0)


@pytest.fixture
def make_images():
    """`make_images(n, size=32, seed=0)`: raw RGB float32 images in [0, 255]."""

    def make(n=2, size=32, seed=0):
        generator = np.random.default_rng(seed)
        return generator.integers(0, 256, size=(n, size, size, 3)).astype("float32")

    return make


@pytest.fixture
def image_folder(tmp_path):
    """A small ImageFolder tree `tmp/train/<class>/<i>.png` (3 classes of 10)."""
    from training_helpers import make_image_folder

    return make_image_folder(tmp_path / "images")


@pytest.fixture
def no_tensorflow_env(tmp_path):
    """Environment variables for a subprocess in which TensorFlow is not importable."""
    from training_helpers import no_tensorflow_env as hidden

    return hidden(tmp_path / "hide_tensorflow")


@pytest.fixture(autouse=True)
def _float32_dtype_policy_after_each_test():
    """Each test starts under Keras's float32 policy: a run (`training.cifar.main`)
    sets the process-wide policy to its precision, which must not leak into the
    next test of the process."""
    yield
    import keras

    keras.config.set_dtype_policy("float32")
