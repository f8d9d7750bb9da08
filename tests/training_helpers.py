"""Shared fixtures data and helpers of the `test_training*` tests."""

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: The real CIFAR-10 training archive (CI always has ../shared).
CIFAR_ARCHIVE = REPO.parent / "shared" / "data" / "cifar10" / "train.tar.xz"

CLASSES = ("cat", "dog", "frog")

#: Flags of the tiniest trainable GoogLeNet, for end-to-end runs.
#: `--precision float32`: `--precision auto` picks bf16 on some CPUs and float32 on
#: others (`keras_googlenet._internal.environment.auto_precision`), and these runs must train
#: the same on every CI machine; tests/test_precision.py runs auto and bf16.
TINY = ["--width", "0.125", "--stem", "cifar", "--image-size", "16", "--batch-size", "16",
        "--precision", "float32", "--verbose", "2"]

#: XLA flags for the tests' JAX processes: LLVM's cheap optimisation, and XLA's older
#: loop emitters in place of its fusion emitters, which compile the training step in
#: about half the time and run it about a third slower (the tests check behaviour,
#: not speed; benchmarks/results/test_suite_time.md).
CHEAP_XLA_FLAGS = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
                   "--xla_cpu_use_fusion_emitters=false")

#: A `sitecustomize.py` that hides TensorFlow (and what needs it) as if it were not
#: installed: `import tensorflow` raises ModuleNotFoundError and
#: `importlib.util.find_spec("tensorflow")` returns None.
NO_TENSORFLOW_SITECUSTOMIZE = '''
import sys

HIDDEN = ("tensorflow", "tensorflow_datasets", "tf_keras", "tensorboard")


class _Hide:
    def __init__(self, finder):
        self._finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return None
        find_spec = getattr(self._finder, "find_spec", None)
        return find_spec(name, path, target) if find_spec else None

    def __getattr__(self, attribute):
        return getattr(self._finder, attribute)


sys.meta_path[:] = [_Hide(finder) for finder in sys.meta_path]
'''


