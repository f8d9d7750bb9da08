"""A finished training run as a benchmark record: its files, the machine, time to accuracy.

    python -m benchmarks.run_report runs/NAME --output-dir benchmarks/results/NAME \\
        --command "python -m training.cifar ..." --levels 0.85,0.9,0.92,0.93

Copies the run's `config.json`, `model_config.json`, `results.json`,
`history.csv` and `curves.png` into `--output-dir`, writes `lscpu.txt` (the
output of `lscpu` on this machine: run it where the run trained) and
`run_report.json`: the training command and commit given, the precision and
its reason, the held-out accuracy, the wall time, the median training images/s,
and for each `--levels` the first epoch (counted from 1) whose held-out main
accuracy reached it, with the run's wall time then (`history.csv`'s
`elapsed_s`), or null where it was never reached. It prints the levels as a
markdown table.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.cli_lists import float_list
from keras_googlenet._internal.fileio import atomic_write_json, atomic_write_text
from training.run import elapsed_seconds, read_history

RUN_FILES = ("config.json", "model_config.json", "results.json", "history.csv", "curves.png")
METRIC = "val_main_accuracy"


def levels_table(rows, levels):
    """`{level: {"epoch": E, "wall_time_s": T} or None}`: the first epoch reaching each."""
    elapsed = elapsed_seconds(rows)
    out = {}
    for level in levels:
        hit = next((i for i, row in enumerate(rows) if float(row[METRIC]) >= level), None)
        out[f"{level:g}"] = None if hit is None else {
            "epoch": hit + 1, "wall_time_s": round(elapsed[hit], 1)}
    return out


def _hms(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def markdown(table):
    lines = ["| held-out accuracy | first epoch | wall time |", "|---:|---:|---:|"]
    for level, hit in table.items():
        reached = ("not reached", "") if hit is None else (hit["epoch"], _hms(hit["wall_time_s"]))
        lines.append(f"| {100 * float(level):g}% | {reached[0]} | {reached[1]} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.run_report",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a finished run folder of python -m training.cifar")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--command", required=True, help="the command that trained the run")
    p.add_argument("--commit", default=None, help="the commit it trained at")
    p.add_argument("--levels", type=float_list, default=[0.85, 0.9, 0.92, 0.93])
    args = p.parse_args(argv)

    run, out = Path(args.run), Path(args.output_dir)
    results = json.loads((run / "results.json").read_text())
    config = json.loads((run / "config.json").read_text())
    rows = read_history(run / "history.csv")
    out.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        shutil.copyfile(run / name, out / name)
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    atomic_write_text(out / "lscpu.txt", lscpu)
    table = levels_table(rows, args.levels)
    report = {
        "run": run.name,
        "command": args.command,
        "commit": args.commit,
        "cpu": next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                     if line.startswith("Model name")), None),
        "precision": config["precision"],
        "precision_reason": config.get("precision_reason"),
        "epochs": len(rows),
        "val_main_accuracy": results["val_accuracy"]["main"],
        "best_val_main_accuracy": max(float(row[METRIC]) for row in rows),
        "num_train": results["num_train"],
        "num_val": results["num_val"],
        "wall_time_s": round(elapsed_seconds(rows)[-1], 1),
        "train_images_per_second_median": statistics.median(
            float(row["images_per_second"]) for row in rows),
        "levels": table,
        "note": "held-out = 5,000 images carved out of the CIFAR-10 training split "
                "(stratified, seeded), never the official test split",
    }
    atomic_write_json(out / "run_report.json", report)
    print(markdown(table))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
