"""What `--precision auto`'s start-up measurement decides on this CPU, for several networks.

    python -m benchmarks.precision_calibration                 # the recipes users run
    python -m benchmarks.precision_calibration --quick         # CI smoke run

For each `--cases` entry (`stem:image_size:width:batch`) it runs
`training.precision.measure` (the run's own network in float32 and in
`mixed_bfloat16`, compiled as a run compiles it, interleaved steps) `--repeats`
times and records the step times, the speed-up and the choice
`training.precision.decide` makes from them, with the machine. This is the same
measurement a training run makes at start-up where the CPU has bf16 units (it
runs here whatever the CPU has, so the figures exist for every CPU kind).
"""

import argparse
import os
import statistics
import sys
import tempfile

from benchmarks.cli_lists import csv_list
from benchmarks.report import report
from keras_googlenet._internal.environment import load_average
from keras_googlenet._internal.fileio import atomic_write_json

DEFAULT_OUTPUT = "benchmarks/results/cpu_precision_calibration.json"
#: The shipped CIFAR-10 recipe, the default run (width 1) and the paper stem.
DEFAULT_CASES = ["cifar:32:0.5:128", "cifar:32:1.0:128", "imagenet:96:1.0:32"]


def parse_case(text):
    stem, size, width, batch = text.split(":")
    return {"stem": stem, "image_size": int(size), "width": float(width), "batch_size": int(batch)}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.precision_calibration",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=csv_list, default=DEFAULT_CASES,
                   help="stem:image_size:width:batch entries")
    p.add_argument("--repeats", type=int, default=3, help="measurements per case")
    p.add_argument("--output", default=DEFAULT_OUTPUT)
    p.add_argument("--quick", action="store_true",
                   help="CI smoke run: cifar:16:0.0625:4, one measurement of 1 step")
    args = p.parse_args(argv)
    steps = {}
    if args.quick:
        args.cases, args.repeats, steps = ["cifar:16:0.0625:4"], 1, {"steps": 1, "warmup": 1}
        if args.output == DEFAULT_OUTPUT:
            args.output = os.path.join(tempfile.mkdtemp(), "calibration.json")
    load_start = load_average()

    from training.config import TrainConfig
    from training.precision import decide, measure

    rows = []
    for case in args.cases:
        # The case's settings as flat keys (stem and width are TrainConfig.model's).
        config = TrainConfig.from_dict({"precision": "float32", **parse_case(case)}).resolve()
        times = [measure(config, **steps) for _ in range(args.repeats)]
        speedups = [f / b for f, b in times]
        policy, reason = decide(statistics.median(t[0] for t in times),
                                statistics.median(t[1] for t in times))
        rows.append({"case": case, **parse_case(case),
                     "float32_s_per_step": [t[0] for t in times],
                     "bf16_s_per_step": [t[1] for t in times],
                     "speedup_repeats": speedups, "speedup_median": statistics.median(speedups),
                     "auto_chooses": policy, "reason": reason})
        print(f"{case}: bf16 {statistics.median(speedups):.2f}x float32 -> {policy}")
    atomic_write_json(args.output, report("precision_calibration", vars(args), rows,
                                          load_start=load_start))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