def no_tensorflow_env(folder):
    """Environment variables for a subprocess in which TensorFlow is not importable
    (`NO_TENSORFLOW_SITECUSTOMIZE`, written into `folder`), the repository on its path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(NO_TENSORFLOW_SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(folder), str(REPO), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path)


def make_image_folder(root, split="train", classes=CLASSES, per_class=10, size=20, fmt="png",
                      seed=0):
    """Writes `root/split/<class>/<i>.<fmt>` images whose colour depends on the class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        folder = Path(root) / split / name
        folder.mkdir(parents=True, exist_ok=True)
        base = np.zeros(3)
        base[label % 3] = 160
        for i in range(per_class):
            pixels = (base + rng.integers(0, 90, (size, size, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:03d}.{fmt}")
    return Path(root)


def make_archive(folder, archive, top=None):
    """Packs the contents of `folder` into `archive` (.tar, .tar.xz or .zip).

    With `top`, members are stored under a single top-level folder `top/`.
    """
    folder, archive = Path(folder), Path(archive)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    prefix = f"{top}/" if top else ""
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive, "w") as zf:
            for p in files:
                zf.write(p, prefix + p.relative_to(folder).as_posix())
    else:
        mode = "w:xz" if archive.name.endswith(".xz") else "w"
        with tarfile.open(archive, mode) as tar:
            for p in files:
                tar.add(p, prefix + p.relative_to(folder).as_posix())
    return archive


def tar_with(archive, members):
    """Writes a tar whose members are `(TarInfo, bytes or None)` pairs."""
    with tarfile.open(archive, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return archive


def snapshot(folder):
    """`{relative path: sha256}` of every file under `folder`."""
    folder = Path(folder)
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def run_args(root, name, data_dir, *extra):
    """`training.cifar` arguments of a TINY run named `name` on `data_dir`, writing
    its run, export and cache folders under `root`."""
    return ["--name", name, "--data-dir", str(data_dir), "--runs-dir", str(root / "runs"),
            "--export-dir", str(root / "saved"), "--cache-dir", str(root / "cache"),
            *TINY, *extra]


def heldout_accuracy(model_path, config_path):
    """`(main-head accuracy, model, held-out images)` of a saved model on its run's
    held-out split."""
    import keras

    from training.config import TrainConfig
    from training.data import load_arrays

    config = TrainConfig.load(config_path)
    _, _, x_val, y_val, _ = load_arrays(config)
    model = keras.saving.load_model(model_path, compile=False)
    logits = model.predict(x_val, verbose=0)[-1]
    return float((logits.argmax(1) == y_val).mean()), model, x_val


class BenchmarkRuns:
    """Benchmark commands, each run the first time a test asks for its result, so
    that each test's time is its own benchmark's.

    Args:
        commands: `{name: (arguments after "python -m", env, JSON path, names that
            must run first)}`.
    """

    def __init__(self, commands, timeout=900):
        self.commands, self.timeout, self.done = commands, timeout, {}

    def result(self, name):
        """`(returncode or None on a timeout, output, the JSON it wrote or None)`."""
        if name not in self.done:
            args, env, path, needs = self.commands[name]
            for other in needs:
                self.result(other)
            try:
                done = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, timeout=self.timeout)
                code, output = done.returncode, done.stdout
            except subprocess.TimeoutExpired as e:
                code, output = None, f"timed out after {self.timeout} s: {e.output or ''}"
            doc = json.loads(Path(path).read_text()) if Path(path).exists() else None
            self.done[name] = (code, output, doc)
        return self.done[name]


def run_module(args, *, env=None, timeout=600, cwd=REPO, module="training.cifar"):
    """Runs `python -m training.cifar ARGS` in a subprocess; returns the CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (full_env.get("PYTHONPATH"), str(REPO)) if p
    )
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def last_wins(argv):
    """`argv` with each repeated `--flag value` kept once, at its last value (the CLIs
    refuse a flag given twice; these tests build argument lists by appending)."""
    out, index = [], {}
    i = 0
    while i < len(argv):
        token = argv[i]
        takes_value = (token.startswith("--") and "=" not in token and i + 1 < len(argv)
                       and not argv[i + 1].startswith("--"))
        item = argv[i:i + 2] if takes_value else [token]
        if token.startswith("--") and token in index:
            out[index[token]] = item
        else:
            if token.startswith("--"):
                index[token] = len(out)
            out.append(item)
        i += len(item)
    return [t for item in out for t in item]



#: Tensors that are not dense float weights, put in place of one key of a state dict:
#: key -> a function making the tensor with `torch`. The stride-0 one declares 64 GiB
#: that its one stored element does not hold.
HOSTILE_TENSORS = {
    "sparse": ("conv1.bn.weight", lambda torch: torch.zeros(64).to_sparse()),
    "quantized": ("conv1.bn.weight",
                  lambda torch: torch.quantize_per_tensor(torch.zeros(64), 0.1, 0, torch.qint8)),
    "stride0_64GiB": ("fc.weight",
                      lambda torch: torch.zeros(1).as_strided((1 << 17, 1 << 17), (0, 0))),
    "nan": ("inception3a.branch1.conv.weight",
            lambda torch: torch.full((64, 192, 1, 1), float("nan"))),
    "negative_variance": ("conv1.bn.running_var", lambda torch: -torch.ones(64)),
}


def save_state_dict(path, hostile=None):
    """Saves a torchvision GoogLeNet state dict of zeros (1000 classes, no auxiliary
    heads) with `torch.save`, one key replaced by a `HOSTILE_TENSORS` entry; returns path."""
    import warnings

    import torch

    from keras_googlenet.torch_weights import TORCH_SHAPES

    state = {key: torch.zeros([1000 if n is None else n for n in shape])
             for key, shape in TORCH_SHAPES.items() if not key.startswith(("aux1.", "aux2."))}
    if hostile is not None:
        key, make = HOSTILE_TENSORS[hostile]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized tensors are deprecated
            state[key] = make(torch)
    torch.save(state, path)
    return path
