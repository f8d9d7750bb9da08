"""Held-out accuracy against optimizer steps, epochs and wall time, per recipe and seed.

    python -m benchmarks.time_to_accuracy --data-dir ../shared/data/cifar10/train.tar.xz \\
        --flags "--width 0.25 --limit 5000 --val-fraction 0.02 --epochs 3" \\
        --recipe base= --recipe cutout8="--cutout 8" --seeds 0,1,2 --tta-flip --ema

Each recipe is a set of `python -m training.cifar` flags (added to `--flags`);
each (recipe, seed) is one `training.cifar.train` run (the same data code, model,
recipe and history as a user's run), stopped early when the run's selection
metric (`training.evaluation.selection_metric`) reaches `--target` or the run
has trained for `--budget-minutes`. Runs are interleaved (every recipe for seed
0, then for seed 1, ...), so that a change in machine load hits every recipe
alike.

Every held-out accuracy column of the runs' `history.csv` (main head) is an
"evaluation": `plain` (`val_main_accuracy`), `tta` (flip test-time augmentation),
`ema` and `ema_tta` (the EMA weights): one run with `--ema --tta-flip` measures
all four on the same training. The primary figure is optimizer steps (and
epochs) to each accuracy level, over the seeds; seconds are steps x batch size /
the recipe's training images/s measured in this run (median of its epochs),
with the images/s ratio to the first recipe, paired by seed. Accuracy is known
once per epoch (at validation), so steps to a level are a multiple of the
epoch's steps. Writes a JSON document and a PNG plot (matplotlib, Agg).
`--merge A.json --merge B.json [--drop NAME]` summarises and plots the recipes of
earlier documents together, without training.
"""

import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.cli_lists import float_list, int_list
from keras_googlenet.architecture import MAIN_HEAD
from keras_googlenet._internal.environment import load_average
from keras_googlenet._internal.figures import new_figure, write_png
from keras_googlenet._internal.fileio import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_OUTPUT = RESULTS / "time_to_accuracy.json"

#: History columns of the main head's held-out accuracy, by evaluation name.
EVALUATIONS = {
    "plain": f"val_{MAIN_HEAD}_accuracy",
    "tta": f"val_{MAIN_HEAD}_accuracy_tta",
    "ema": f"val_{MAIN_HEAD}_accuracy_ema",
    "ema_tta": f"val_{MAIN_HEAD}_accuracy_ema_tta",
}


def parse_recipe(text):
    """`NAME=FLAGS` into `(name, [flags])`; raises ValueError naming the bad value."""
    name, sep, flags = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"--recipe must be NAME=FLAGS (e.g. cutout8='--cutout 8'); got {text!r}")
    return name.strip(), shlex.split(flags)


def build_parser():
    from training.cli import OneLineParser

    p = OneLineParser(prog="python -m benchmarks.time_to_accuracy",
                      description=__doc__.split("\n\n")[1])
    p.add_argument("--data-dir", default=None,
                   help="image folder or archive (default: --data synthetic, for smoke runs)")
    p.add_argument("--flags", default="",
                   help="training.cifar flags every recipe shares (one quoted string)")
    p.add_argument("--recipe", action="append", default=None, metavar="NAME=FLAGS",
                   help="a recipe: its name and its training.cifar flags (repeatable; "
                   "default: one recipe 'default' with no flags)")
    p.add_argument("--seeds", type=int_list, default=[0, 1, 2], help="comma list of seeds")
    p.add_argument("--tta-flip", action="store_true",
                   help="run every recipe with --tta-flip (adds the tta evaluation)")
    p.add_argument("--ema", action="store_true",
                   help="run every recipe with --ema (adds the ema evaluations)")
    p.add_argument("--levels", type=float_list,
                   default=[0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.94],
                   help="accuracy levels of the steps-to-level table (comma list)")
    p.add_argument("--target", type=float, default=0.94,
                   help="stop a run when its selection metric reaches this accuracy")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="stop a run after this many minutes of training epochs")
    p.add_argument("--runs-dir", default=None, help="where the runs go (default: a temporary folder)")
    p.add_argument("--output", default=str(DEFAULT_OUTPUT), help="JSON file to write")
    p.add_argument("--plot", default=None, help="PNG file to write (default: --output's, .png)")
    g = p.add_argument_group("merging earlier measurements (no training)")
    g.add_argument("--merge", action="append", default=None, metavar="JSON",
                   help="summarise and plot the recipes of these JSON files of this benchmark "
                   "together instead of training (repeatable)")
    g.add_argument("--drop", action="append", default=[], metavar="NAME",
                   help="with --merge: leave out the recipe NAME (repeatable)")
    return p


