"""Throughput of the training input pipeline (no model), in images per second.

    python -m benchmarks.input_pipeline            # synthetic CIFAR-shaped data
    python -m benchmarks.input_pipeline --data-dir ../shared/data/cifar10/train.tar.xz
    python -m benchmarks.input_pipeline --quick    # seconds, for CI

Measures what `model.fit` pulls from `training.data.build_datasets`: shuffled,
pad-and-crop + flip augmented, one-hot labels for the three heads, batched and
prefetched, for each available pipeline (`tf.data`, and the numpy
`keras.utils.PyDataset` used without TensorFlow). With `--data-dir` it also times
the one-off decode of the image files. Prints a markdown table and writes
`benchmarks/results/input_pipeline.json`.
"""

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

from keras_googlenet._internal.environment import tensorflow_available
from keras_googlenet._internal.fileio import atomic_write_json
from training.config import PIPELINES, TrainConfig
from training.data import build_datasets, load_arrays

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "input_pipeline.json"


def measure(dataset, batches, warmup=5):
    """Images per second of iterating `batches` batches after `warmup` ones."""
    if hasattr(dataset, "as_numpy_iterator"):
        iterator = iter(dataset.repeat())
        get = lambda: next(iterator)
    else:  # keras.utils.PyDataset, read in one thread (fit() adds worker threads)
        n = len(dataset)
        state = {"i": 0}

        def get():
            batch = dataset[state["i"] % n]
            state["i"] += 1
            if state["i"] % n == 0:
                dataset.on_epoch_end()
            return batch

    for _ in range(warmup):
        get()
    images = 0
    start = time.perf_counter()
    for _ in range(batches):
        images += len(get()[0])
    return images / (time.perf_counter() - start)


def run(args):
    """Runs the benchmark; returns the result dict."""
    base = TrainConfig(
        data="folder" if args.data_dir else "synthetic",
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
        image_size=args.image_size,
        batch_size=args.batch_size,
        limit=args.limit,
        synthetic_examples=args.limit or 50000,
    )
    rows = []
    if args.data_dir:
        config = base.resolve()
        load_arrays(config)  # extract the archive once, outside the timing
        start = time.perf_counter()
        x_train, _, x_val, _, _ = load_arrays(config)
        elapsed = time.perf_counter() - start
        rows.append({"stage": "decode files (once per run)", "pipeline": "PIL, threads",
                     "images_per_second": (len(x_train) + len(x_val)) / elapsed})
    pipelines = [p for p in PIPELINES if p != "tf.data" or tensorflow_available()]
    for pipeline in pipelines:
        config = dataclasses.replace(base, pipeline=pipeline).resolve()
        data = build_datasets(config)
        rate = measure(data.train, args.batches)
        label = pipeline if pipeline == "tf.data" else "numpy PyDataset (1 thread)"
        rows.append({"stage": "augmented training batches", "pipeline": label,
                     "images_per_second": rate})
    return {
        "data": args.data_dir or "synthetic",
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "batches": args.batches,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "results": rows,
    }


def markdown(result):
    """The result as a markdown table."""
    lines = [
        f"Input pipeline, {result['data']}, {result['image_size']}x{result['image_size']}, "
        f"batch {result['batch_size']}, {result['cpu_count']} CPUs",
        "",
        "| stage | pipeline | images/s |",
        "|---|---|---:|",
    ]
    lines += [f"| {r['stage']} | {r['pipeline']} | {r['images_per_second']:,.0f} |"
              for r in result["results"]]
    return "\n".join(lines)


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.input_pipeline",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="image folder or archive (default: synthetic data)")
    parser.add_argument("--cache-dir", help="where archives are extracted")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=300, help="batches timed per pipeline")
    parser.add_argument("--limit", type=int, help="examples to load (default: all / 50000)")
    parser.add_argument("--quick", action="store_true", help="small run for CI (2,048 images)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="JSON result file")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.limit = 20, args.limit or 2048
    result = run(args)
    print(markdown(result))
    atomic_write_json(args.output, result)
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
