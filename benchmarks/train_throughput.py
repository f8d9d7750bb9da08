"""Training images/second of `model.fit` on synthetic data over a grid of settings.

    python -m benchmarks.train_throughput                      # the default CPU grid
    python -m benchmarks.train_throughput --quick              # CI smoke run (tiny)
    python -m benchmarks.train_throughput --inputs imagenet:224 --batch-sizes 256 \\
        --precisions mixed_bfloat16 --jit on --peak-tflops 989  # e.g. a GPU, KERAS_BACKEND=jax

The grid is the product of the listed values of every flag (stem and image size,
width, batch size, jit, precision, Keras backend, device count, extra
environment variables). Each setting is built with the training recipe itself
(`training.recipe.setup_runtime`, `build_model`, `compile_model`: the three-head
GoogLeNet, its losses, metrics and SGD optimizer) and trained with `model.fit`
in its own worker process; the settings are timed interleaved, warm-up
excluded, median of `--repeats` (see `benchmarks.workers`).

Achieved FLOP/s = images/s x 6 x forward multiply-adds per image
(`keras_googlenet.count_flops` of the three-head model: one forward and two
backward passes, 2 FLOPs per multiply-add); with `--peak-tflops` the table adds
the utilisation of that peak. `--matmul` adds the FLOP/s of a 2048x2048 matmul
in float32 and bfloat16 on each backend as a practical reference for the device.

The results go to `--output` (JSON) and a markdown table on stdout. If the
input-pipeline benchmark's JSON is present (`--pipeline-json`), the ratio of
the pipeline's images/s to the model's at 32x32 is reported too.
"""

import argparse
import itertools
import json
import math
import os
import subprocess
import sys

from benchmarks.cases import CASE_DEFAULTS, current_backend, describe
from benchmarks.cli_lists import bool_list, choice_list, csv_list, float_list, int_list
from benchmarks.report import markdown_table, report
from benchmarks.workers import run_interleaved
from keras_googlenet.architecture import STEMS
from keras_googlenet._internal.environment import load_average
from keras_googlenet._internal.fileio import atomic_write_json

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
BACKENDS = ("tensorflow", "jax", "torch")

#: Inputs of the default grid: the CIFAR stem at 32x32 (the training default),
#: the paper's stem at 96x96 (the PyTorch comparison) and at 224x224 (the paper).
DEFAULT_INPUTS = "cifar:32,imagenet:96,imagenet:224"
DEFAULT_OUTPUT = "benchmarks/results/train_throughput.json"
DEFAULT_PIPELINE_JSON = "benchmarks/results/input_pipeline.json"


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.train_throughput",
        description="Training images/s of model.fit on synthetic data for a grid of settings "
        "(product of all lists), interleaved, median of repeats, warm-up excluded.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("grid (comma-separated lists; the grid is their product)")
    g.add_argument("--inputs", type=_inputs, default=_inputs(DEFAULT_INPUTS),
                   help="STEM:SIZE pairs, stem cifar or imagenet (default "
                   f"{DEFAULT_INPUTS})")
    g.add_argument("--widths", type=float_list, default=[1.0], help="channel multipliers")
    g.add_argument("--batch-sizes", type=int_list, default=[32], help="global batch sizes")
    g.add_argument("--jit", type=bool_list, default=[False, True],
                   help="XLA compilation on/off (JAX is only measured with jit on, the Keras "
                   "torch backend only with jit off)")
    g.add_argument("--precisions", type=choice_list(PRECISIONS), default=["float32"],
                   help=f"Keras dtype policies: {', '.join(PRECISIONS)}")
    g.add_argument("--backends", type=choice_list(BACKENDS), default=None,
                   help="Keras backends, each setting in its own process (default: "
                   "$KERAS_BACKEND, else tensorflow)")
    g.add_argument("--devices", type=int_list, default=[1],
                   help="devices per step: 2 splits every batch over 2 logical CPU devices "
                   "(--strategy mirrored on TensorFlow, data-parallel on JAX); on a GPU "
                   "machine, over the visible GPUs")
    g.add_argument("--processes", type=int_list, default=[1],
                   help="processes per step: 2 runs --strategy multi-worker as 2 processes on "
                   "127.0.0.1 (JAX backend), each feeding half of every batch, and times the "
                   "all-reduce of the gradients")
    g.add_argument("--fused-batchnorm", type=bool_list, default=[True],
                   help="on = keras_googlenet.BatchNormalization as shipped (fused training "
                   "kernel on TensorFlow); off = fused=False, Keras 3's own unfused "
                   "BatchNormalization (the project before the fused layer; TensorFlow only)")
    g.add_argument("--env", action="append", default=None, metavar="NAME=VALUE[,NAME=VALUE]",
                   help="an environment variant for the workers, e.g. TF_ENABLE_ONEDNN_OPTS=0 "
                   "or TF_NUM_INTRAOP_THREADS=1,TF_NUM_INTEROP_THREADS=1; repeat the flag for "
                   "several variants; an empty string is the unchanged environment")
    g = p.add_argument_group("timing")
    g.add_argument("--steps", type=int, default=6,
                   help="optimizer steps per timed repeat (the first is not timed)")
    g.add_argument("--warmup-steps", type=int, default=3,
                   help="untimed steps after compilation, before the repeats")
    g.add_argument("--repeats", type=int, default=5, help="timed repeats per setting (median)")
    g.add_argument("--max-alive", type=int, default=None,
                   help="at most this many worker processes at once (memory); settings are "
                   "then interleaved within groups of this size")
    g = p.add_argument_group("reporting")
    g.add_argument("--peak-tflops", type=float, default=None,
                   help="peak of the device in TFLOP/s, for the utilisation column")
    g.add_argument("--matmul", action="store_true",
                   help="also measure a 2048x2048 matmul (float32 and bfloat16) per backend")
    g.add_argument("--pipeline-json", default=DEFAULT_PIPELINE_JSON,
                   help="JSON of benchmarks.input_pipeline to compare the model's throughput "
                   "with (at 32x32); run first if missing, except with --quick")
    g.add_argument("--output", default=DEFAULT_OUTPUT, help="JSON file to write")
    p.add_argument("--quick", action="store_true",
                   help="CI smoke run: cifar:32, width 0.125, batch 8, jit off, float32, "
                   "2 steps, 1 warm-up step, 1 repeat")
    return p


