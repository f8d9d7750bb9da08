"""How far the order of the floating-point sums alone moves training: the noise
floor that one- against two-process runs are compared with.

    KERAS_BACKEND=jax python -m benchmarks.reduction_order
    KERAS_BACKEND=jax python -m benchmarks.reduction_order --quick   # CI smoke run

A two-process run (`--strategy multi-worker`) computes the same training steps
as one process fed the same global batch, but sums its gradients and BatchNorm
statistics in another order (8 + 8 examples, joined by an all-reduce). This
measures, for the network with and without BatchNorm:

- `permutations`: one process trained `--steps` steps on one batch of 16
  synthetic images, the batch's examples in `--permutations` different orders
  (the same mathematical function; only the sums' order changes): the spread of
  the loss at each step and the largest weight difference to the first order;
- `processes` (not with `--quick`): the same run as `python -m training.cifar`
  with two processes on 127.0.0.1 and with one process (what
  tests/test_distributed_runs.py asserts), the same figures between the two.

Weight differences are `max |a - b| / max(max |a|, 1e-3)` per tensor, the
largest over the tensors (the tests' tolerance is in these units). Writes a
JSON document and prints a markdown table.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.workers import free_port, training_runs_command
from keras_googlenet._internal.environment import load_average
from keras_googlenet._internal.fileio import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_OUTPUT = RESULTS / "multi_worker_reduction_order.json"
_REPO_ROOT = Path(__file__).resolve().parents[1]

#: The run of tests/test_distributed_runs.py: one global batch that is the
#: whole training set, no augmentation or dropout, a small learning rate.
RUN_FLAGS = ["--data", "synthetic", "--synthetic-examples", "16", "--image-size", "32",
             "--width", "0.1", "--stem", "cifar", "--batch-size", "16", "--no-augment",
             "--dropout", "0", "--aux-dropout", "0", "--lr", "0.01", "--seed", "1",
             "--precision", "float32", "--pipeline", "numpy", "--no-export", "--verbose", "0"]

#: The two networks compared, by name: their `training.cifar` flags.
NETWORKS = {"batchnorm": RUN_FLAGS, "no_batchnorm": [*RUN_FLAGS, "--no-batch-norm"]}


def weight_difference(a, b):
    """Largest over the tensors of `max |a - b| / max(max |a|, 1e-3)`."""
    import numpy as np

    return max(float(np.abs(x - y).max()) / max(float(np.abs(x).max()), 1e-3)
               for x, y in zip(a, b))


def permutations(flags, count, steps):
    """Losses per step and final weights of one process, per order of the batch."""
    import keras
    import numpy as np

    from training.data import load_arrays
    from training.flags import config_from_args
    from training.recipe import build_model, compile_model, setup_runtime

    config = config_from_args([*flags, "--epochs", str(steps)]).resolve()
    x, y, _, _, names = load_arrays(config)
    onehot = np.eye(len(names), dtype="float32")[y]
    losses, weights = [], []
    for k in range(count):
        keras.backend.clear_session()
        setup_runtime(config)
        model = build_model(config, len(names))
        compile_model(model, config, steps_per_epoch=1)  # one step per epoch, as the CLI run
        curve = []
        for step in range(steps):
            order = np.arange(len(x)) if k == 0 else np.random.default_rng([k, step]).permutation(
                len(x))
            targets = {head: onehot[order] for head in model.output_names}
            curve.append(float(model.train_on_batch(x[order], targets, return_dict=True)["loss"]))
        losses.append(curve)
        weights.append(model.get_weights())
    return losses, weights


def train_processes(networks, steps, workdir, processes, env=None):
    """Trains every network of `networks` (name -> `training.cifar` flags) for
    `steps` steps in one run of `processes` (1 or 2) processes under
    `workdir/<processes>/`, each process training the networks one after the other
    (the processes and their start-up are shared; each run seeds itself), with the
    extra environment variables `env` (a `PYTHONPATH` in it comes after the repository).

    Returns:
        `{name: (losses, weights, digests)}`: the chief's loss per step and saved
        weights, and each process's digest of its final weights
        (`training.distributed.weights_digest`; none from one process).
    """
    import keras

    import keras_googlenet  # noqa: F401 (registers its layers for load_model)
    from training.distributed import printed_digests

    env = dict(os.environ, **(env or {}))
    env.update(KERAS_BACKEND="jax", PYTHONPATH=os.pathsep.join(
        p for p in (str(_REPO_ROOT), env.get("PYTHONPATH")) if p))
    runs_dir = f"{workdir}/{processes}"
    cluster = [] if processes == 1 else [
        "--strategy", "multi-worker", "--num-processes", str(processes),
        "--job-addresses", f"127.0.0.1:{free_port()}"]
    runs = [[*flags, "--epochs", str(steps), "--name", name, "--runs-dir", runs_dir, *cluster]
            for name, flags in networks.items()]
    procs = [subprocess.Popen(
        training_runs_command([[*run, "--process-id", str(i)] if cluster else run
                               for run in runs]),
        env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(processes)]
    outputs = [p.communicate(timeout=900) for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError("a training run failed: " + " | ".join(
            err.strip().splitlines()[-1] for _, err in outputs if err.strip()))
    out = {}
    for k, name in enumerate(networks):
        run_dir = Path(runs_dir) / name
        with open(run_dir / "history.csv", newline="") as f:
            losses = [float(row["loss"]) for row in csv.DictReader(f)]
        model = keras.saving.load_model(run_dir / "model.keras", compile=False)
        digests = [printed_digests(stdout, i, processes)[k]
                   for i, (stdout, _) in enumerate(outputs)] if cluster else []
        out[name] = (losses, model.get_weights(), digests)
    return out


def one_and_two_processes(networks, steps, workdir, env=None):
    """`train_processes` with two processes, then with one:
    `{name: {"one": (losses, weights), "two": (losses, weights)}}`."""
    two = train_processes(networks, steps, workdir, 2, env)
    one = train_processes(networks, steps, workdir, 1, env)
    return {name: {"one": one[name][:2], "two": two[name][:2]} for name in networks}


def summarize(losses, weights):
    """Spread of the loss per step and largest weight difference to the first run."""
    steps = list(zip(*losses))
    return {
        "loss_per_step": losses,
        "loss_spread_per_step": [max(s) - min(s) for s in steps],
        "loss_relative_spread_per_step": [(max(s) - min(s)) / abs(s[0]) for s in steps],
        "max_weight_difference": max(weight_difference(weights[0], w) for w in weights[1:]),
    }


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.reduction_order",
                                description=__doc__.splitlines()[0])
    p.add_argument("--permutations", type=int, default=6, help="orders of the batch (>= 2)")
    p.add_argument("--steps", type=int, default=3, help="training steps (>= 1)")
    p.add_argument("--no-processes", dest="processes", action="store_false",
                   help="skip the one- vs two-process training.cifar runs")
    p.add_argument("--output", default=str(DEFAULT_OUTPUT), help="JSON file to write")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 orders, 1 step, no training.cifar runs")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.quick:
        args.permutations, args.steps, args.processes = 2, 1, False
    if args.permutations < 2 or args.steps < 1:
        print(f"error: --permutations must be >= 2 and --steps >= 1; got {args.permutations} "
              f"and {args.steps}", file=sys.stderr)
        return 2
    import keras

    if keras.backend.backend() != "jax":
        print(f"error: run with KERAS_BACKEND=jax (the multi-process backend); current: "
              f"{keras.backend.backend()}", file=sys.stderr)
        return 2
    from benchmarks.report import report

    load_start = load_average()
    results = {}
    runs = {}
    if args.processes:
        with tempfile.TemporaryDirectory(prefix="reduction-order-") as workdir:
            runs = one_and_two_processes(NETWORKS, args.steps, workdir)
    for network, flags in NETWORKS.items():
        row = {"permutations": summarize(*permutations(flags, args.permutations, args.steps))}
        if args.processes:
            (l1, w1), (l2, w2) = runs[network]["one"], runs[network]["two"]
            row["processes"] = {
                "loss_one": l1, "loss_two": l2,
                "loss_relative_difference_per_step": [abs(b - a) / abs(a) for a, b in zip(l1, l2)],
                "max_weight_difference": weight_difference(w1, w2),
            }
        results[network] = row
    settings = {**vars(args), "run_flags": RUN_FLAGS}
    doc = report("reduction_order", settings, results, load_start=load_start, extra={
        "timing": "none: losses and weights, not speed",
        "weight_difference": "max over tensors of max|a - b| / max(max|a|, 1e-3)"})
    atomic_write_json(args.output, doc)
    print("| network | compared | loss rel. difference per step | max weight difference |")
    print("|---|---|---|---:|")
    for network, row in results.items():
        p = row["permutations"]
        print(f"| {network} | {args.permutations} orders, 1 process | "
              + ", ".join(f"{v:.1e}" for v in p["loss_relative_spread_per_step"])
              + f" | {p['max_weight_difference']:.1e} |")
        if "processes" in row:
            q = row["processes"]
            print(f"| {network} | 1 vs 2 processes | "
                  + ", ".join(f"{v:.1e}" for v in q["loss_relative_difference_per_step"])
                  + f" | {q['max_weight_difference']:.1e} |")
    print(f"\nLoad average {load_start} -> {doc['load_average']['end']}; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
