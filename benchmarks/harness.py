"""Interleaved training-throughput measurements in worker processes.

Used by `benchmarks.train_throughput` and `benchmarks.torch_reference`. Every
*case* (one setting to measure) runs in its own Python process, so that settings
read once at start-up (the Keras backend, `TF_ENABLE_ONEDNN_OPTS`, thread pools,
the number of logical devices, PyTorch vs TensorFlow) can differ between cases.
The workers are started one after the other, each building its model and
warming up (compilation and tracing are never timed) while the ones before it
wait idle; then the parent asks them in turn for one timed repeat each,
going forwards then backwards through the cases (A B C, C B A, ...), so while one
worker is timed the others sit idle and a change in machine load during the run
affects every case alike. A case's figure is the median of its repeats.

A timed repeat is one `model.fit(epochs=1, steps_per_epoch=steps)` call (for
PyTorch: `steps` optimizer steps) on one fixed synthetic batch; its clock starts
after the first step has finished (the first step of a `fit` call also pays for
creating the data iterator) and stops when the last step's loss is available, so
a repeat times `steps - 1` steps. Synthetic data: uint8 images (the model
rescales them itself, as in real training) and one-hot labels for the three
heads, from a `tf.data.Dataset.from_tensors(...).repeat()` on TensorFlow and a
Python generator on the other backends; so the input pipeline costs next to
nothing and the figure is the model's.

FLOP convention: `keras_googlenet.count_flops` counts the multiply-adds (MACs)
of one image's forward pass through all three heads; a training step costs about
3x the forward pass (forward, gradient with respect to the activations, gradient
with respect to the weights) and a MAC is 2 FLOPs, so training FLOPs per image =
6 x MACs. Achieved FLOP/s = images/s x 6 x MACs. Pooling, BatchNorm, activations,
the loss and the optimizer update are not counted.

This module imports neither TensorFlow, Keras nor PyTorch itself, so a worker
only loads the framework its case uses.
"""

import argparse
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

#: Training FLOPs per forward multiply-add (3 passes x 2 FLOPs per MAC).
TRAIN_FLOPS_PER_MAC = 6

FLOP_CONVENTION = (
    "training FLOPs/image = 6 x forward multiply-adds of the three-head model "
    "(keras_googlenet.count_flops): forward + two backward passes, 2 FLOPs per "
    "multiply-add; pooling, normalization, activations, loss and optimizer not counted"
)

#: Fields of a case, with their defaults.
CASE_DEFAULTS = {
    "label": None,
    "framework": "keras",  # "keras", "torch" (the PyTorch reference) or "matmul"
    "backend": None,  # Keras backend; None: $KERAS_BACKEND or tensorflow
    "stem": "cifar",
    "image_size": 32,
    "width": 1.0,
    "batch_size": 32,
    "classes": None,  # None: 10 for the CIFAR stem, 1000 for the ImageNet stem
    "jit": False,
    "precision": "float32",
    "devices": 1,  # > 1: --strategy mirrored (TF) / data-parallel (JAX) over logical CPUs
    "steps": 6,
    "warmup_steps": 3,
    "env": {},  # extra environment variables of the worker process
    "channels_last": False,  # PyTorch reference only
    "torch_threads": None,  # PyTorch reference only: torch.set_num_threads
    # False: every keras_googlenet.BatchNormalization gets fused=False, i.e. Keras 3's
    # own unfused BatchNorm (the project before the fused layer), for before/after
    # figures. Only makes a difference on TensorFlow.
    "fused_batchnorm": True,
    "matmul_size": 2048,  # matmul reference only
    "dtype": "float32",  # matmul reference only
}

#: Environment variables recorded with every result (they change speed).
RECORDED_ENV = (
    "KERAS_BACKEND",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "XLA_FLAGS",
    "CUDA_VISIBLE_DEVICES",
)

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ACCELERATOR_FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16",
                      "amx_tile", "amx_int8")


