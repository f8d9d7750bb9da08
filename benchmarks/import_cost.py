"""What importing the library costs: the Keras-free parts against the model.

`import keras_googlenet` imports no Keras: the architecture facts and the model
configuration (`GoogLeNetConfig`) are plain Python, and the names that need
Keras load on first use. This benchmark times, in fresh interpreters, side by
side and interleaved, what each entry point pulls in:

    python -m benchmarks.import_cost                 # 5 interleaved repeats
    python -m benchmarks.import_cost --repeats 9 --output benchmarks/results/import_cost.json

Each case reports the median wall time of `python -c CODE` (interpreter start
included), how many modules it loaded, and whether Keras or TensorFlow got
imported; `vs model` is the median of the per-repeat ratios to the model case.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

from benchmarks.report import report
from keras_googlenet._internal.environment import load_average
from keras_googlenet._internal.fileio import atomic_write_json

DEFAULT_OUTPUT = "benchmarks/results/import_cost.json"

_PROBE = (
    "; import sys, json; print(json.dumps([len(sys.modules), 'keras' in sys.modules, "
    "'tensorflow' in sys.modules]))"
)

#: (label, code): what a user or a script runs.
CASES = (
    ("python (empty interpreter)", "pass"),
    ("facts: keras_googlenet.PAPER_BLOCKS", "import keras_googlenet as kg; kg.PAPER_BLOCKS"),
    ("config: GoogLeNetConfig().validate()",
     "import keras_googlenet as kg; kg.GoogLeNetConfig(stem='cifar', classes=10).validate()"),
    ("tuner cost model (tuner.cost)", "from tuner.cost import CostModel; CostModel().cost("
     "__import__('keras_googlenet').PAPER_BLOCKS, 1.0)"),
    ("model: keras_googlenet.GoogLeNet", "import keras_googlenet as kg; kg.GoogLeNet"),
)


def _run(code):
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code + _PROBE], capture_output=True, text=True,
                         check=True)
    wall = time.perf_counter() - started
    modules, keras, tensorflow = json.loads(out.stdout.strip().splitlines()[-1])
    return wall, modules, keras, tensorflow


def measure(repeats):
    """Runs every case `repeats` times, interleaved; returns the result rows."""
    samples = {label: [] for label, _ in CASES}
    info = {}
    for _ in range(repeats):
        for label, code in CASES:
            wall, modules, keras, tensorflow = _run(code)
            samples[label].append(wall)
            info[label] = {"modules": modules, "imports_keras": keras,
                           "imports_tensorflow": tensorflow}
    model = samples[CASES[-1][0]]
    rows = []
    for label, code in CASES:
        ratios = [a / b for a, b in zip(samples[label], model)]
        rows.append({"label": label, "code": code, "median_s": statistics.median(samples[label]),
                     "samples_s": samples[label], "vs_model": statistics.median(ratios),
                     **info[label]})
    return rows


def markdown(rows):
    lines = ["| entry point | median (s) | vs model | modules | Keras | TensorFlow |",
             "|---|---:|---:|---:|:---:|:---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['median_s']:.2f} | {r['vs_model']:.2f}x | "
                     f"{r['modules']} | {'yes' if r['imports_keras'] else 'no'} | "
                     f"{'yes' if r['imports_tensorflow'] else 'no'} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.import_cost",
                                     description=__doc__.split("\n\n")[0])
    group = parser.add_argument_group("measurement")
    group.add_argument("--repeats", type=int, default=5, help="interleaved repeats per case")
    group.add_argument("--output", default=DEFAULT_OUTPUT, help="JSON report path")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1; got {args.repeats}")
    load_start = load_average()
    rows = measure(args.repeats)
    print(markdown(rows))
    doc = report("import_cost", {"repeats": args.repeats}, rows, load_start=load_start)
    doc["timing"] = "median wall time of a fresh `python -c` per case (start-up included), " \
                    "cases interleaved in each repeat"
    atomic_write_json(args.output, doc)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
