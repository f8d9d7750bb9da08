"""The one probe of the machine and software: what runs here, and how fast it can.

`describe()` is what every report (training runs, exports, benchmarks) records
about the machine; `accelerator()` is what picks XLA, and with `cpu()` mixed
precision (`auto_precision`); and `tensorflow_available()` is what picks the
TensorFlow-only paths. None of them imports a framework at module import time.
"""

import os
import platform
from importlib import metadata

#: Packages whose versions a report records.
PACKAGES = ("keras", "tensorflow", "jax", "jaxlib", "torch", "ai-edge-litert", "numpy")

#: CPU flags that decide matmul speed (AVX-512, VNNI, bf16 and AMX units).
ACCELERATOR_FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16",
                     "amx_tile", "amx_int8")

#: CPU flags (as the kernel names them in /proc/cpuinfo) of bf16 matrix units with
#: which `mixed_bfloat16` trains faster than float32 on the TensorFlow backend, best
#: first. amx_bf16 (Intel Sapphire Rapids and later): TensorFlow's bf16 matmul ran
#: 4.0x its float32 one on such a Xeon. avx512_bf16 alone (AMD Zen 4/5,
#: Intel Cooper Lake): on a Zen 5 EPYC the whole training step (paper stem 96x96,
#: batch 32) ran 1.43x float32, PyTorch's bf16 autocast 1.47x its float32
#: (benchmarks/results/cpu_bf16_side_by_side.json, paired ratios). Without either,
#: bf16 is emulated and slower (0.35x float32 on a Xeon without them,
#: benchmarks/results/cpu_precision.json).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")

#: Environment variables that change speed, recorded when set.
RECORDED_ENV = ("KERAS_BACKEND", "TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS",
                "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "XLA_FLAGS", "CUDA_VISIBLE_DEVICES")


def tensorflow_available():
    """Whether `import tensorflow` works (imports it if so)."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def accelerator():
    """Returns `(Keras backend name, GPU compute capability or None)` for the first GPU.

    The capability is a float such as `9.0` (H100); `0.0` when a GPU is there but
    its capability is unknown; `None` without a GPU (or one that cannot start).
    """
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if not gpus:
                return backend, None
            details = tf.config.experimental.get_device_details(gpus[0])
            capability = details.get("compute_capability")
            return backend, float("%d.%d" % capability) if capability else 0.0
        if backend == "jax":
            import jax

            gpus = [d for d in jax.devices() if d.platform == "gpu"]
            if not gpus:
                return backend, None
            return backend, float(getattr(gpus[0], "compute_capability", 0) or 0)
        if backend == "torch":
            import torch

            if not torch.cuda.is_available():
                return backend, None
            return backend, float("%d.%d" % torch.cuda.get_device_capability(0))
    except (RuntimeError, ValueError):  # a backend that cannot initialise its GPU
        return backend, None
    return backend, None


def auto_precision(backend, gpu, cpu_flags):
    """The Keras dtype policy `--precision auto` picks, and why.

    - A GPU: `mixed_bfloat16` from compute capability 8.0 (Ampere), else
      `mixed_float16`.
    - A CPU, TensorFlow backend: `mixed_bfloat16` where the CPU has a flag of
      `BF16_CPU_FLAGS` (bf16 matrix units that oneDNN's bf16 convolutions use),
      else `float32`. Decided by the CPU's features, not by a timing at start-up.
    - A CPU, JAX or PyTorch backend: `float32` (bf16 was not measured faster there).

    Args:
        backend: The Keras backend name.
        gpu: The GPU's compute capability, or None (see `accelerator()`).
        cpu_flags: The CPU's flags (see `cpu()`); empty where unknown (non-x86).

    Returns:
        `(policy, reason)`, e.g. `("mixed_bfloat16", "CPU has amx_bf16")`.
    """
    if gpu is not None:
        if gpu >= 8.0:
            return "mixed_bfloat16", f"GPU compute capability {gpu:g} >= 8.0"
        return "mixed_float16", f"GPU compute capability {gpu:g} < 8.0 (no bf16)"
    units = [flag for flag in BF16_CPU_FLAGS if flag in cpu_flags]
    if not units:
        return "float32", "CPU has no bf16 units (" + " or ".join(BF16_CPU_FLAGS) + ")"
    if backend != "tensorflow":
        return "float32", (f"CPU has {units[0]}, but bf16 was measured faster only on the "
                           f"TensorFlow backend, not {backend}")
    return "mixed_bfloat16", f"CPU has {units[0]}"


def package_versions(packages=PACKAGES):
    """`{package: version or None}` from the installed distributions (imports nothing)."""
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def cpu():
    """`(CPU model name, set of CPU flags)` from /proc/cpuinfo (empty set elsewhere)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return name, flags


def memory_gib():
    """Total memory in GiB, or None where /proc/meminfo is missing."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            return round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


def load_average():
    """The 1, 5 and 15-minute load averages, or None where unsupported."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux/macOS
        return None


def describe():
    """Machine, versions and speed-relevant settings, as a JSON-ready dict."""
    name, flags = cpu()
    return {
        "cpu": name,
        "cpu_count": os.cpu_count(),
        "cpu_flags": {flag: flag in flags for flag in ACCELERATOR_FLAGS} if flags else None,
        "memory_gib": memory_gib(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": package_versions(),
        "env": {k: os.environ[k] for k in RECORDED_ENV if k in os.environ},
    }
