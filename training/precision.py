"""`--precision auto` on a CPU with bf16 units: measured on the run's own model, cached.

A CPU flag (`avx512_bf16`, `amx_bf16`) says that bf16 kernels exist, not that they
win: on one Xeon bf16 trained the CIFAR-stem network at 0.69x float32, on AMD Zen 5
at 1.53x (`benchmarks/results/cpu_precision_calibration.json`). So where the rule
of `keras_googlenet._internal.environment.auto_precision` picks `mixed_bfloat16` on a CPU,
`calibrate` times a few training steps of the run's own network (its stem, width,
blocks, image size and batch size) in float32 and in `mixed_bfloat16`, interleaved,
and keeps bf16 only when it is at least `MIN_SPEEDUP` times faster. The answer is
cached per CPU model and flags, TensorFlow and Keras version and network shape
(`precision.json` in the machine's cache folder), so it is measured once per
machine kind and setting, and a resumed run keeps the precision it started with.
"""

import dataclasses
import json
import statistics
import time
from pathlib import Path

from keras_googlenet._internal.environment import cpu, package_versions
from keras_googlenet._internal.fileio import atomic_write_json

#: bf16 is kept only when float32 steps take at least this many times as long:
#: below it the gain is within the noise of a shared machine, and auto must
#: never train slower than float32.
MIN_SPEEDUP = 1.05
#: Timed steps per precision (after `WARMUP_STEPS` untimed ones), interleaved.
STEPS, WARMUP_STEPS = 4, 2
CACHE_FILE = "precision.json"
BF16 = "mixed_bfloat16"


def needs_calibration(config):
    """Whether `config` (resolved) is an auto choice of bf16 by the CPU rule (GPUs have
    reasons of their own, `keras_googlenet._internal.environment.auto_precision`)."""
    return config.precision == BF16 and (config.precision_reason or "").startswith("auto: CPU has")


def cache_key(config):
    """What the measurement depends on: the CPU, the versions and the network's shape."""
    name, flags = cpu()
    versions = package_versions(("tensorflow", "keras"))
    return json.dumps({
        "cpu": name, "flags": sorted(f for f in flags if "bf16" in f or "amx" in f
                                     or f.startswith("avx512")),
        **versions, "stem": config.model.stem, "width": config.model.width,
        "blocks": config.to_dict()["model"]["blocks"],
        "batch_norm": config.model.batch_norm, "image_size": config.image_size,
        "batch_size": config.batch_size,
    }, sort_keys=True)


def decide(float32_s, bf16_s):
    """`(policy, reason)` from the median step times of the two precisions."""
    speedup = float32_s / bf16_s
    figures = (f"{speedup:.2f}x float32 ({bf16_s:.3f} vs {float32_s:.3f} s/step, "
               f"measured on this model)")
    if speedup >= MIN_SPEEDUP:
        return BF16, f"auto: CPU has bf16 units; bf16 trains at {figures}"
    return "float32", (f"auto: CPU has bf16 units, but bf16 trains at only {figures}, "
                       f"under {MIN_SPEEDUP}x")


def measure(config, steps=STEPS, warmup=WARMUP_STEPS):
    """Median seconds per training step `(float32, mixed_bfloat16)` of the run's network.

    Both models are built, compiled as the run compiles them and fed the same
    random batch; their steps alternate, so that a change in the machine's
    load touches both alike.
    """
    import keras
    import numpy as np

    from training.recipe import build_model, compile_model

    size, batch, classes = config.image_size, config.batch_size, 10
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, size, size, 3)).astype("float32")
    y = np.eye(classes, dtype="float32")[rng.integers(0, classes, batch)]
    models = {}
    for policy in ("float32", BF16):
        keras.config.set_dtype_policy(policy)
        model = build_model(config, classes)
        compile_model(model, config, steps_per_epoch=100)
        models[policy] = (model, {name: y for name in model.output_names})
    keras.config.set_dtype_policy("float32")
    times = {policy: [] for policy in models}
    for step in range(warmup + steps):
        for policy, (model, labels) in models.items():
            start = time.perf_counter()
            model.train_on_batch(x, labels)
            if step >= warmup:
                times[policy].append(time.perf_counter() - start)
    del models
    keras.backend.clear_session()
    return statistics.median(times["float32"]), statistics.median(times[BF16])


def _started_run(config):
    """The saved configuration of the unfinished run `config` would resume, if its
    precision was chosen by auto; else None."""
    from training.config import TrainConfig

    run_dir = Path(config.run_dir)
    if config.overwrite or (run_dir / "results.json").exists():
        return None
    try:
        saved = TrainConfig.load(run_dir / "config.json")
    except (OSError, ValueError, TypeError):
        return None
    reason = saved.precision_reason
    return saved if isinstance(reason, str) and reason.startswith("auto:") else None


def calibrate(config, log=print, measure_fn=measure):
    """`config` with `precision` decided by measurement where the CPU rule picked bf16.

    Returns `config` unchanged unless `needs_calibration`. A cached answer (same
    CPU, versions and network shape) is reused without measuring. The cache is
    the machine's (`$KERAS_GOOGLENET_CACHE`, else `~/.cache/keras_googlenet`),
    not `--cache-dir`, which holds a run's extracted archives.
    """
    if not needs_calibration(config):
        return config
    started = _started_run(config)
    if started is not None:  # resuming: the precision the run started with
        return dataclasses.replace(config, precision=started.precision,
                                   precision_reason=started.precision_reason)
    # Imported here: the training.data package imports TensorFlow, which must
    # come after the CLI has quieted its start-up logging.
    from training.data.archives import cache_root

    path = cache_root() / CACHE_FILE
    key = cache_key(config)
    try:
        cache = json.loads(path.read_text(encoding="utf-8"))
        cache = cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        cache = {}
    entry = cache.get(key)
    if isinstance(entry, dict) and entry.get("policy") in ("float32", BF16):
        policy, reason = entry["policy"], str(entry.get("reason", ""))
        reason += f" (cached in {path})"
    else:
        log("Measuring float32 against mixed_bfloat16 on this model (once per CPU kind and "
            "network; a few seconds) ...")
        float32_s, bf16_s = measure_fn(config)
        policy, reason = decide(float32_s, bf16_s)
        cache[key] = {"policy": policy, "reason": reason, "float32_s": float32_s,
                      "bf16_s": bf16_s, "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, cache)
        except OSError as e:  # a read-only cache costs a new measurement next time
            log(f"note: could not cache the precision measurement in {path}: {e.strerror}")
    return dataclasses.replace(config, precision=policy, precision_reason=reason)