def _stopper(metric, target, budget_s):
    import keras

    class StopAtTarget(keras.callbacks.Callback):
        """Stops `fit` once `metric` reaches `target` or training took `budget_s`."""

        def __init__(self):
            super().__init__()
            self.trained_s, self.reason = 0.0, None

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.trained_s += float(logs.get("epoch_time_s", 0.0))
            if float(logs.get(metric, 0.0)) >= target:
                self.reason = f"{metric} >= {target:g} at epoch {epoch + 1}"
            elif budget_s is not None and self.trained_s >= budget_s:
                self.reason = f"budget of {budget_s:g} s spent at epoch {epoch + 1}"
            if self.reason:
                self.model.stop_training = True

    return StopAtTarget()


def run_one(flags, name, seed, runs_dir, target, budget_s):
    """Trains one (recipe, seed); returns its per-epoch curve and figures."""
    from training.cifar import train
    from training.evaluation import selection_metric
    from training.flags import config_from_args
    from training.run import read_history

    argv = [*flags, "--seed", str(seed), "--name", f"{name}-seed{seed}", "--runs-dir", runs_dir,
            "--no-export", "--overwrite", "--verbose", "2"]
    config = config_from_args(argv).resolve()
    stop = _stopper(selection_metric(config), target, budget_s)
    results = train(config, callbacks=[stop])
    rows = read_history(Path(runs_dir) / config.name / "history.csv")
    steps_per_epoch = results["num_train"] // config.batch_size
    curve = {"epoch": [], "steps": [], "images": [], "train_s": []}
    curve.update({e: [] for e, column in EVALUATIONS.items() if column in rows[0]})
    trained = 0.0
    for row in rows:
        epoch = int(row["epoch"]) + 1
        trained += float(row["epoch_time_s"])
        curve["epoch"].append(epoch)
        curve["steps"].append(epoch * steps_per_epoch)
        curve["images"].append(epoch * steps_per_epoch * config.batch_size)
        curve["train_s"].append(round(trained, 2))
        for evaluation, column in EVALUATIONS.items():
            if evaluation in curve:
                curve[evaluation].append(float(row[column]))
    return {
        "seed": seed,
        "command": "python -m training.cifar " + shlex.join(argv),
        "batch_size": config.batch_size,
        "peak_lr": config.peak_lr,
        "steps_per_epoch": steps_per_epoch,
        "images_per_second": results["train_images_per_second"],
        "stopped": stop.reason,
        "final_val_accuracy": results["val_accuracy"][MAIN_HEAD],
        "curve": curve,
    }


def first_reaching(curve, evaluation, level):
    """Index of the first epoch whose accuracy is >= level, or None."""
    return next((i for i, a in enumerate(curve[evaluation]) if a >= level), None)


