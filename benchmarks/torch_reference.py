"""Side-by-side training benchmark: the Keras GoogLeNet against the same network in PyTorch.

    python -m benchmarks.torch_reference            # Keras vs PyTorch, 96x96 paper stem, batch 32
    python -m benchmarks.torch_reference --quick    # tiny smoke run
    # bf16 side by side (docs/training.md, "bf16 on CPU"):
    python -m benchmarks.torch_reference --keras-backends tensorflow --keras-jit off \
        --keras-precisions float32,mixed_bfloat16 --torch-layouts channels_last \
        --torch-threads 0 --torch-precisions float32,mixed_bfloat16

The PyTorch network is `benchmarks.torch_googlenet` (built from the same
`GoogLeNetConfig` as the Keras model, layer for layer: same parameters, same
multiply-adds), trained by `benchmarks.torch_trainer` the way `training.recipe`
trains the Keras model.

The comparison runs every contestant in its own worker process (see
`benchmarks.workers`) and times them interleaved (A, B, A, B, ...), so that a
machine whose load changes during the run treats them alike.
"""

import argparse
import sys

from benchmarks.cases import current_backend, default_classes
from benchmarks.cli_lists import bool_list, choice_list, csv_list, int_list
from benchmarks.report import markdown_table, report
from benchmarks.workers import paired_ratio, run_interleaved
from keras_googlenet.architecture import STEMS
from keras_googlenet._internal.environment import load_average
from keras_googlenet._internal.fileio import atomic_write_json
from training.config import PRECISIONS


def reference_cases(args):
    """The contestants: Keras on each requested backend, PyTorch in each layout."""
    common = dict(stem=args.stem, image_size=args.image_size, width=args.width,
                  batch_size=args.batch_size, classes=default_classes(args.stem),
                  steps=args.steps, warmup_steps=args.warmup_steps)
    cases = []
    for backend in args.keras_backends:
        for jit, precision in [(j, p) for j in args.keras_jit for p in args.keras_precisions]:
            if backend == "jax" and not jit:
                continue  # op-by-op JAX: not a way anyone trains
            if backend == "torch" and jit:
                continue  # torch.compile: minutes of compilation, not measured here
            cases.append(dict(common, framework="keras", backend=backend, jit=jit,
                              precision=precision,
                              label=f"Keras 3 / {backend}, jit={'on' if jit else 'off'}"
                              + ("" if precision == "float32" else f", {precision}")))
    if args.keras_unfused_batchnorm:
        cases.append(dict(common, framework="keras", backend="tensorflow", jit=False,
                          precision="float32", fused_batchnorm=False,
                          label="Keras 3 / tensorflow, jit=off, Keras's unfused BatchNorm "
                          "(before)"))
    for layout in args.torch_layouts:
        for threads, precision in [(t, p) for t in args.torch_threads
                                   for p in args.torch_precisions]:
            label = (f"PyTorch {layout}" + (f", {threads} threads" if threads else "")
                     + ("" if precision == "float32" else ", bf16 autocast"))
            cases.append(dict(common, framework="torch", channels_last=layout == "channels_last",
                              torch_threads=threads or None, precision=precision,
                              label=label))
    return cases


def summarize(results):
    """Keras against PyTorch: the fastest of each (by median images/s), their ratio,
    and the paired ratio of the fastest Keras to every PyTorch contestant. The
    unfused-BatchNorm "before" row is reported apart: it is no longer the project's
    code."""
    ok = [r for r in results if r["status"] == "ok"]
    keras_rows = [r for r in ok if r["framework"] == "keras" and r["fused_batchnorm"]]
    torch_rows = [r for r in ok if r["framework"] == "torch"]
    if not keras_rows or not torch_rows:
        return {}
    keras_best = max(keras_rows, key=lambda r: r["images_per_second"])
    torch_best = max(torch_rows, key=lambda r: r["images_per_second"])
    summary = {
        "fastest_keras": keras_best["label"],
        "fastest_torch": torch_best["label"],
        "keras_over_torch": keras_best["images_per_second"] / torch_best["images_per_second"],
        # Per-repeat ratio (same pass over the contestants), median: steadier on a busy machine.
        "keras_over_torch_paired": paired_ratio(keras_best, torch_best),
        "fastest_keras_over_each_torch_paired": {
            r["label"]: paired_ratio(keras_best, r) for r in torch_rows},
    }
    bf16 = bf16_ratios(keras_rows + torch_rows)
    if bf16:
        summary["bf16_over_float32_paired"] = bf16
    before = next((r for r in ok if r["framework"] == "keras" and not r["fused_batchnorm"]),
                  None)
    if before is not None:
        summary["unfused_batchnorm_over_fastest_torch_paired"] = paired_ratio(
            before, torch_best)
        # The "after" of the pair: the same setting (TensorFlow, jit off), if it ran
        # (it does not with --keras-jit on).
        fused_tf = next((r for r in keras_rows if r["backend"] == "tensorflow" and not r["jit"]),
                        None)
        if fused_tf is not None:
            summary["fused_over_unfused_batchnorm_paired"] = paired_ratio(fused_tf,
                                                                                  before)
    return summary


