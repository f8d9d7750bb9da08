"""The one probe of the machine and software: what runs here, and how fast it can.

`describe()` is what every report (training runs, exports, benchmarks) records
about the machine; `accelerator()` is what picks XLA and mixed precision; and
`tensorflow_available()` is what picks the TensorFlow-only paths. None of them
imports a framework at module import time.
"""

import os
import platform
from importlib import metadata

#: Packages whose versions a report records.
PACKAGES = ("keras", "tensorflow", "jax", "jaxlib", "torch", "ai-edge-litert", "numpy")

#: CPU flags that decide matmul speed (AVX-512, VNNI, bf16 and AMX units).
ACCELERATOR_FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16",
                     "amx_tile", "amx_int8")

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
