"""Size and LiteRT latency of our TFLite files beside the models an Android developer
compares them with: keras.applications MobileNetV3Small and MobileNetV2.

    python -m benchmarks.android_peers                       # 32x32, 10 classes
    python -m benchmarks.android_peers --quick               # CI smoke run

Every model is exported the same way, by `keras_googlenet.export.convert_model`
(uint8 raw-pixel input, softmax probabilities out, builtin ops only): GoogLeNet
(CIFAR stem) at each `--widths`, and the two MobileNets (random weights,
`classifier_activation=None`, wrapped so that their logits are the `main` head;
their [-1, 1] input scaling is the serving graph's `x / 127.5 - 1`, as
keras.applications' `preprocess_input` does). For each `--formats` file:
its size, TensorFlow's GPU-delegate verdict, whether it is full-integer, and the
median `invoke()` time in the LiteRT interpreter (XNNPACK) at each `--threads`,
interleaved across files. Latency does not depend on the weights; int8 is
calibrated on random images. Accuracy is not compared here: it needs each model
trained with the same recipe and budget.
"""

import argparse
import os
import statistics
import sys
import tempfile

import numpy as np

from benchmarks.cli_lists import csv_list, float_list, int_list
from benchmarks.report import report
from keras_googlenet._internal.environment import load_average
from keras_googlenet._internal.fileio import atomic_write_json

DEFAULT_OUTPUT = "benchmarks/results/android_peers.json"
PEERS = ("MobileNetV3Small", "MobileNetV2")


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.android_peers", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--widths", type=float_list,
                   default=[0.25, 0.5, 1.0], help="GoogLeNet widths")
    p.add_argument("--peers", type=csv_list, default=list(PEERS),
                   help="keras.applications models")
    p.add_argument("--formats", type=csv_list, default=["int8", "float16"])
    p.add_argument("--threads", type=int_list, default=[1, 2])
    p.add_argument("--repeats", type=int, default=5, help="rounds over every file (median)")
    p.add_argument("--calls", type=int, default=20, help="timed invoke() calls per round")
    p.add_argument("--output", default=DEFAULT_OUTPUT)
    p.add_argument("--quick", action="store_true",
                   help="CI smoke run: width 0.125, MobileNetV3Small, int8, 1 thread, 1 round")
    return p


def _models(args):
    """`{name: keras model with a "main" logits head}` at the benchmark's input size."""
    import keras

    import keras_googlenet as kg

    shape = (args.image_size, args.image_size, 3)
    models = {}
    for width in args.widths:
        models[f"GoogLeNet w{width:g}"] = kg.GoogLeNet(
            stem="cifar", width=width, classes=args.classes, input_shape=shape, aux_logits=False)
    for peer in args.peers:
        builder = getattr(keras.applications, peer)
        options = {"include_preprocessing": False} if "V3" in peer else {}
        inner = builder(input_shape=shape, weights=None, classes=args.classes,
                        classifier_activation=None, **options)
        image = keras.Input(shape)
        models[peer] = keras.Model(image, keras.layers.Identity(name="main")(inner(image)),
                                   name=peer)
    return models


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.quick:
        args.widths, args.peers, args.formats = [0.125], ["MobileNetV3Small"], ["int8"]
        args.threads, args.repeats, args.calls = [1], 1, 2
        if args.output == DEFAULT_OUTPUT:
            args.output = os.path.join(tempfile.mkdtemp(), "android_peers.json")
    load_start = load_average()

    from keras_googlenet.export import LiteRTClassifier, convert_model
    from keras_googlenet.export.analysis import gpu_compatibility, integer_only
    from keras_googlenet.utils import count_flops

    rng = np.random.default_rng(0)
    size = args.image_size
    calibration = rng.integers(0, 256, (32, size, size, 3), dtype=np.uint8)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    rows, runners, paths = [], {}, []
    with tempfile.TemporaryDirectory() as tmp:
        # Every conversion before the first LiteRT interpreter, as the exporter
        # does (keras_googlenet.export.exporter._tflite_rows says why).
        for name, model in _models(args).items():
            for fmt in args.formats:
                flatbuffer = convert_model(model, fmt, calibration_images=calibration)
                path = os.path.join(tmp, f"{name.replace(' ', '_')}_{fmt}.tflite")
                with open(path, "wb") as f:
                    f.write(flatbuffer)
                gpu = gpu_compatibility(path)
                paths.append(path)
                rows.append({"model": name, "format": fmt, "size_bytes": len(flatbuffer),
                             "params": int(model.count_params()),
                             "multiply_adds": count_flops(model),
                             "gpu_delegate": gpu["compatible"], "gpu_flagged": gpu["flagged"],
                             "full_integer": integer_only(flatbuffer)["full_integer"],
                             "latency_ms": {}, "latency_ms_repeats": {}})
        for index, path in enumerate(paths):
            for threads in args.threads:
                runners[(index, threads)] = LiteRTClassifier(path, num_threads=threads)
        times = {key: [] for key in runners}
        for _ in range(args.repeats):  # interleaved: every file once per round
            for key, runner in runners.items():
                times[key].append(runner.latency_ms(image, repeats=args.calls, warmup=2))
    for (index, threads), values in times.items():
        rows[index]["latency_ms"][str(threads)] = statistics.median(values)
        rows[index]["latency_ms_repeats"][str(threads)] = values
    settings = {k: v for k, v in vars(args).items()}
    doc = report("android_peers", settings, rows, load_start=load_start, extra={
        "timing": "median over rounds of the median invoke() time of --calls calls; LiteRT "
                  "interpreter with XNNPACK, batch 1; all files interleaved in each round"})
    atomic_write_json(args.output, doc)
    print(markdown_table(rows, args.threads))
    print(f"wrote {args.output}")
    return 0


def markdown_table(rows, threads):
    head = " | ".join(f"{t} thread{'s' * (t > 1)} (ms)" for t in threads)
    lines = [f"| model | file | size (MB) | multiply-adds (M) | {head} | GPU delegate | "
             "full integer |",
             "|---|---|---:|---:|" + "---:|" * len(threads) + "---|---|"]
    for r in rows:
        latency = " | ".join(f"{r['latency_ms'][str(t)]:.3f}" for t in threads)
        lines.append(f"| {r['model']} | {r['format']} | {r['size_bytes'] / 1e6:.2f} | "
                     f"{r['multiply_adds'] / 1e6:.1f} | {latency} | "
                     f"{'yes' if r['gpu_delegate'] else 'no'} | "
                     f"{'yes' if r['full_integer'] else 'no'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
