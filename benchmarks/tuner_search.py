"""A real `python -m tuner.search` run on CIFAR-10, against the paper's ratios at equal budget.

    python -m benchmarks.tuner_search                       # the figures of docs/tuner.md
    python -m benchmarks.tuner_search --help

1. Runs the search (`tuner.search.main`) with the arguments below, timed.
2. Retrains, from scratch and on the same data with the same recipe and epochs,
   - the search's best configuration (its `model_config.json`), and
   - the paper's Table 1 ratios (`PAPER_BLOCKS`) at the largest `width` (step
     0.001) whose deployed main-head MFLOPs fit the same budget,
   once per initialisation seed (`--seeds`), recording the best-epoch
   `val_main_accuracy` (what the search's objective scores). Retraining both
   removes the search's selection bias (its best score is the maximum over
   trials) and Hyperband's warm starts from the comparison.
3. Writes every figure, with the exact commands, to `--out` as JSON.

The held-out split is carved from the training archive (`--val-fraction`), so
its accuracy is validation accuracy, not test accuracy.
"""

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from keras_googlenet.architecture import PAPER_BLOCKS
from keras_googlenet.config import GoogLeNetConfig
from keras_googlenet._internal.fileio import atomic_write_json


def search_argv(args):
    return [
        "--data-dir", args.data_dir,
        "--limit", str(args.limit),
        "--image-size", "32",
        "--stem", "cifar",
        "--tuner", args.tuner,
        "--max-mflops", f"{args.max_mflops:g}",
        "--min-width", f"{args.min_width:g}",
        "--max-width", f"{args.max_width:g}",
        "--epochs", str(args.epochs),
        "--max-trials", str(args.max_trials),
        "--directory", args.directory,
        "--verbose", "2",
    ]


def paper_width(cost_model, budget_mflops, max_width=1.0):
    """Largest width (step 0.001) of the paper's table within the budget."""
    width = max_width
    while width > 0.001:
        if cost_model.cost(PAPER_BLOCKS, width)[0] / 1e6 <= budget_mflops:
            return round(width, 3)
        width = round(width - 0.001, 3)
    raise ValueError("no width of the paper's table fits the budget")


def retrain(model_config, config, data, seed, verbose):
    """Trains a `GoogLeNetConfig`'s network like a search trial; returns its figures."""
    import keras

    from keras_googlenet import build_model
    from training.recipe import compile_model, setup_runtime

    keras.backend.clear_session()
    setup_runtime(config)
    keras.utils.set_random_seed(seed)
    model = compile_model(build_model(model_config), config, data.steps_per_epoch)
    started = time.time()
    history = model.fit(data.train, validation_data=data.val, epochs=config.epochs,
                        verbose=verbose, shuffle=False)
    curve = [round(float(a), 4) for a in history.history["val_main_accuracy"]]
    return {
        "seed": seed,
        "best_val_main_accuracy": max(curve),
        "val_main_accuracy_per_epoch": curve,
        "wall_time_s": round(time.time() - started, 1),
    }


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.tuner_search",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data/cifar10/train.tar.xz")
    p.add_argument("--limit", type=int, default=2000)
    p.add_argument("--tuner", default="hyperband")
    p.add_argument("--max-mflops", type=float, default=25.0)
    p.add_argument("--min-width", type=float, default=0.0625)
    p.add_argument("--max-width", type=float, default=0.25)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-trials", type=int, default=6)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--directory", default="runs/tuner-cifar10")
    p.add_argument("--out", default="benchmarks/results/tuner_search.json")
    p.add_argument("--verbose", type=int, default=2)
    args = p.parse_args(argv)

    import keras

    from keras_googlenet import HEADS
    from training.data import build_datasets
    from training.recipe import fan_out_datasets
    from tuner import search as search_cli
    from tuner.cost import CostModel

    argv_search = search_argv(args)
    command = "python -m tuner.search " + " ".join(argv_search)
    print(f"$ {command}", flush=True)
    started = time.time()
    rc = search_cli.main(argv_search)
    search_wall = time.time() - started
    if rc != 0:
        return rc
    directory = Path(args.directory)
    trials = json.loads((directory / "trials.json").read_text())
    best_trial = json.loads((directory / "best_trial.json").read_text())
    best_config = GoogLeNetConfig.load(directory)

    _, raw_config = search_cli.parse_args(argv_search)
    config = dataclasses.replace(raw_config, strategy="none", verbose=args.verbose).resolve()
    data = fan_out_datasets(build_datasets(config), HEADS)
    cost_model = CostModel.of(best_config)
    width = paper_width(cost_model, args.max_mflops)
    paper_config = best_config.replace(width=width, blocks=PAPER_BLOCKS)
    candidates = {
        "search_best": best_config,
        "paper_ratios": paper_config,
    }
    comparison = {}
    for label, model_config in candidates.items():
        macs, params = cost_model.cost(model_config.blocks, model_config.width)
        runs = []
        for seed in args.seeds:
            print(f"\n== retrain {label}, seed {seed}", flush=True)
            runs.append(retrain(model_config, config, data, seed, args.verbose))
        accs = [r["best_val_main_accuracy"] for r in runs]
        comparison[label] = {
            "width": model_config.width,
            "mflops": round(macs / 1e6, 3),
            "params_deployed": params,
            "mean_best_val_main_accuracy": round(sum(accs) / len(accs), 4),
            "runs": runs,
        }
    results = {
        "what": "keras-tuner search of GoogLeNet's Inception channel ratios on CIFAR-10 "
                "(shared train.tar.xz; held-out split carved from train: validation, not test), "
                "then the best configuration and the paper's Table 1 ratios at equal MFLOPs "
                "retrained from scratch on the same data with the same recipe and epochs",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs, no GPU "
                   "(shared with other jobs: wall times are inflated and indicative only)",
        "backend": keras.backend.backend(),
        "commands": {
            "benchmark": " ".join(["python -m benchmarks.tuner_search", *(argv or sys.argv[1:])]),
            "search": command,
        },
        "data": {
            "num_train": data.num_train,
            "num_val": data.num_val,
            "val_source": data.val_source,
            "image_size": config.image_size,
        },
        "search": {
            "tuner": args.tuner,
            "budget_mflops": args.max_mflops,
            "width_range": [args.min_width, args.max_width],
            "epochs_per_trial_max": args.epochs,
            "trials": len(trials),
            "wall_time_s": round(search_wall, 1),
            "best_trial": best_trial,
            "best_config": best_config.to_dict(),
            "trials_table": trials,
        },
        "comparison_at_equal_budget": comparison,
    }
    atomic_write_json(args.out, results)
    print(f"\nwrote {args.out}")
    for label, c in comparison.items():
        print(f"{label}: width {c['width']}, {c['mflops']} MFLOPs, {c['params_deployed']:,} params, "
              f"mean best val_main_accuracy {c['mean_best_val_main_accuracy']} "
              f"({[r['best_val_main_accuracy'] for r in c['runs']]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
