"""A scaling model of `--strategy multi-worker`: what the gradient all-reduce costs
on 8 GPUs of one machine and on 2 and 4 machines, and from which batch size on
the network stops being the limit.

    python -m benchmarks.scaling_model                 # after the measurement below
    python -m benchmarks.train_throughput --backends jax --processes 1,2 ... \\
        --output benchmarks/results/multi_worker_throughput.json

Synchronous data parallelism sums every step's gradients over all devices: one
all-reduce of the trainable parameters in float32 (Keras keeps float32
variables, and so float32 gradients, under mixed precision too). A ring
all-reduce over N participants sends and receives 2 (N - 1) / N times the
buffer per participant, so over a link of B bytes/s it takes

    t = 2 (N - 1) / N x gradient_bytes / B + 2 (N - 1) x latency.

On 8 GPUs of one machine the ring runs over NVLink. Across M machines the
all-reduce is hierarchical (NCCL's default): inside each machine over NVLink,
then between machines, where all 8 GPUs of a machine share its network link
(the conservative case of one link per machine): t = t_NVLink(8) + 2 (M - 1)
/ M x gradient_bytes / B_network + 2 (M - 1) x latency. A step of per-GPU
batch b at R images/s per GPU computes for b / R seconds; without overlap the
step is compute + all-reduce, so the network stops being the limit (takes less
time than the compute) above b* = R x t per GPU.

The link rates are nominal, not measured (no GPU or network here): NVLink 4
(H100 SXM) 450 GB/s each way, 100 and 400 Gb/s networks; achieved rates are
lower. The GPU's images/s R is likewise an assumption, given as a range. What
is measured, on this machine, is the loopback all-reduce and the images/s of
one against two processes (`--throughput`), which check the model's form: the
all-reduce time grows with the bytes, and its share of a step.
"""

import argparse
import json
import sys
from pathlib import Path

from keras_googlenet._internal.fileio import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_THROUGHPUT = RESULTS / "multi_worker_throughput.json"
DEFAULT_OUTPUT = RESULTS / "multi_worker_scaling_model.json"

#: Nominal one-way link rates, bytes/s, and per-hop latencies, seconds.
LINKS = {
    "NVLink 4 (H100 SXM, 450 GB/s)": (450e9, 3e-6),
    "100 Gb/s network": (100e9 / 8, 10e-6),
    "400 Gb/s network": (400e9 / 8, 10e-6),
}
NVLINK = "NVLink 4 (H100 SXM, 450 GB/s)"
GPUS_PER_MACHINE = 8

#: Assumed training images/s of one GPU (the range to read the thresholds for).
GPU_IMAGES_PER_SECOND = (2_500, 10_000, 30_000)


def ring_seconds(participants, nbytes, bandwidth, latency):
    """Ring all-reduce time of `nbytes` over `participants` (0 for one)."""
    if participants < 2:
        return 0.0
    steps = 2 * (participants - 1)
    return steps / participants * nbytes / bandwidth + steps * latency


def allreduce_seconds(machines, nbytes, network):
    """All-reduce time over `machines` x 8 GPUs (`network`: a `LINKS` key between machines;
    one machine: NVLink only)."""
    intra = ring_seconds(GPUS_PER_MACHINE, nbytes, *LINKS[NVLINK])
    return intra + ring_seconds(machines, nbytes, *LINKS[network])


def default_model_parameters():
    """Trainable parameters of `keras_googlenet.GoogLeNet()` (the paper's network)."""
    import keras_googlenet
    from training.recipe import count_trainable

    return count_trainable(keras_googlenet.GoogLeNet())


def scaling_table(parameters):
    """Rows of the scaling model for the default network."""
    nbytes = 4 * parameters
    layouts = [("8 GPUs, 1 machine", 1, NVLINK)] + [
        (f"{m} machines x 8 GPUs, {net}", m, net)
        for m in (2, 4) for net in ("100 Gb/s network", "400 Gb/s network")]
    rows = []
    for label, machines, network in layouts:
        t = allreduce_seconds(machines, nbytes, network)
        rows.append({
            "layout": label, "gpus": machines * GPUS_PER_MACHINE,
            "gradient_bytes": nbytes, "allreduce_ms": 1000 * t,
            "per_gpu_batch_above_which_network_is_not_the_limit": {
                str(r): r * t for r in GPU_IMAGES_PER_SECOND},
            "efficiency_at_per_gpu_batch_128": {
                str(r): (128 / r) / (128 / r + t) for r in GPU_IMAGES_PER_SECOND},
        })
    return rows


