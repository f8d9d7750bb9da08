"""Seconds to build `keras_googlenet.GoogLeNet()` in a fresh process, per backend,
with the kernels drawn by `FlatHeNormal` against Keras's own `HeNormal`.

    python -m benchmarks.model_build_time                   # jax, tensorflow, torch
    python -m benchmarks.model_build_time --quick           # CI smoke run

Each case runs in its own Python process (JAX caches compiled kernels per
process, so only a fresh one shows what a user waits for), interleaved across
cases in each repeat. `first` is the first build in that process (the default
224x224 network, weights=None), `second` a second build of the same network.
The `keras` variant swaps `FlatHeNormal.__call__` for `HeNormal.__call__`,
which is how `conv_block` drew its kernels before.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from benchmarks.cli_lists import csv_list
from benchmarks.report import report
from keras_googlenet._internal.environment import load_average
from keras_googlenet._internal.fileio import atomic_write_json

DEFAULT_OUTPUT = "benchmarks/results/model_build_time.json"
VARIANTS = ("flat", "keras")
_WORKER = """
import json, sys, time
import keras
from keras_googlenet import GoogLeNet
from keras_googlenet.layers import FlatHeNormal
if sys.argv[1] == "keras":
    FlatHeNormal.__call__ = keras.initializers.HeNormal.__call__
times = []
for _ in range(2):
    start = time.perf_counter()
    GoogLeNet(**json.loads(sys.argv[2]))
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.model_build_time", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backends", type=csv_list, default=["jax", "tensorflow", "torch"])
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per case (median)")
    p.add_argument("--output", default=DEFAULT_OUTPUT)
    p.add_argument("--quick", action="store_true",
                   help="CI smoke run: JAX only, a width-0.125 CIFAR network, one repeat")
    return p


def _time(backend, variant, arguments):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", _WORKER, variant, json.dumps(arguments)],
                            env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"{backend}/{variant} failed: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    args = build_parser().parse_args(argv)
    arguments = {}
    if args.quick:
        args.backends, args.repeats = ["jax"], 1
        arguments = {"stem": "cifar", "width": 0.125, "classes": 10}
        if args.output == DEFAULT_OUTPUT:
            args.output = os.path.join(tempfile.mkdtemp(), "model_build_time.json")
    load_start = load_average()
    cases = [(b, v) for b in args.backends for v in VARIANTS]
    times = {case: [] for case in cases}
    for _ in range(args.repeats):
        for case in cases:
            times[case].append(_time(*case, arguments))
    rows = []
    for backend in args.backends:
        medians = {v: [statistics.median(t[i] for t in times[(backend, v)]) for i in (0, 1)]
                   for v in VARIANTS}
        for variant in VARIANTS:
            first, second = medians[variant]
            rows.append({"backend": backend, "variant": variant, "first_build_s": first,
                         "second_build_s": second,
                         "keras_over_flat_first": medians["keras"][0] / medians["flat"][0],
                         "repeats": times[(backend, variant)]})
    doc = report("model_build_time", dict(vars(args), arguments=arguments), rows,
                 load_start=load_start, extra={
                     "timing": "median over fresh processes (interleaved) of the first and "
                               "second GoogLeNet(...) build in each process"})
    atomic_write_json(args.output, doc)
    print(markdown_table(rows))
    print(f"wrote {args.output}")
    return 0


def markdown_table(rows):
    lines = ["| backend | kernels drawn by | first build (s) | second build (s) | "
             "keras / flat (first) |", "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['variant']} | {r['first_build_s']:.2f} | "
                     f"{r['second_build_s']:.2f} | {r['keras_over_flat_first']:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
