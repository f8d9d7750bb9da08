"""What one training-throughput measurement (a *case*) is: its fields and names.

A case is a dict of `CASE_DEFAULTS`' fields: which framework and backend, which
network (stem, image size, width, classes) and which settings (batch size, jit,
precision, devices, environment variables). `benchmarks.workers` runs every
case in its own worker process (`benchmarks.runners`); the network of a case is
`train_config(case).model_config(classes)`, the training recipe's own, for Keras
and for the PyTorch reference alike.

FLOP convention: `keras_googlenet.count_flops` counts the multiply-adds (MACs)
of one image's forward pass through all three heads; a training step costs about
3x the forward pass (forward, gradient with respect to the activations, gradient
with respect to the weights) and a MAC is 2 FLOPs, so training FLOPs per image =
6 x MACs. Achieved FLOP/s = images/s x 6 x MACs. Pooling, BatchNorm, activations,
the loss and the optimizer update are not counted.

This module imports no framework.
"""

import os

from training.config import TrainConfig, default_model

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
    # Keras: the dtype policy. PyTorch reference: "float32", or "mixed_bfloat16" for
    # torch.autocast(dtype=bfloat16) (float32 weights, bf16 compute: the same split).
    "precision": "float32",
    "devices": 1,  # > 1: --strategy mirrored (TF) / data-parallel (JAX) over logical CPUs
    # > 1: --strategy multi-worker (JAX): that many worker processes on 127.0.0.1, each
    # feeding batch_size / processes of every global batch (benchmarks.workers starts them).
    "processes": 1,
    "process_id": 0,  # set per process by benchmarks.workers
    "job_addresses": None,  # "127.0.0.1:PORT" of process 0, set by benchmarks.workers
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


def default_classes(stem):
    """10 classes for the CIFAR stem, 1000 for the ImageNet stem."""
    return 10 if stem == "cifar" else 1000


def current_backend():
    """$KERAS_BACKEND, else tensorflow (Keras's default)."""
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
    if c["framework"] == "torch" and c["precision"] not in ("float32", "mixed_bfloat16"):
        raise ValueError(f"the PyTorch reference runs precision float32 or mixed_bfloat16 "
                         f"(bf16 autocast); got {c['precision']!r}")
    if c["processes"] > 1 and (c["framework"] != "keras" or c["backend"] != "jax"):
        raise ValueError("processes > 1 (--strategy multi-worker) runs on the Keras JAX backend")
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
    elif case["precision"] != "float32":
        bits.append("bf16 autocast")
    if not case["fused_batchnorm"]:
        bits.append("unfused BatchNorm (Keras 3's)")
    if case["devices"] > 1:
        bits.append(f"{case['devices']} devices")
    if case["processes"] > 1:
        bits.append(f"{case['processes']} processes")
    if case["channels_last"]:
        bits.append("channels_last")
    if case["torch_threads"]:
        bits.append(f"{case['torch_threads']} threads")
    bits += [f"{k}={v}" for k, v in sorted(case["env"].items())]
    return ", ".join(bits)


def train_config(case):
    """The (unresolved) `training.config.TrainConfig` of a normalised Keras or torch case.

    Its `model_config(case["classes"])` is the case's network; the Keras runner
    also takes the recipe and runtime settings from it.
    """
    strategy, processes = "none", {}
    if case["devices"] > 1:
        strategy = "mirrored" if case["backend"] == "tensorflow" else "data-parallel"
    if case["processes"] > 1:
        strategy = "multi-worker"
        processes = dict(num_processes=case["processes"], process_id=case["process_id"],
                         job_addresses=case["job_addresses"])
    return TrainConfig(
        data="synthetic", model=default_model(stem=case["stem"], width=case["width"]),
        image_size=case["image_size"], batch_size=case["batch_size"], jit=case["jit"],
        precision=case["precision"], strategy=strategy, epochs=100, verbose=0,
        pipeline="tf.data" if case["backend"] == "tensorflow" else "numpy", **processes,
    )