def _inputs(text):
    pairs = []
    for item in csv_list(text):
        stem, _, size = item.partition(":")
        if stem not in STEMS or not size.isdigit():
            raise argparse.ArgumentTypeError(f"expected STEM:SIZE with stem cifar or imagenet, "
                                             f"got {item!r}")
        pairs.append((stem, int(size)))
    return pairs


def _env_variant(text):
    env = {}
    for item in csv_list(text):
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--env expects NAME=VALUE[,NAME=VALUE]; got {text!r}")
        env[name] = value
    return env


def grid(args):
    """Returns `(cases, skipped)`: the settings to measure and those left out, with why."""
    backends = args.backends or [current_backend()]
    envs = [_env_variant(e) for e in (args.env or [""])]
    cases, skipped = [], []
    for backend, (stem, size), width, batch, jit, precision, devices, processes, fused, env in \
            itertools.product(backends, args.inputs, args.widths, args.batch_sizes, args.jit,
                              args.precisions, args.devices, args.processes,
                              args.fused_batchnorm, envs):
        case = dict(framework="keras", backend=backend, stem=stem, image_size=size,
                    width=width, batch_size=batch, jit=jit, precision=precision,
                    devices=devices, processes=processes, env=env, steps=args.steps,
                    warmup_steps=args.warmup_steps, fused_batchnorm=fused)
        why = None
        if not fused and backend != "tensorflow":
            why = "fused BatchNorm only exists on TensorFlow: off is the same as on"
        elif backend == "jax" and not jit:
            why = "JAX without jit runs op by op; training always jits on JAX"
        elif backend == "torch" and jit:
            why = "jit on the torch backend is torch.compile (minutes of compilation); not measured"
        elif backend == "torch" and devices > 1:
            why = "no multi-device strategy on the torch backend"
        elif batch % devices:
            why = f"batch {batch} does not split over {devices} devices"
        elif processes > 1 and backend != "jax":
            why = "several processes (--strategy multi-worker) run on the JAX backend only"
        elif batch % (devices * processes):
            why = f"batch {batch} does not split over {processes} processes"
        if why:
            label = describe({**CASE_DEFAULTS, **case})
            skipped.append({"label": label, "reason": why})
        else:
            cases.append(case)
    if args.matmul:
        for backend in backends:
            for dtype in ("float32", "bfloat16"):
                cases.append(dict(framework="matmul", backend=backend, dtype=dtype,
                                  steps=max(2, args.steps), warmup_steps=1))
    return cases, skipped


