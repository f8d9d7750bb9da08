"""Batch-1 and batched inference latency of the Keras model, the SavedModel and each
TFLite variant.

    python -m benchmarks.inference_latency                    # CIFAR GoogLeNet, 32x32, 10 classes
    python -m benchmarks.inference_latency --model runs/NAME  # a trained model (.keras or run folder)
    python -m benchmarks.inference_latency --artifacts saved_models/NAME  # existing exports
    python -m benchmarks.inference_latency --quick            # CI smoke run

The artifacts are produced with `keras_googlenet.export` (the same functions the
export command uses): the main-head SavedModel (`serving_default`, uint8 images
in, probabilities out) and `model_float32/float16/dynamic/int8.tflite` (batch 1;
int8 calibrated on `--calibration-images` images: the run's training images for
a run folder, random images otherwise; latency does not depend on the weights).
Without `--model` a randomly initialised GoogLeNet of the given configuration is
timed.

Rows (each timed on the same uint8 images):

- Keras: `model.predict_on_batch` of `inference_model(model)` (Keras's compiled
  predict function, so the Keras backend's own graph/jit path);
- SavedModel: `tf.saved_model.load(...).signatures["serving_default"]`;
- each TFLite file in the LiteRT interpreter (XNNPACK) with `--threads` threads;
  for batches above 1 the input is resized to `[N, H, W, 3]` (the files are
  exported for batch 1) and the row is skipped if the graph does not allow it.

TensorFlow runs its ops on its default intra-op pool (all cores) unless
`TF_NUM_INTRAOP_THREADS` says otherwise. Every configuration is timed
interleaved with the others (one call each, in turn, `--repeats` times) after a
warm-up; the figure is the median call time. Needs the TensorFlow backend to
produce artifacts; on another backend only the Keras rows (and the TFLite rows
of `--artifacts`, LiteRT needs no TensorFlow) are measured.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from benchmarks.cli_lists import csv_list, int_list
from benchmarks.report import report
from keras_googlenet.architecture import DEFAULT_INPUT_SIZE, STEMS
from keras_googlenet.config import GoogLeNetConfig
from keras_googlenet._internal.environment import load_average
from keras_googlenet._internal.fileio import atomic_write_bytes, atomic_write_json

TFLITE_FORMATS = ("float32", "float16", "dynamic", "int8")
DEFAULT_OUTPUT = "benchmarks/results/inference_latency.json"


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.inference_latency",
        description="Batch-1 and batched latency of the Keras GoogLeNet, its SavedModel and "
        "its TFLite variants (LiteRT), interleaved, median of repeats.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help="a .keras file or training run folder (default: a random-init GoogLeNet "
                   "built from the flags below)")
    g.add_argument("--artifacts", default=None,
                   help="an existing export folder (saved_models/NAME) to time instead of "
                   "exporting afresh")
    g.add_argument("--stem", choices=sorted(STEMS), default="cifar")
    g.add_argument("--image-size", type=int, default=None,
                   help="default: 32 for the CIFAR stem, 224 for the ImageNet stem")
    g.add_argument("--classes", type=int, default=10)
    g.add_argument("--width", type=float, default=1.0)
    g = p.add_argument_group("artifacts")
    g.add_argument("--formats", default="saved_model," + ",".join(TFLITE_FORMATS),
                   help="what to time besides the Keras model")
    g.add_argument("--calibration-images", type=int, default=64,
                   help="int8 calibration images")
    g = p.add_argument_group("timing")
    g.add_argument("--batch-sizes", default="1,32", help="comma-separated batch sizes")
    g.add_argument("--threads", default="1,0",
                   help="LiteRT interpreter threads (0: one per CPU core)")
    g.add_argument("--repeats", type=int, default=30, help="timed calls per row (median)")
    g.add_argument("--warmup", type=int, default=3, help="untimed calls per row first")
    g.add_argument("--output", default=DEFAULT_OUTPUT)
    p.add_argument("--quick", action="store_true",
                   help="CI smoke run: CIFAR stem, width 0.125, batches 1 and 4, 1 thread, "
                   "3 repeats, 8 calibration images")
    return p


def _keras_model(args):
    import keras

    from keras_googlenet import build_model, inference_model

    if args.model:
        from keras_googlenet.export import input_size
        from training.export import load_source, run_data

        source = load_source(args.model)
        model = source.model
        calibration = None
        if source.run_dir and source.run_config:
            calibration = run_data(source.run_dir, source.run_config, input_size(model))[0]
    else:
        keras.utils.set_random_seed(0)
        size = args.image_size or DEFAULT_INPUT_SIZE[args.stem]
        model = build_model(GoogLeNetConfig(stem=args.stem, input_shape=(size, size, 3),
                                            classes=args.classes, width=args.width))
        calibration = None
    return model, inference_model(model), calibration


def _make_artifacts(model, formats, folder, calibration, count, seed=0):
    """Writes the SavedModel and TFLite files with keras_googlenet.export; returns paths."""
    from keras_googlenet import export

    paths = {}
    hw = tuple(int(d) for d in model.inputs[0].shape[1:3])
    if calibration is None or len(calibration) == 0:
        rng = np.random.default_rng(seed)
        calibration = rng.integers(0, 256, (count, *hw, 3), dtype=np.uint8)
    else:
        calibration = np.asarray(calibration)[:count]
    if "saved_model" in formats:
        paths["saved_model"] = export.export_saved_model(
            model, os.path.join(folder, "saved_model"))
    for fmt in TFLITE_FORMATS:
        if fmt in formats:
            flatbuffer = export.convert_model(
                model, fmt, calibration_images=calibration if fmt == "int8" else None)
            path = os.path.join(folder, export.tflite_filename(fmt))
            atomic_write_bytes(path, flatbuffer)
            paths[fmt] = path
    return paths


def _existing_artifacts(folder, formats):
    paths = {}
    if "saved_model" in formats and os.path.isfile(os.path.join(folder, "saved_model.pb")):
        paths["saved_model"] = folder
    for fmt in TFLITE_FORMATS:
        path = os.path.join(folder, f"model_{fmt}.tflite")
        if fmt in formats and os.path.isfile(path):
            paths[fmt] = path
    return paths


class _Row:
    """One thing to time: a callable on a prepared input, plus its description."""

    def __init__(self, artifact, runtime, batch, call, *, threads=None, size_bytes=None):
        self.artifact, self.runtime, self.batch = artifact, runtime, batch
        self.call, self.threads, self.size_bytes = call, threads, size_bytes
        self.times = []


def _keras_rows(deploy, images, batches):
    import keras

    rows = []
    for n in batches:
        x = images[:n]
        rows.append(_Row("Keras", f"model.predict_on_batch ({keras.backend.backend()} backend)",
                         n, lambda x=x: np.asarray(deploy.predict_on_batch(x))))
    return rows


def _saved_model_rows(path, images, batches):
    import tensorflow as tf

    from keras_googlenet.export import INPUT_NAME, OUTPUT_NAME

    fn = tf.saved_model.load(path).signatures["serving_default"]
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)
    rows = []
    for n in batches:
        x = tf.constant(images[:n])
        rows.append(_Row("SavedModel", "TensorFlow serving_default", n,
                         lambda x=x: fn(**{INPUT_NAME: x})[OUTPUT_NAME].numpy(),
                         size_bytes=size))
    return rows


def _tflite_rows(fmt, path, images, batches, threads_list, notes):
    from ai_edge_litert.interpreter import Interpreter

    rows = []
    for threads in threads_list:
        n_threads = threads or os.cpu_count() or 1
        for n in batches:
            interpreter = Interpreter(model_path=path, num_threads=n_threads)
            (inp,) = interpreter.get_input_details()
            (out,) = interpreter.get_output_details()
            try:
                if n != 1:
                    interpreter.resize_tensor_input(inp["index"], [n, *inp["shape"][1:]])
                interpreter.allocate_tensors()
                x = _litert_input(images[:n], inp)
                interpreter.set_tensor(inp["index"], x)
                interpreter.invoke()
                if interpreter.get_tensor(out["index"]).shape[0] != n:
                    raise ValueError("output batch does not follow the input batch")
            except (RuntimeError, ValueError) as e:
                notes.append(f"{os.path.basename(path)} batch {n}: not measured "
                             f"({' '.join(str(e).split())[:160]})")
                continue

            def call(interpreter=interpreter, inp=inp, out=out, x=x):
                interpreter.set_tensor(inp["index"], x)
                interpreter.invoke()
                return interpreter.get_tensor(out["index"])

            rows.append(_Row(os.path.basename(path), "LiteRT Interpreter (XNNPACK)", n, call,
                             threads=n_threads, size_bytes=os.path.getsize(path)))
    return rows


def _litert_input(images, detail):
    scale, zero_point = detail["quantization"]
    x = images
    if scale:
        x = np.round(images.astype(np.float32) / scale + zero_point)
        info = np.iinfo(detail["dtype"])
        x = np.clip(x, info.min, info.max)
    return np.ascontiguousarray(x.astype(detail["dtype"]))


def measure(rows, repeats, warmup):
    """Times every row interleaved: warm-up, then one call per row in turn."""
    for row in rows:
        for _ in range(warmup):
            row.call()
    for r in range(repeats):
        order = rows if r % 2 == 0 else rows[::-1]
        for row in order:
            start = time.perf_counter()
            row.call()
            row.times.append(time.perf_counter() - start)
    results = []
    for row in rows:
        median = statistics.median(row.times)
        results.append({
            "artifact": row.artifact,
            "runtime": row.runtime,
            "batch": row.batch,
            "threads": row.threads,
            "size_bytes": row.size_bytes,
            "latency_ms": 1000 * median,
            "latency_ms_p10": 1000 * _quantile(row.times, 0.1),
            "latency_ms_p90": 1000 * _quantile(row.times, 0.9),
            "ms_per_image": 1000 * median / row.batch,
            "images_per_second": row.batch / median,
            "repeats": len(row.times),
        })
    return results


def _quantile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def markdown_table(results):
    lines = ["| artifact | runtime | threads | batch | latency (ms) | p10-p90 (ms) | ms/image "
             "| images/s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        threads = "" if r["threads"] is None else str(r["threads"])
        lines.append(
            f"| {r['artifact']} | {r['runtime']} | {threads} | {r['batch']} | "
            f"{r['latency_ms']:.2f} | {r['latency_ms_p10']:.2f}-{r['latency_ms_p90']:.2f} | "
            f"{r['ms_per_image']:.2f} | {r['images_per_second']:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.quick:
        args.stem, args.width, args.classes = "cifar", 0.125, 10
        args.image_size = 32
        args.batch_sizes, args.threads, args.repeats, args.warmup = "1,4", "1", 3, 1
        args.calibration_images = 8
    formats = csv_list(args.formats)
    bad = [f for f in formats if f not in ("saved_model", *TFLITE_FORMATS)]
    try:
        batches, threads = int_list(args.batch_sizes), int_list(args.threads)
    except argparse.ArgumentTypeError:
        batches = threads = []
    if bad or not batches or min(batches) < 1 or not threads or min(threads) < 0 \
            or args.repeats < 1 or args.warmup < 0:
        print("error: bad --formats, --batch-sizes, --threads, --repeats or --warmup",
              file=sys.stderr)
        return 2

    import keras

    load_start = load_average()
    notes = []
    model, deploy, calibration = _keras_model(args)
    hw = tuple(int(d) for d in deploy.inputs[0].shape[1:3])
    images = np.random.default_rng(1).integers(0, 256, (max(batches), *hw, 3), dtype=np.uint8)
    rows = _keras_rows(deploy, images, batches)
    with tempfile.TemporaryDirectory(prefix="googlenet-latency-") as folder:
        if args.artifacts:
            paths = _existing_artifacts(args.artifacts, formats)
            missing = [f for f in formats if f not in paths]
            if missing:
                notes.append(f"not in {args.artifacts}: {', '.join(missing)}")
        elif keras.backend.backend() == "tensorflow":
            print("Exporting " + ", ".join(formats) + " ...", file=sys.stderr)
            paths = _make_artifacts(model, formats, folder, calibration, args.calibration_images)
        else:
            paths = {}
            notes.append(f"SavedModel/TFLite export needs the TensorFlow backend (this is "
                         f"{keras.backend.backend()}); only the Keras model was timed")
        if "saved_model" in paths:
            try:
                rows += _saved_model_rows(paths["saved_model"], images, batches)
            except ImportError:
                notes.append("SavedModel not timed: TensorFlow is not installed")
        for fmt in TFLITE_FORMATS:
            if fmt in paths:
                rows += _tflite_rows(fmt, paths[fmt], images, batches, threads, notes)
        print(f"Timing {len(rows)} configurations, {args.repeats} calls each ...", file=sys.stderr)
        results = measure(rows, args.repeats, args.warmup)
    from keras_googlenet import count_flops

    settings = dict(vars(args), formats=formats, batch_sizes=batches, threads=threads)
    doc = report("inference_latency", settings, results, load_start=load_start, extra={
        "model": {"source": args.model or "random initialisation",
                  "input": [hw[0], hw[1], 3],
                  "classes": int(deploy.outputs[0].shape[-1]),
                  "multiply_adds_per_image": count_flops(deploy),
                  "params": int(deploy.count_params()),
                  "keras_backend": keras.backend.backend()},
        "notes": notes,
        "statistic": "median wall time of one call (set input, run, fetch output), after "
                     "warm-up, rows interleaved",
    })
    doc.pop("flop_convention", None)
    doc.pop("timing", None)
    atomic_write_json(args.output, doc)
    print(markdown_table(results))
    for note in notes:
        print(f"- {note}")
    print(f"\nLoad average {load_start} -> {doc['load_average']['end']}; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
