"""Search the Inception channel ratios of GoogLeNet with keras-tuner.

    python -m tuner.search --data-dir ../shared/data/cifar10/train.tar.xz \\
        --max-mflops 60 --max-trials 20 --epochs 9 --directory runs/search
    python -m tuner.search --help

Every data, model and recipe flag of `python -m training.cifar` applies to the
trials (same meaning, same code: `training.data.build_datasets` and
`training.recipe.compile_model`), except `--width`, which is searched
(`--min-width`, `--max-width`). `--epochs` is the epochs of one trial
(Hyperband: the most a trial trains). What is searched is described in
`tuner.space`.

The search folder (`--directory`) holds:

- `search.json`: the settings that define the search (space, budget, tuner,
  data and recipe); running the same command again resumes the search, and a
  different one is refused;
- `tuner/`: keras-tuner's oracle and trials (`trial_*/trial.json`, checkpoints);
- `logs/<trial>/execution0/`: TensorBoard logs of every trial (with HParams);
- `summary.md` and `trials.json`: every trial's score, MFLOPs, parameters, ratios;
- `trials.png`: every trial's score against its MFLOPs, the paper's ratios marked;
- `model_config.json` and `model.weights.h5`: the best configuration (a
  `keras_googlenet.GoogLeNetConfig`) and its trial's weights, so that
  `keras_googlenet.load_model_folder(directory)` rebuilds the trained model;
- `best_config.json`: the best configuration as `GoogLeNet` keyword arguments
  (`GoogLeNet(**json.load(f))` rebuilds it); `best_trial.json`: its score and values.

`--train-best` then retrains the best configuration with the full
`training.cifar` recipe (`runs/<name>/`, SavedModel export) for `--train-epochs`.

Distributed search uses keras-tuner's chief/worker mode: run the same command
in several processes (or machines sharing `--directory`) with
`KERASTUNER_ORACLE_IP`, `KERASTUNER_ORACLE_PORT` and `KERASTUNER_TUNER_ID`
(`chief` for the one that runs the oracle, a unique `tuner0`, `tuner1`... for
each worker). The chief writes the results when all trials are done.
"""

import argparse
import dataclasses
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

# training.cifar's one-line-error parser, so both commands fail the same way.
from training.cli import OneLineParser, UsageError, import_backend_quietly
from training.flags import build_parser as training_parser
from keras_googlenet.config import MODEL_CONFIG_FILE
from keras_googlenet._internal.fileio import atomic_write_json
from training.checks import MAX_NAME_LENGTH
from training.config import ConfigError, TrainConfig
from training.fields import from_flags, settings
from tuner.folder import (
    PROJECT,
    TUNER_ID_KEY,
    SearchError,
    check_directory,
    check_tuner_state,
    recorded_tuner_id,
    clear_directory,
    fingerprint,
    summary_table,
    write_results,
)
from tuner.cost import Budget, BudgetError, CostModel
from tuner.space import SearchSpace, SpaceError

# ---- command line -------------------------------------------------------------


def build_parser():
    """The `python -m tuner.search` parser: training.cifar's flags plus the search's."""
    from tuner.hypermodel import TUNERS

    space = SearchSpace()
    p = OneLineParser(
        prog="python -m tuner.search",
        description="Search GoogLeNet's Inception channel ratios (per stage: branch shares and "
        "reductions; global width) with keras-tuner, within an optional compute budget. "
        "The data, model and recipe flags are those of python -m training.cifar.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        parents=[training_parser()],
        conflict_handler="resolve",  # the flags redefined below replace training.cifar's
    )
    g = p.add_argument_group("search")
    g.add_argument("--tuner", choices=TUNERS, default="hyperband", help="search algorithm")
    g.add_argument("--max-trials", type=int, default=10,
                   help="most trials (Hyperband: each round of a configuration is a trial); "
                   "raise it and re-run to extend a search")
    g.add_argument("--epochs", type=int, default=10,
                   help="training epochs of a trial (Hyperband: the most a trial trains)")
    g.add_argument("--directory", default=os.path.join("runs", "search"),
                   help="the search folder (resumed if it exists)")
    g.add_argument("--overwrite", action="store_true",
                   help="start the search in --directory over (and, with --train-best, "
                   "retrain over a finished run)")
    g.add_argument("--max-mflops", type=float, default=None,
                   help="budget: millions of multiply-adds of the deployed main-head network "
                   "at --image-size (keras_googlenet.count_flops)")
    g.add_argument("--max-params", type=int, default=None,
                   help="budget: parameters of the deployed main-head network")
    g.add_argument("--fill-budget", action=argparse.BooleanOptionalAction, default=True,
                   help="with a budget, give every configuration the largest width (on the "
                   "--width-step grid) that fits it, so configurations are compared at about "
                   "equal cost; --no-fill-budget samples width freely within the budget")
    g.add_argument("--min-width", type=float, default=space.min_width, help="smallest width searched")
    g.add_argument("--max-width", type=float, default=space.max_width, help="largest width searched")
    g.add_argument("--width-step", type=float, default=space.width_step, help="grid step of width")
    g.add_argument("--width", type=float, default=None, help=argparse.SUPPRESS)

    g = p.add_argument_group("best configuration")
    g.add_argument("--train-best", action="store_true",
                   help="after the search, retrain the best configuration with the full "
                   "training.cifar recipe (runs/NAME, SavedModel export)")
    g.add_argument("--train-epochs", type=int, default=TrainConfig().epochs,
                   help="epochs of the --train-best run")
    g.add_argument("--name", default=None,
                   help="run name of --train-best (default: <directory name>-best-<hash>)")
    return p