def pipeline_comparison(path, results, run_if_missing=False):
    """Input pipeline images/s (from its benchmark's JSON) against the model's at 32x32.

    With `run_if_missing`, runs `python -m benchmarks.input_pipeline --output path`
    first when the file does not exist.
    """
    if path and run_if_missing and not os.path.isfile(path):
        print(f"Running python -m benchmarks.input_pipeline --output {path} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "benchmarks.input_pipeline", "--output", path],
                       check=False, stdout=subprocess.DEVNULL)
    if not path or not os.path.isfile(path):
        return {"available": False,
                "note": f"{path} not found: run python -m benchmarks.input_pipeline first"}
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        return {"available": False, "note": f"could not read {path}: {e}"}
    pipelines = pipeline_figures(doc)
    if not pipelines:
        return {"available": False, "note": f"no images/s figure found in {path}"}
    rows = [r for r in results if r.get("status") == "ok" and r["framework"] == "keras"
            and r["stem"] == "cifar" and r["image_size"] == 32]
    comparisons = [
        {"pipeline": p["name"], "pipeline_images_per_second": p["images_per_second"],
         "model": r["label"], "model_images_per_second": r["images_per_second"],
         "ratio": p["images_per_second"] / r["images_per_second"]}
        for p in pipelines for r in rows
    ]
    return {
        "available": True,
        "source": path,
        "pipelines": pipelines,
        "comparisons": comparisons,
        "target": "pipeline >= 10x the model's training images/s",
        "meets_target": all(c["ratio"] >= 10 for c in comparisons) if comparisons else None,
    }


def pipeline_figures(doc):
    """The augmented-pipeline entries (name, images/s) of the input-pipeline JSON.

    Takes every dict with a positive `images_per_second`; keeps those marked as
    augmented (`augment: true`, or "augment" in their `stage`) when there are any.
    """
    found = []

    def walk(node):
        if isinstance(node, dict):
            value = node.get("images_per_second")
            if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
                found.append(node)
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(doc)
    augmented = [n for n in found
                 if n.get("augment") is True or "augment" in str(n.get("stage", "")).lower()]
    return [{"name": " / ".join(str(n[k]) for k in ("stage", "pipeline") if k in n) or "pipeline",
             "images_per_second": float(n["images_per_second"])}
            for n in (augmented or found)]


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.quick:
        args.inputs, args.widths, args.batch_sizes = [("cifar", 32)], [0.125], [8]
        args.jit, args.precisions = [False], ["float32"]
        if args.backends and "jax" in args.backends:
            args.jit = [True]
        args.steps, args.warmup_steps, args.repeats = 2, 1, 1
    for flag in ("steps", "repeats", "warmup_steps"):
        minimum = 2 if flag == "steps" else 0 if flag == "warmup_steps" else 1
        if getattr(args, flag) < minimum:
            print(f"error: --{flag.replace('_', '-')} must be >= {minimum}", file=sys.stderr)
            return 2
    try:
        cases, skipped = grid(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not cases:
        print("error: the grid is empty (every setting was skipped)", file=sys.stderr)
        return 2
    load_start = load_average()
    print(f"Measuring {len(cases)} setting(s), {args.repeats} repeat(s) each, load average "
          f"{load_start} ...", file=sys.stderr)
    results = run_interleaved(cases, repeats=args.repeats,
                              peak_tflops=args.peak_tflops, max_alive=args.max_alive)
    settings = {k: v for k, v in vars(args).items()}
    settings["backends"] = args.backends or [current_backend()]
    pipeline = pipeline_comparison(args.pipeline_json, results, run_if_missing=not args.quick)
    doc = report("train_throughput", settings, results, load_start=load_start,
                 extra={"skipped": skipped, "input_pipeline": pipeline})
    atomic_write_json(args.output, doc)
    print(markdown_table(results, peak=args.peak_tflops is not None))
    for r in results:
        for a in r.get("allreduce", []):
            print(f"- {r['label']}: all-reduce of {a['bytes'] / 1e6:.1f} MB (float32) "
                  f"{1000 * a['seconds']:.1f} ms")
    for s in skipped:
        print(f"- skipped {s['label']}: {s['reason']}")
    if pipeline["available"]:
        for c in pipeline["comparisons"]:
            print(f"- input pipeline ({c['pipeline']}) {c['pipeline_images_per_second']:,.0f} "
                  f"images/s = {c['ratio']:,.0f}x the training throughput of {c['model']}")
    print(f"\nLoad average {load_start} -> {doc['load_average']['end']}; wrote {args.output}")
    failed = [r for r in results if r["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
