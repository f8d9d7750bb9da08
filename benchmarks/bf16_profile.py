"""Which oneDNN kernels a Keras/TensorFlow training step runs, in float32 and in mixed_bfloat16.

    python -m benchmarks.bf16_profile            # paper stem 96x96, batch 32, 4 steps
    python -m benchmarks.bf16_profile --quick    # CIFAR stem 32x32, width 0.125, batch 8

Each precision trains in its own process with `ONEDNN_VERBOSE=1`, which makes
oneDNN print one line per primitive it executes; the benchmark counts them by
primitive kind, implementation (e.g. `brg_conv_fwd:avx512_core_bf16`) and
source data type, and writes the counts and a summary (share of convolutions
that ran in bf16, and with which ISA) to JSON. It answers "are TensorFlow's
oneDNN bf16 convolutions used?" for the machine it runs on.
"""

import argparse
import collections
import json
import os
import re
import subprocess
import sys

from benchmarks.cases import default_classes, normalize_case
from benchmarks.report import report
from keras_googlenet._internal.environment import load_average
from keras_googlenet._internal.fileio import atomic_write_json


def _worker(case_json):
    """In the child process: build the recipe's model and train `steps` steps."""
    from benchmarks.runners import KerasRunner

    case = normalize_case(json.loads(case_json))
    runner = KerasRunner(case)  # builds, compiles, runs warmup_steps steps
    print("BF16_PROFILE_START", flush=True)
    timed, _ = runner.fit(case["steps"])  # seconds of steps 2..steps
    print(f"BF16_PROFILE_END {1000 * timed / (case['steps'] - 1):.3f}", flush=True)


def parse_verbose(text):
    """`(executions, milliseconds)` of the timed steps: two `Counter`s keyed by
    `(kind, implementation, src dtype)`; the time is oneDNN's own (an exec line's
    last field)."""
    counts, ms = collections.Counter(), collections.Counter()
    inside = False
    for line in text.splitlines():
        if line.startswith("BF16_PROFILE_START"):
            inside = True
        elif line.startswith("BF16_PROFILE_END"):
            inside = False
        elif inside and line.startswith("onednn_verbose") and ",exec," in line:
            fields = line.split(",")
            at = fields.index("exec")
            kind, impl = fields[at + 2], fields[at + 3]
            dtype = re.search(r"\b(?:src|data|diff_dst)[_:](f32|bf16|f16|s32|s8|u8)\b", line)
            key = (kind, impl, dtype.group(1) if dtype else "?")
            counts[key] += 1
            try:
                ms[key] += float(fields[-1])
            except ValueError:
                ms[key] += 0.0  # an older format without the time
    return counts, ms


def summarize(counts, ms=None, step_ms=None, steps=1):
    """Share of convolution executions in bf16, the implementations used, and
    (with `ms`, `step_ms`) oneDNN's time per step by primitive kind.

    `onednn_ms_over_step` compares their sum with the step's wall time: TensorFlow
    runs independent ops (the four branches of an Inception block) at once, so
    the sum can exceed the step; it is a share of work, not of wall time.
    """
    conv = {k: v for k, v in counts.items() if k[0] == "convolution"}
    total = sum(conv.values())
    bf16 = sum(v for k, v in conv.items() if k[2] == "bf16")
    norm = {k: v for k, v in counts.items() if k[0] == "batch_normalization"}
    summary = {
        "onednn_executions": sum(counts.values()),
        "convolution_executions": total,
        "convolution_bf16_share": bf16 / total if total else None,
        "convolution_implementations": sorted({k[1] for k in conv}),
        "batch_normalization_bf16_share": (sum(v for k, v in norm.items() if k[2] == "bf16")
                                           / sum(norm.values()) if norm else None),
        # "nspc_bnorm:any" is oneDNN's generic (not ISA-specific) batch normalization.
        "batch_normalization_implementations": {f"{k[1]} {k[2]}": v for k, v in norm.items()},
        "kinds": dict(collections.Counter(k[0] for k in counts.elements())),
    }
    if ms is not None and step_ms:
        by_kind = collections.Counter()
        for (kind, _, _), t in ms.items():
            by_kind[kind] += t
        summary["step_ms"] = step_ms
        summary["onednn_ms_per_step_by_kind"] = {k: t / steps for k, t in
                                                 by_kind.most_common()}
        inside = sum(by_kind.values()) / steps
        summary["onednn_ms_per_step"] = inside
        summary["onednn_ms_over_step"] = inside / step_ms
    return summary


def _run_worker(case, verbose):
    """Runs `_worker` in a fresh process; returns its standard output."""
    env = dict(os.environ, ONEDNN_VERBOSE="1" if verbose else "0", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", "import sys; from benchmarks.bf16_profile "
                           "import _worker; _worker(sys.argv[1])", json.dumps(case)],
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"error: the {case['precision']} worker failed: {proc.stderr[-2000:]}")
    return proc.stdout


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.bf16_profile",
                                description=__doc__.splitlines()[0])
    p.add_argument("--precisions", default="float32,mixed_bfloat16")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--output", default="benchmarks/results/cpu_bf16_profile.json")
    args = p.parse_args(argv)
    stem, size, width, batch = ("cifar", 32, 0.125, 8) if args.quick else ("imagenet", 96, 1.0,
                                                                          32)
    load_start = load_average()
    results = []
    for precision in args.precisions.split(","):
        case = dict(framework="keras", backend="tensorflow", stem=stem, image_size=size,
                    width=width, batch_size=batch, classes=default_classes(stem),
                    precision=precision, steps=max(2, args.steps), warmup_steps=3)
        counts, ms = parse_verbose(_run_worker(case, verbose=True))
        # The step time comes from a second worker without the verbose log, whose
        # printing would slow the step down.
        step_ms = float(_run_worker(case, verbose=False).split("BF16_PROFILE_END")[1].split()[0])
        row = dict(case, status="ok",
                   summary=summarize(counts, ms, step_ms, steps=case["steps"]),
                   counts=[{"kind": k[0], "implementation": k[1], "src_dtype": k[2], "count": v,
                            "ms": round(ms[k], 3)} for k, v in counts.most_common()])
        results.append(row)
        s = row["summary"]
        print(f"{precision}: {s['convolution_executions']} convolution executions, "
              f"bf16 share {s['convolution_bf16_share']}, implementations "
              f"{s['convolution_implementations']}; step {step_ms:.0f} ms, of which "
              f"{s['onednn_ms_per_step']:.0f} ms in oneDNN ({s['onednn_ms_per_step_by_kind']})")
    doc = report("bf16_profile", vars(args), results, load_start=load_start)
    atomic_write_json(args.output, doc)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