def parse_args(argv=None):
    """Parses arguments into `(search options dict, unresolved TrainConfig)`."""
    args = vars(build_parser().parse_args(argv))
    if args.pop("width") is not None:
        raise UsageError("--width is searched: use --min-width / --max-width")
    # The search's own flags: those that are no TrainConfig setting.
    training = {s.name for s in settings(TrainConfig)}
    options = {key: args.pop(key) for key in list(args) if key not in training}
    if args["name"] is None:
        args["name"] = TrainConfig().name  # replaced by --train-best's own default
        options["name"] = None
    else:
        options["name"] = args["name"]
    return options, from_flags(TrainConfig, args)


# ---- --train-best -------------------------------------------------------------


def train_best_name(options, digest):
    """The run name of `--train-best`: `--name`, else `<directory name>-best-<digest>`.

    The directory name is reduced to the characters a run name allows (a
    `--directory` such as `my search` gives `my-search-best-...`).
    """
    if options["name"]:
        return options["name"]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(options["directory"]).resolve().name)
    suffix = f"-best-{digest}"
    keep = MAX_NAME_LENGTH - len(suffix)  # the whole name must pass TrainConfig's limit
    return f"{stem.strip('._-')[:keep].strip('._-') or 'search'}{suffix}"


def check_train_best(raw_config, options):
    """Validates the `--train-best` run's settings before the search (raises ConfigError)."""
    name = train_best_name(options, "0" * 8)
    config = dataclasses.replace(raw_config, name=name, epochs=options["train_epochs"])
    try:
        config.validate()
    except ConfigError as e:
        how = "" if options["name"] else f" (derived from --directory {options['directory']!r})"
        raise ConfigError(f"--train-best: {e}{how}") from e


def train_best(raw_config, model_config, options):
    """Retrains `model_config` (a `GoogLeNetConfig`) with `training.cifar.train`."""
    from training.cifar import train

    best = model_config.to_dict()
    digest = hashlib.sha256(json.dumps(best, sort_keys=True).encode()).hexdigest()[:8]
    name = train_best_name(options, digest)
    config = dataclasses.replace(
        raw_config, name=name, epochs=options["train_epochs"],
        warmup_epochs=raw_config.warmup_epochs,
        model=dataclasses.replace(raw_config.model, width=best["width"], blocks=best["blocks"]),
    )
    print(f"\nRetraining the best configuration as run {name!r} "
          f"({config.epochs} epochs, training.cifar recipe)")
    results = train(config)
    atomic_write_json(Path(config.run_dir) / "googlenet_config.json", best)
    return results


# ---- main ---------------------------------------------------------------------


def _role():
    """`"chief"`, `"worker"` or `"local"` from keras-tuner's environment variables."""
    from keras_tuner.src.distribute import utils as dist_utils

    if not dist_utils.has_chief_oracle():  # raises RuntimeError if half-configured
        return "local"
    return "chief" if dist_utils.is_chief_oracle() else "worker"