def bf16_ratios(rows):
    """`{label of a mixed_bfloat16 row: its paired ratio to the float32 row of the same
    framework, backend, jit and layout}` (the figure that decides `--precision auto`)."""
    def key(r):
        return tuple(r.get(k) for k in ("framework", "backend", "jit", "channels_last", "torch_threads"))

    float32 = {key(r): r for r in rows if r.get("precision", "float32") == "float32"}
    return {r["label"]: paired_ratio(r, float32[key(r)]) for r in rows
            if r.get("precision") == "mixed_bfloat16" and key(r) in float32}


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.torch_reference",
        description="Training images/s of the Keras GoogLeNet against the same network in "
        "PyTorch, trained the same way, measured side by side (interleaved) in one run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--stem", choices=STEMS, default="imagenet")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--keras-backends", type=csv_list, default=None,
                   help="Keras backends to run, each in its own process (default: tensorflow,jax; "
                   "with --quick: $KERAS_BACKEND, else tensorflow)")
    p.add_argument("--keras-jit", type=bool_list, default=[False, True],
                   help="jit settings for Keras (jax always jits; torch never)")
    p.add_argument("--keras-precisions", type=choice_list(PRECISIONS), default=["float32"],
                   help="Keras dtype policies")
    p.add_argument("--torch-precisions", type=choice_list(("float32", "mixed_bfloat16")),
                   default=["float32"],
                   help="PyTorch: float32, or mixed_bfloat16 (torch.autocast bfloat16)")
    p.add_argument("--keras-unfused-batchnorm", action="store_true",
                   help="also run Keras/TensorFlow (jit off) with Keras 3's own unfused "
                   "BatchNormalization (keras_googlenet.BatchNormalization(fused=False)): the "
                   "project before its fused layer, for a before/after figure")
    p.add_argument("--torch-layouts", type=csv_list, default=["nchw", "channels_last"],
                   help="PyTorch memory formats: nchw, channels_last")
    p.add_argument("--torch-threads", type=int_list, default=[0, 1],
                   help="torch.set_num_threads values (0: PyTorch's default, one thread per "
                   "core); one thread is also measured because PyTorch's OpenMP threads lose "
                   "badly on a machine that is busy with other work")
    p.add_argument("--steps", type=int, default=6, help="steps per timed repeat (the first "
                   "step of each repeat is not timed)")
    p.add_argument("--warmup-steps", type=int, default=3, help="untimed steps before the repeats")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per contestant (median)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="device peak (TFLOP/s) for the utilisation column")
    p.add_argument("--output", default="benchmarks/results/torch_reference.json")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: CIFAR stem 32x32, width 0.125, batch 8, 2 steps, 1 repeat; "
                   "Keras on one backend against PyTorch NCHW with 1 thread")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.quick:
        args.stem, args.image_size, args.width, args.batch_size = "cifar", 32, 0.125, 8
        args.keras_backends = args.keras_backends or [current_backend()]
        args.keras_jit = [args.keras_backends[0] == "jax"]
        args.torch_layouts, args.torch_threads = ["nchw"], [1]
        args.keras_unfused_batchnorm = False
        args.steps, args.warmup_steps, args.repeats = 2, 1, 1
    args.keras_backends = args.keras_backends or ["tensorflow", "jax"]
    cases = reference_cases(args)
    load_start = load_average()
    print(f"Measuring {len(cases)} contestant(s), {args.repeats} repeat(s) each, load average "
          f"{load_start} ...", file=sys.stderr)
    results = run_interleaved(cases, repeats=args.repeats, peak_tflops=args.peak_tflops)
    summary = summarize(results)
    doc = report("torch_reference", vars(args), results, load_start=load_start,
                 extra={"summary": summary})
    atomic_write_json(args.output, doc)
    print(markdown_table(results, peak=args.peak_tflops is not None))
    if summary:
        print(f"\nFastest Keras ({summary['fastest_keras']}) / fastest PyTorch "
              f"({summary['fastest_torch']}): {summary['keras_over_torch']:.2f}x (ratio of "
              f"medians), {summary['keras_over_torch_paired']:.2f}x (median of paired repeats)")
    print(f"\nLoad average {load_start} -> {doc['load_average']['end']}; wrote {args.output}")
    return 1 if any(r["status"] != "ok" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