def summarise(recipes, levels):
    """Per recipe and evaluation: final accuracy over seeds, steps/epochs/seconds to each
    level, and the images/s ratio to the first recipe (paired by seed)."""
    first = recipes[0]["runs"]
    summary = []
    for recipe in recipes:
        runs = recipe["runs"]
        ips = statistics.median(r["images_per_second"] for r in runs)
        ratios = [r["images_per_second"] / f["images_per_second"]
                  for r, f in zip(runs, first) if f["seed"] == r["seed"]]
        for evaluation in EVALUATIONS:
            if not all(evaluation in r["curve"] for r in runs):
                continue
            finals = [r["curve"][evaluation][-1] for r in runs]
            row = {
                "recipe": recipe["name"], "evaluation": evaluation,
                "final_mean": round(statistics.mean(finals), 4),
                "final_min": min(finals), "final_max": max(finals),
                "final_stdev": round(statistics.stdev(finals), 4) if len(finals) > 1 else None,
                "images_per_second": ips,
                "images_per_second_vs_first": round(statistics.median(ratios), 3) if ratios else None,
                "levels": {},
            }
            for level in levels:
                hits = [first_reaching(r["curve"], evaluation, level) for r in runs]
                reached = [(r, i) for r, i in zip(runs, hits) if i is not None]
                entry = {"reached": f"{len(reached)}/{len(runs)}"}
                if len(reached) == len(runs):  # a median over every seed
                    steps = statistics.median(r["curve"]["steps"][i] for r, i in reached)
                    entry["steps_median"] = steps
                    entry["epochs_median"] = statistics.median(r["curve"]["epoch"][i] for r, i in reached)
                    entry["seconds_est"] = round(steps * runs[0]["batch_size"] / ips, 1)
                row["levels"][f"{level:g}"] = entry
            summary.append(row)
    return summary