def search(options, raw_config):
    """Runs (or resumes) a search; returns the results dict (workers: None)."""
    import keras

    from keras_googlenet import HEADS
    from keras_googlenet._internal.environment import tensorflow_available
    from training.callbacks import StopOnNaN
    from training.data import build_datasets
    from training.recipe import fan_out_datasets
    from tuner.hypermodel import HyperGoogLeNet, make_tuner

    started = time.time()
    if options["max_trials"] is not None and options["max_trials"] < 1:
        raise ConfigError(f"--max-trials must be >= 1; got {options['max_trials']}")
    if options["train_epochs"] < 1:
        raise ConfigError(f"--train-epochs must be >= 1; got {options['train_epochs']}")
    if options["max_mflops"] is not None and not options["max_mflops"] > 0:
        raise BudgetError(f"--max-mflops must be > 0; got {options['max_mflops']:g}")
    if options["max_params"] is not None and options["max_params"] < 1:
        raise BudgetError(f"--max-params must be >= 1; got {options['max_params']}")
    role = _role()
    config = dataclasses.replace(raw_config, strategy="none").resolve()
    space = SearchSpace(options["min_width"], options["max_width"], options["width_step"])
    directory = Path(options["directory"])
    fp = fingerprint(config, space, options["tuner"], options["max_mflops"], options["max_params"],
                     options["fill_budget"])
    overwrite = raw_config.overwrite and role != "worker"
    state = check_directory(directory, fp, overwrite)
    # The process that owns the oracle's state: "chief" (distributed) or this tuner.
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "tuner0")
    if state == "resume" and role != "worker":
        check_tuner_state(directory, tuner_id)
    if options["train_best"]:
        check_train_best(raw_config, options)

    def budget_for(classes):
        return Budget(CostModel.of(config.model_config(classes)),
                      options["max_mflops"], options["max_params"])

    # Fail fast on an impossible budget: one class is a lower bound on the cost.
    budget_for(1).check_feasible(space, lower_bound=True)
    data = fan_out_datasets(build_datasets(config), HEADS)  # every trial has the three heads
    budget = budget_for(len(data.class_names))
    budget.check_feasible(space)

    if raw_config.overwrite and role != "worker":
        clear_directory(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if role != "worker":  # the chief (or the local tuner) owns search.json
        creator = recorded_tuner_id(directory) if state == "resume" else None
        atomic_write_json(directory / "search.json", {**fp, TUNER_ID_KEY: creator or tuner_id})

    hypermodel = HyperGoogLeNet(config, len(data.class_names), data.steps_per_epoch,
                                space=space, budget=budget)
    keras.backend.clear_session()
    try:
        tuner = make_tuner(options["tuner"], hypermodel, directory=str(directory),
                           project_name=PROJECT, max_trials=options["max_trials"],
                           max_epochs=config.epochs, seed=config.seed,
                           fill_budget=options["fill_budget"])
    except ImportError as e:  # BayesianOptimization needs scikit-learn and scipy
        raise SearchError(f"--tuner {options['tuner']}: {e}") from e
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        if state != "resume":
            raise
        raise SearchError(
            f"{directory / PROJECT} holds damaged keras-tuner state ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:200]}); pass --overwrite to start the search over"
        ) from e
    callbacks = [StopOnNaN()]
    if tensorflow_available():  # keras-tuner makes logs/<trial>/execution0 per trial
        callbacks.append(keras.callbacks.TensorBoard(
            str(directory / "logs"), write_graph=False, profile_batch=0))
    # A worker joins the chief's search; whether it saw the chief's files yet is a race.
    label = "joined" if role == "worker" else ("resumed" if state == "resume" else "new")
    print(f"Search {directory} ({label}, {role}): "
          f"{options['tuner']}, up to {options['max_trials']} trials of {config.epochs} epoch(s); "
          f"{data.num_train} training / {data.num_val} held-out images ({data.val_source}); "
          f"budget {budget.describe()}"
          f"{' (filled: width set to fit)' if budget.limited and options['fill_budget'] else ''}; "
          f"width {space.min_width:g}..{space.max_width:g} step {space.width_step:g}")
    tuner.search(
        data.train,
        validation_data=data.val,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=config.verbose,
        shuffle=False,  # the datasets shuffle themselves
    )
    if role == "worker":
        print(f"Worker {os.environ.get('KERASTUNER_TUNER_ID')}: no trials left; "
              "the chief writes the results")
        return None

    rows, model_config = write_results(directory, tuner.oracle, hypermodel)
    print("\n" + summary_table(rows))
    if model_config is None:
        failed = [t for t in tuner.oracle.trials.values() if t.message]
        why = (failed[-1].message.strip().splitlines() or ["?"])[-1] if failed else "none ran"
        raise SearchError(f"no trial completed in {directory} (last failure: {why})")
    best = next(r for r in rows if r["status"] == "COMPLETED")
    print(f"\nBest: trial {best['trial_id']}, val_main_accuracy {best['score']:.4f}, "
          f"{best['mflops']:.2f} MFLOPs, {best['params']:,} parameters, width {best['width']:g}; "
          f"written to {directory / MODEL_CONFIG_FILE} and {directory / 'best_config.json'} "
          f"(rebuild: keras_googlenet.load_model_folder({str(directory)!r}), with the trial's "
          f"weights; or GoogLeNet(**json.load(open(...)))). Search wall time "
          f"{time.time() - started:.1f} s this run.")
    results = {"rows": rows, "best": best, "model_config": model_config.to_dict(),
               "num_train": data.num_train, "num_val": data.num_val,
               "wall_time_s": round(time.time() - started, 2)}
    if options["train_best"]:
        results["train_best"] = train_best(raw_config, model_config, options)
    return results


def main(argv=None):
    """Command-line entry point; returns the process exit status."""
    import_backend_quietly(sys.argv[1:] if argv is None else argv)
    try:
        options, raw_config = parse_args(argv)
    except UsageError as e:
        print(f"error: {e} (see --help)", file=sys.stderr)
        return 2
    from training.callbacks import TrainingDiverged
    from training.cifar import RunError
    from training.data import DataError

    try:
        search(options, raw_config)
    except (ConfigError, DataError, SpaceError, BudgetError, SearchError, RunError,
            TrainingDiverged) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:  # keras-tuner: half-set KERASTUNER_* variables, failed trials
        print(f"error: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume the search", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