# ---------------------------------------------------------------------------
# Command-line lists (comma-separated), shared by the benchmarks' argparse flags
# ---------------------------------------------------------------------------


def csv_list(text):
    """`"a, b,,c"` -> `["a", "b", "c"]`."""
    return [s.strip() for s in str(text).split(",") if s.strip()]


def int_list(text):
    try:
        return [int(s) for s in csv_list(text)]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def float_list(text):
    try:
        return [float(s) for s in csv_list(text)]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def bool_list(text):
    """on/off, true/false or 1/0 values."""
    values = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}
    try:
        return [values[s.lower()] for s in csv_list(text)]
    except KeyError as e:
        raise argparse.ArgumentTypeError(f"expected on/off values, got {text!r}") from e


def choice_list(allowed):
    """A parser of comma-separated values, each one of `allowed`."""
    def parse(text):
        values = csv_list(text)
        bad = [v for v in values if v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"{bad} not in {', '.join(allowed)}")
        return values

    return parse


def default_classes(stem):
    """10 classes for the CIFAR stem, 1000 for the ImageNet stem."""
    return 10 if stem == "cifar" else 1000


def current_backend():
    return os.environ.get("KERAS_BACKEND") or "tensorflow"


def normalize_case(case):
    """Fills in defaults and checks a case dict; returns a new dict."""
    unknown = set(case) - set(CASE_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown case fields: {sorted(unknown)}")
    c = {**CASE_DEFAULTS, **case}
    c["env"] = {str(k): str(v) for k, v in (c["env"] or {}).items()}
    if c["framework"] not in ("keras", "torch", "matmul"):
        raise ValueError(f"framework must be keras, torch or matmul; got {c['framework']!r}")
    if c["framework"] == "keras" or (c["framework"] == "matmul" and c["backend"] is None):
        c["backend"] = c["backend"] or current_backend()
    if c["framework"] == "torch":
        c["backend"] = None
    if c["classes"] is None:
        c["classes"] = default_classes(c["stem"])
    if not c["fused_batchnorm"] and (c["framework"] != "keras" or c["backend"] != "tensorflow"):
        raise ValueError("fused_batchnorm=False (Keras's unfused BatchNorm) only differs on the "
                         "Keras TensorFlow backend")
    if c["steps"] < 2:
        raise ValueError(f"steps must be >= 2 (the first step of a repeat is not timed); "
                         f"got {c['steps']}")
    if c["label"] is None:
        c["label"] = describe(c)
    return c


def describe(case):
    """A short human-readable name of a case."""
    if case["framework"] == "matmul":
        return f"matmul {case['matmul_size']}^2 {case['dtype']} ({case['backend']})"
    who = "PyTorch" if case["framework"] == "torch" else f"Keras/{case['backend']}"
    bits = [who, f"{case['stem']} {case['image_size']}px", f"w{case['width']:g}",
            f"b{case['batch_size']}"]
    if case["framework"] == "keras":
        bits += [f"jit {'on' if case['jit'] else 'off'}", case["precision"]]
    if not case["fused_batchnorm"]:
        bits.append("unfused BatchNorm (Keras 3's)")
    if case["devices"] > 1:
        bits.append(f"{case['devices']} devices")
    if case["channels_last"]:
        bits.append("channels_last")
    if case["torch_threads"]:
        bits.append(f"{case['torch_threads']} threads")
    bits += [f"{k}={v}" for k, v in sorted(case["env"].items())]
    return ", ".join(bits)


# ---------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------


class _Worker:
    """A worker process and a thread reading its protocol lines."""

    def __init__(self, case):
        self.case = case
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_REPO_ROOT, env.get("PYTHONPATH")) if p)
        if case["backend"] and case["framework"] != "torch":
            env["KERAS_BACKEND"] = case["backend"]
        if case["devices"] > 1 and case["backend"] == "jax":
            flag = f"--xla_force_host_platform_device_count={case['devices']}"
            env["XLA_FLAGS"] = " ".join(p for p in (env.get("XLA_FLAGS"), flag) if p)
        env.update(case["env"])
        self.env = {k: env[k] for k in RECORDED_ENV if k in env}
        self.log = tempfile.TemporaryFile(mode="w+", prefix="bench-worker-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.harness", "--worker", json.dumps(case)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            env=env, cwd=_REPO_ROOT, text=True, bufsize=1,
        )
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def receive(self, timeout):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"no answer within {timeout:.0f} s") from None
        if line is None:
            self.proc.wait()
            raise RuntimeError(f"worker exited with status {self.proc.returncode}")
        message = json.loads(line)
        if "error" in message:
            raise RuntimeError(message["error"])
        return message

    def send(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def stderr_tail(self, chars=2000):
        self.log.seek(0)
        return self.log.read()[-chars:]

    def close(self):
        try:
            if self.proc.poll() is None:
                self.send("quit")
                self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def run_interleaved(cases, *, repeats=5, peak_tflops=None, max_alive=None,
                    setup_timeout=900, repeat_timeout=900, log=None):
    """Measures every case in its own worker process, interleaved.

    Args:
        cases: Case dicts (see `CASE_DEFAULTS`).
        repeats: Timed repeats per case; the reported figure is their median.
        peak_tflops: Device peak in TFLOP/s, for the `utilisation` field.
        max_alive: At most this many workers at once (memory); cases are then
            measured in consecutive groups, interleaved within each group.
        setup_timeout, repeat_timeout: Seconds to wait for a worker to get
            ready / to finish a repeat before giving up on its case.
        log: Progress callback (default: print to stderr).

    Returns:
        One result dict per case, in order: the case's fields plus the figures
        (`status` is `"ok"`, else `"error"` with the reason in `error`).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    cases = [normalize_case(c) for c in cases]
    group = max_alive or len(cases) or 1
    results = []
    for number, start in enumerate(range(0, len(cases), group)):
        rows = _run_group(cases[start:start + group], repeats, peak_tflops,
                          setup_timeout, repeat_timeout, log)
        for row in rows:
            row["group"] = number
        for row in rows:  # relative to the first case measured in the same passes
            row["vs_first"] = paired_ratio(row, rows[0])
        results += rows
    return results


def _run_group(cases, repeats, peak_tflops, setup_timeout, repeat_timeout, log):
    workers = []
    infos, samples, errors = {}, {i: [] for i in range(len(cases))}, {}
    try:
        # One worker set up at a time: concurrent start-ups only fight over the
        # cores (and PyTorch's spinning OpenMP threads make that much worse).
        for i, case in enumerate(cases):
            w = _Worker(case)
            workers.append(w)
            try:
                infos[i] = w.receive(setup_timeout)
                log(f"  ready: {w.case['label']} ({infos[i]['setup_s']:.1f} s to build and warm up)")
            except (RuntimeError, ValueError) as e:
                errors[i] = f"{e}; worker stderr: {w.stderr_tail()}"
                log(f"  FAILED: {w.case['label']}: {e}")
        for r in range(repeats):
            order = range(len(cases)) if r % 2 == 0 else reversed(range(len(cases)))
            for i in order:
                if i in errors:
                    continue
                try:
                    workers[i].send("run")
                    samples[i].append(workers[i].receive(repeat_timeout))
                except (RuntimeError, ValueError, OSError) as e:
                    errors[i] = f"{e}; worker stderr: {workers[i].stderr_tail()}"
                    log(f"  FAILED: {cases[i]['label']}: {e}")
            log(f"  repeat {r + 1}/{repeats} done")
    finally:
        for w in workers:
            w.close()
    return [_result(cases[i], workers[i].env, infos.get(i), samples[i], errors.get(i),
                    peak_tflops) for i in range(len(cases))]


def paired_ratio(a, b):
    """Median over repeats of a's images/s divided by b's in the same repeat.

    Repeat r of every case in a group is measured within one pass over the
    cases, so the ratio of the two compares them under (nearly) the same machine
    load; its median is steadier than the ratio of the medians on a busy machine.
    None if either case failed or they were not measured in the same group.
    """
    key = "tflops_repeats" if a.get("framework") == "matmul" else "images_per_second_repeats"
    ra, rb = a.get(key), b.get(key)
    if a.get("status") != "ok" or b.get("status") != "ok" or not ra or not rb \
            or a.get("group") != b.get("group"):
        return None
    return statistics.median(x / y for x, y in zip(ra, rb))


def _result(case, env, info, samples, error, peak_tflops):
    row = {k: v for k, v in case.items()}
    row["worker_env"] = env
    if error is not None or not samples:
        row.update(status="error", error=(error or "no samples")[-3000:])
        return row
    row.update(status="ok", repeats=len(samples), **{k: v for k, v in info.items() if k != "ready"})
    if case["framework"] == "matmul":
        row.update(achieved_tflops=statistics.median(s["tflops"] for s in samples),
                   tflops_repeats=[s["tflops"] for s in samples])
        row["utilisation"] = row["achieved_tflops"] / peak_tflops if peak_tflops else None
        return row
    ips = [s["images_per_second"] for s in samples]
    median = statistics.median(ips)
    row.update(
        images_per_second=median,
        images_per_second_repeats=ips,
        spread=(max(ips) - min(ips)) / median,
        step_time_s=case["batch_size"] / median,
        fit_images_per_second=statistics.median(s["fit_images_per_second"] for s in samples),
        peak_rss_mb=max((s.get("peak_rss_mb") or 0) for s in samples) or None,
        train_flops_per_image=TRAIN_FLOPS_PER_MAC * info["macs_per_image"],
    )
    row["achieved_tflops"] = median * row["train_flops_per_image"] / 1e12
    row["utilisation"] = row["achieved_tflops"] / peak_tflops if peak_tflops else None
    return row


# ---------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------


def load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux/macOS
        return None


def environment():
    """Machine, versions and speed-relevant settings (imports no framework)."""
    from importlib import metadata

    versions = {}
    for package in ("keras", "tensorflow", "jax", "jaxlib", "torch", "ai-edge-litert", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    memory_gib = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            memory_gib = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpu_flags": {flag: flag in flags for flag in _ACCELERATOR_FLAGS} if flags else None,
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "env": {k: os.environ[k] for k in RECORDED_ENV if k in os.environ},
    }


def report(name, settings, results, *, extra=None, load_start=None):
    """The JSON document a benchmark writes."""
    doc = {
        "benchmark": name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks." + name + " " + " ".join(sys.argv[1:]),
        "settings": settings,
        "environment": environment(),
        "load_average": {"start": load_start, "end": load_average(),
                         "note": "1, 5, 15-minute load averages (os.getloadavg)"},
        "flop_convention": FLOP_CONVENTION,
        "timing": "median of timed repeats, interleaved across cases in one run; each repeat "
                  "times steps-1 optimizer steps after a warm-up (compilation excluded)",
        "results": results,
    }
    doc.update(extra or {})
    return doc


def write_json(path, doc):
    """Writes `doc` as JSON to `path` (atomically), creating folders."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, path)


def markdown_table(results, *, peak=False):
    """Training results as a markdown table (one row per case).

    `spread` is (max - min) / median of the repeats; `vs first` the median over
    repeats of the images/s ratio to the first row of the same group (the cases
    alive together, see `max_alive`), measured in the same pass.
    """
    header = ["setting", "images/s", "spread", "vs first", "step (ms)", "GFLOP/s"]
    if peak:
        header.append("utilisation")
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for r in results:
        if r["status"] != "ok":
            cells = [r["label"], "error: " + r["error"].splitlines()[0][:80]] + [""] * (len(header) - 2)
        elif r["framework"] == "matmul":
            cells = [r["label"], "", "", _ratio(r.get("vs_first")), "",
                     f"{1000 * r['achieved_tflops']:.1f}"]
            if peak:
                cells.append(_pct(r["utilisation"]))
        else:
            cells = [
                r["label"],
                f"{r['images_per_second']:.1f}",
                f"{100 * r['spread']:.0f}%",
                _ratio(r.get("vs_first")),
                f"{1000 * r['step_time_s']:.0f}",
                f"{1000 * r['achieved_tflops']:.1f}",
            ]
            if peak:
                cells.append(_pct(r["utilisation"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ratio(value):
    return "" if value is None else f"{value:.2f}x"


def _pct(value):
    return "" if value is None else f"{100 * value:.1f}%"


# ---------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------


def _peak_rss_mb():
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except (ImportError, OSError):  # pragma: no cover
        return None


def _random_batch(case):
    import numpy as np

    rng = np.random.default_rng(0)
    size = case["image_size"]
    images = rng.integers(0, 256, (case["batch_size"], size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, case["classes"], case["batch_size"]).astype("int32")
    return images, labels


class _KerasRunner:
    """Builds the recipe's model (training.recipe) and times `model.fit`."""

    def __init__(self, case):
        backend = case["backend"]
        if case["devices"] > 1 and backend == "tensorflow":
            import tensorflow as tf

            cpus = tf.config.list_physical_devices("CPU")
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * case["devices"])
        import keras
        import numpy as np

        from keras_googlenet import count_flops
        from training.config import TrainConfig
        from training.recipe import build_model, compile_model, setup_runtime

        if keras.backend.backend() != backend:
            raise RuntimeError(f"expected Keras backend {backend}, got {keras.backend.backend()}")
        strategy = "none"
        if case["devices"] > 1:
            strategy = "mirrored" if backend == "tensorflow" else "data-parallel"
        config = TrainConfig(
            data="synthetic", stem=case["stem"], image_size=case["image_size"],
            width=case["width"], batch_size=case["batch_size"], jit=case["jit"],
            precision=case["precision"], strategy=strategy, epochs=100, verbose=0,
            pipeline="tf.data" if backend == "tensorflow" else "numpy",
        ).resolve()
        scope, replicas = setup_runtime(config)
        if replicas != case["devices"]:
            raise RuntimeError(f"asked for {case['devices']} devices, the strategy has {replicas}")
        with scope:
            self.model = build_model(config, case["classes"])
            if not case["fused_batchnorm"]:
                _unfuse_batchnorm(self.model)
            compile_model(self.model, config, steps_per_epoch=100)
        self.macs = count_flops(self.model)
        self.params = self.model.count_params()
        images, labels = _random_batch(case)
        onehot = np.eye(case["classes"], dtype="float32")[labels]
        targets = {head: onehot for head in self.model.output_names}
        if backend == "tensorflow":
            import tensorflow as tf

            dataset = tf.data.Dataset.from_tensors((images, targets)).repeat()
            self.data = lambda: dataset
        else:
            def generator():
                while True:
                    yield images, targets

            self.data = generator
        self.case = case
        self.fit(max(1, case["warmup_steps"]))

    def fit(self, steps):
        import keras
        import numpy as np

        marks = {}

        class Timer(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if batch == 0:
                    float(np.asarray(logs["loss"]))  # wait for the first step
                    marks["start"] = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                float(np.asarray(logs["loss"]))
                marks["end"] = time.perf_counter()

        begin = time.perf_counter()
        self.model.fit(self.data(), epochs=1, steps_per_epoch=steps, verbose=0,
                       shuffle=False, callbacks=[Timer()])
        wall = time.perf_counter() - begin
        return marks["end"] - marks["start"], wall


def _unfuse_batchnorm(model):
    """Before/after: turns the fused training kernel of every
    `keras_googlenet.BatchNormalization` off (`fused=False`), which leaves Keras 3's
    own BatchNormalization, i.e. the project before the fused layer. Called before
    `compile`, so the training step is traced without it."""
    from keras_googlenet import BatchNormalization

    count = 0
    for layer in model.layers:
        if isinstance(layer, BatchNormalization):
            layer.fused = False
            count += 1
    if not count:
        raise RuntimeError("the model has no keras_googlenet.BatchNormalization layer")


class _TorchRunner:
    """The PyTorch reference (benchmarks.torch_reference), trained the same way."""

    def __init__(self, case):
        import torch

        from benchmarks.torch_reference import (TorchTrainer, build_torch_googlenet,
                                                count_macs, keras_style_param_count)

        if case["torch_threads"]:
            torch.set_num_threads(case["torch_threads"])
        torch.manual_seed(0)
        model = build_torch_googlenet(classes=case["classes"], image_size=case["image_size"],
                                      stem=case["stem"], width=case["width"])
        self.macs = count_macs(model, case["image_size"])
        self.params = keras_style_param_count(model)
        self.trainer = TorchTrainer(model, steps=100 * 100,
                                    channels_last=case["channels_last"])
        self.x, self.y = self.trainer.prepare(*_random_batch(case))
        self.threads = torch.get_num_threads()
        self.fit(max(1, case["warmup_steps"]))

    def fit(self, steps):
        begin = time.perf_counter()
        start = None
        for i in range(steps):
            loss = self.trainer.step(self.x, self.y)
            if i == 0:
                loss.item()
                start = time.perf_counter()
        loss.item()
        end = time.perf_counter()
        return end - start, end - begin


class _MatmulRunner:
    """`keras.ops.matmul` of two n x n matrices: the machine's practical peak."""

    def __init__(self, case):
        n, dtype = case["matmul_size"], case["dtype"]
        self.flops = 2 * n ** 3
        import keras

        a = keras.random.normal((n, n), dtype=dtype, seed=0)
        # Reading one element back waits for the product (JAX dispatches asynchronously).
        self.run = lambda: float(keras.ops.convert_to_numpy(
            keras.ops.cast(keras.ops.matmul(a, a)[0, 0], "float32")))
        self.macs, self.params = 0, 0
        self.case = case
        for _ in range(2):
            self.run()

    def fit(self, steps):
        begin = time.perf_counter()
        for _ in range(steps):
            self.run()
        elapsed = time.perf_counter() - begin
        return elapsed, elapsed


def _worker_main(case_json):
    # The protocol channel is the original stdout; everything else printed to
    # stdout by the libraries goes to stderr (the worker's log).
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message):
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    try:
        case = normalize_case(json.loads(case_json))
        began = time.perf_counter()
        runner = {"keras": _KerasRunner, "torch": _TorchRunner,
                  "matmul": _MatmulRunner}[case["framework"]](case)
        info = {"ready": True, "setup_s": time.perf_counter() - began,
                "macs_per_image": runner.macs, "params": runner.params}
        if case["framework"] == "torch":
            info["torch_threads_used"] = runner.threads
        send(info)
    except Exception as e:  # reported to the parent, which records the case as failed
        import traceback

        traceback.print_exc()
        send({"error": f"{type(e).__name__}: {e}"})
        return 1
    for command in sys.stdin:
        command = command.strip()
        if command == "quit":
            break
        try:
            timed, wall = runner.fit(case["steps"])
            if case["framework"] == "matmul":
                send({"tflops": runner.flops * case["steps"] / timed / 1e12})
            else:
                send({"images_per_second": (case["steps"] - 1) * case["batch_size"] / timed,
                      "fit_images_per_second": case["steps"] * case["batch_size"] / wall,
                      "peak_rss_mb": _peak_rss_mb()})
        except Exception as e:
            import traceback

            traceback.print_exc()
            send({"error": f"{type(e).__name__}: {e}"})
            return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2]))
    print("benchmarks.harness is a library; run benchmarks.train_throughput or "
          "benchmarks.torch_reference", file=sys.stderr)
    sys.exit(2)