def measured(throughput):
    """The loopback figures of `benchmarks.train_throughput --processes 1,2`: each
    two-process setting with the one-process setting of the same network and batch."""
    rows = [r for r in throughput["results"] if r.get("status") == "ok"]
    one = [r for r in rows if r.get("processes", 1) == 1]
    two = [r for r in rows if r.get("processes", 1) == 2]
    out = []
    for r in two:
        peer = next((o for o in one if all(o[k] == r[k] for k in
                                           ("width", "batch_size", "stem", "image_size"))), None)
        if peer is None:
            continue
        [own] = [a for a in r["allreduce"] if a["values"] == r["gradient_values"]]
        step = r["step_time_s"]
        out.append({
            "setting": r["label"],
            "images_per_second_one_process": peer["images_per_second"],
            "images_per_second_two_processes": r["images_per_second"],
            "two_vs_one": r["images_per_second"] / peer["images_per_second"],
            "step_ms_two_processes": 1000 * step,
            "allreduce": r["allreduce"],
            "gradient_allreduce_ms": 1000 * own["seconds"],
            "gradient_allreduce_share_of_step": own["seconds"] / step,
            "loopback_bytes_per_second": {str(a["bytes"]): a["bytes"] / a["seconds"]
                                          for a in r["allreduce"]},
        })
    return out


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling_model",
                                description=__doc__.splitlines()[0])
    p.add_argument("--throughput", default=str(DEFAULT_THROUGHPUT),
                   help="JSON of benchmarks.train_throughput --processes 1,2 (the measurements)")
    p.add_argument("--output", default=str(DEFAULT_OUTPUT), help="JSON file to write")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        throughput = json.loads(Path(args.throughput).read_text())
    except (OSError, ValueError) as e:
        print(f"error: cannot read --throughput {args.throughput} ({e}); run "
              "benchmarks.train_throughput --processes 1,2 first", file=sys.stderr)
        return 2
    parameters = default_model_parameters()
    doc = {
        "benchmark": "scaling_model",
        "model": __doc__.split("\n\n", 2)[1].strip(),
        "default_model_trainable_parameters": parameters,
        "links": {k: {"bytes_per_second": b, "latency_s": lat} for k, (b, lat) in LINKS.items()},
        "gpu_images_per_second_assumed": GPU_IMAGES_PER_SECOND,
        "rows": scaling_table(parameters),
        "measured_on_this_machine": measured(throughput),
        "measurements_from": args.throughput,
        "environment": throughput.get("environment"),
    }
    atomic_write_json(args.output, doc)
    print(f"Default GoogLeNet: {parameters:,} trainable parameters = "
          f"{4 * parameters / 1e6:.1f} MB of float32 gradients per step\n")
    header = " | ".join(f"b* at {r:,}/s" for r in GPU_IMAGES_PER_SECOND)
    print(f"| layout | all-reduce (ms) | {header} | efficiency at b=128, {GPU_IMAGES_PER_SECOND[1]:,}/s |")
    print("|---|---:|" + "---:|" * (len(GPU_IMAGES_PER_SECOND) + 1))
    for row in doc["rows"]:
        b = row["per_gpu_batch_above_which_network_is_not_the_limit"]
        eff = row["efficiency_at_per_gpu_batch_128"][str(GPU_IMAGES_PER_SECOND[1])]
        print(f"| {row['layout']} | {row['allreduce_ms']:.2f} | "
              + " | ".join(f"{b[str(r)]:.0f}" for r in GPU_IMAGES_PER_SECOND)
              + f" | {100 * eff:.0f}% |")
    for m in doc["measured_on_this_machine"]:
        print(f"\nMeasured here ({m['setting']}): one process "
              f"{m['images_per_second_one_process']:.1f} images/s, two processes "
              f"{m['images_per_second_two_processes']:.1f} ({m['two_vs_one']:.2f}x); gradient "
              f"all-reduce {m['gradient_allreduce_ms']:.1f} ms = "
              f"{100 * m['gradient_allreduce_share_of_step']:.1f}% of the two-process step")
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