def markdown(summary, levels):
    """The summary as a markdown table: final accuracy and steps to each level."""
    header = ["recipe", "eval", "final acc (mean, min-max)", "images/s vs first",
              *[f"steps to {level:g}" for level in levels]]
    lines = ["| " + " | ".join(header) + " |", "|---|---" + "|---:" * (len(header) - 2) + "|"]
    for row in summary:
        cells = [row["recipe"], row["evaluation"],
                 f"{row['final_mean']:.3f} ({row['final_min']:.3f}-{row['final_max']:.3f})",
                 f"{row['images_per_second_vs_first']:.2f}x"]
        for level in levels:
            entry = row["levels"][f"{level:g}"]
            cells.append(str(entry.get("steps_median", f"({entry['reached']})")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(recipes, path):
    """Accuracy (main head, each recipe's selection evaluation and the others dashed)
    against steps and epochs, one thin line per seed and the seeds' mean bold."""
    write_png(path, lambda: _accuracy_figure(recipes))


def _accuracy_figure(recipes):
    """The figure `plot` writes (drawn under matplotlib's default style)."""
    import matplotlib

    fig = new_figure((1210, 462))
    axes = fig.subplots(1, 2, sharey=True)
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = {"plain": "-", "tta": "--", "ema": ":", "ema_tta": "-."}
    for k, recipe in enumerate(recipes):
        colour = colours[k % len(colours)]
        for evaluation in EVALUATIONS:
            runs = [r for r in recipe["runs"] if evaluation in r["curve"]]
            if not runs:
                continue
            for ax, x in zip(axes, ("steps", "epoch")):
                for r in runs:
                    ax.plot(r["curve"][x], r["curve"][evaluation], styles[evaluation],
                            color=colour, alpha=0.25, linewidth=0.8)
                n = min(len(r["curve"][x]) for r in runs)
                mean = [statistics.mean(r["curve"][evaluation][i] for r in runs) for i in range(n)]
                ax.plot(runs[0]["curve"][x][:n], mean, styles[evaluation], color=colour,
                        linewidth=2, marker="o", markersize=3,
                        label=f"{recipe['name']} ({evaluation})")
    axes[0].set_xlabel("optimizer steps")
    axes[1].set_xlabel("epochs")
    axes[0].set_ylabel("held-out accuracy (main head)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Held-out accuracy over training (thin: seeds; bold: their mean)", fontsize=10)
    return fig


def lscpu():
    """The CPU model and every CPU flag, as `lscpu` reports them (from /proc/cpuinfo)."""
    from keras_googlenet._internal.environment import cpu

    model, flags = cpu()
    return {"model": model, "flags": sorted(flags)}


def run(args):
    """Runs every (recipe, seed); returns the JSON document."""
    from benchmarks.report import report

    levels = args.levels
    if not levels or not all(0 <= v <= 1 for v in levels):
        raise ValueError(f"--levels must be accuracies in [0, 1]; got {levels}")
    if not args.seeds:
        raise ValueError("--seeds must name at least one seed; got none")
    recipes = [parse_recipe(r) for r in (args.recipe or ["default="])]
    names = [n for n, _ in recipes]
    if len(set(names)) != len(names):
        raise ValueError(f"--recipe names must differ; got {names}")
    common = shlex.split(args.flags)
    common += ["--data-dir", args.data_dir] if args.data_dir else ["--data", "synthetic"]
    common += ["--tta-flip"] * args.tta_flip + ["--ema"] * args.ema
    load_start = load_average()
    budget_s = None if args.budget_minutes is None else 60 * args.budget_minutes
    done = [{"name": n, "flags": f, "runs": []} for n, f in recipes]
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="time-to-accuracy-") as tmp:
        runs_dir = args.runs_dir or tmp
        for seed in args.seeds:  # interleaved: every recipe once per seed
            for recipe in done:
                recipe["runs"].append(run_one(common + recipe["flags"], recipe["name"], seed, runs_dir,
                                              args.target, budget_s))
    summary = summarise(done, levels)
    settings = {"flags": common, "recipes": {r["name"]: r["flags"] for r in done},
                "seeds": args.seeds, "levels": levels, "target": args.target,
                "budget_minutes": args.budget_minutes}
    return report("time_to_accuracy", settings, done, load_start=load_start, extra={
        "timing": "steps and epochs are exact; seconds_est = steps x batch / the recipe's "
                  "median training images/s in this run (recipes interleaved by seed); "
                  "images_per_second_vs_first: median over seeds of the paired ratio",
        "lscpu": lscpu(),
        "summary": summary,
        "total_minutes": round((time.time() - started) / 60, 1),
        "table": markdown(summary, levels),
    })


def merge(args):
    """The recipes of earlier JSON documents (`--merge`, less `--drop`) in one document."""
    from benchmarks.report import report

    recipes, sources = [], {}
    for path in args.merge:
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"--merge {path}: not a readable JSON file ({e})") from e
        if doc.get("benchmark") != "time_to_accuracy":
            raise ValueError(f"--merge {path}: not a time_to_accuracy document "
                             f"(benchmark={doc.get('benchmark')!r})")
        for recipe in doc["results"]:
            if recipe["name"] in args.drop:
                continue
            if recipe["name"] in sources:
                raise ValueError(f"--merge: recipe {recipe['name']!r} is in both "
                                 f"{sources[recipe['name']]} and {path} (--drop one)")
            sources[recipe["name"]] = path
            recipes.append(recipe)
    if not recipes:
        raise ValueError(f"--merge: no recipe left after --drop {args.drop}")
    summary = summarise(recipes, args.levels)
    settings = {"merged": args.merge, "dropped": args.drop, "sources": sources,
                "levels": args.levels}
    return report("time_to_accuracy", settings, recipes, extra={
        "timing": "merged from the sources' runs: steps and epochs are exact; seconds_est "
                  "uses each recipe's own median images/s; images_per_second_vs_first pairs "
                  "runs by seed across files measured at different times (load differs)",
        "lscpu": lscpu(),
        "summary": summary,
        "table": markdown(summary, args.levels),
    })


def main(argv=None):
    from keras_googlenet._internal.logs import import_backend
    from training.cli import UsageError, one_line

    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        print(f"error: {e} (see --help)", file=sys.stderr)
        return 2
    import_backend(verbose=False)
    from training.cifar import ExportFailed
    from training.config import ConfigError
    from training.data import DataError

    try:
        doc = merge(args) if args.merge else run(args)
    except (ValueError, ConfigError, DataError, ExportFailed) as e:
        print("error: " + one_line(e), file=sys.stderr)
        return 1
    atomic_write_json(args.output, doc)
    png = args.plot or str(Path(args.output).with_suffix(".png"))
    plot(doc["results"], png)
    print(doc["table"])
    print(f"wrote {args.output} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
