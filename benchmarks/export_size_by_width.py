"""TFLite file sizes (float32 vs full int8) of the main-head GoogLeNet by width.

    python -m benchmarks.export_size_by_width [--widths 0.25,0.5,1.0] [--output PATH]

File size depends only on the architecture, not on training, provided the
BatchNorm layers have the non-trivial statistics of a trained network (with
fresh statistics the folded convolution biases are all zero and the converter
drops them, which understates the int8 file). So each model is built with
random weights and random "trained-like" BatchNorm statistics, converted with
`keras_googlenet.export.convert_model` (the converter settings of
`python -m training.export`), and its float32 and int8 file sizes are
written to `benchmarks/results/export_size_by_width.json`.

The int8 file is int8 weights (1/4 of float32) plus a per-layer overhead that
does not shrink with quantization: per-channel scales and zero points, int32
biases, tensor names and graph structure. At small widths that overhead is a
larger share of the file.
"""

import argparse
import platform
import sys

from keras_googlenet.config import GoogLeNetConfig
from keras_googlenet._internal.fileio import atomic_write_json


def trained_like_model(width, *, stem="cifar", size=32, classes=10, seed=0):
    """A GoogLeNet with random weights and random trained-like BatchNorm statistics."""
    import keras
    import numpy as np

    from keras_googlenet import build_model

    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    model = build_model(GoogLeNetConfig(stem=stem, classes=classes, width=width,
                                        input_shape=(size, size, 3)))
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                gamma * rng.uniform(0.5, 1.5, gamma.shape),
                rng.normal(0, 0.1, beta.shape),
                rng.normal(0, 0.5, mean.shape),
                rng.uniform(0.5, 2.0, var.shape),
            ])
    return model


def measure(widths, *, stem="cifar", size=32, classes=10, seed=0):
    import numpy as np

    from keras_googlenet import count_flops, inference_model
    from keras_googlenet.export import convert_model

    rng = np.random.default_rng(seed)
    calibration = rng.integers(0, 256, (32, size, size, 3), dtype=np.uint8)
    rows = []
    for width in widths:
        model = trained_like_model(width, stem=stem, size=size, classes=classes, seed=seed)
        sizes = {
            fmt: len(convert_model(model, fmt, calibration_images=calibration))
            for fmt in ("float32", "int8")
        }
        deploy = inference_model(model)
        rows.append({
            "width": width,
            "params": int(deploy.count_params()),
            "multiply_adds": count_flops(deploy),
            "float32_bytes": sizes["float32"],
            "int8_bytes": sizes["int8"],
            "int8_vs_float32": sizes["int8"] / sizes["float32"],
        })
        print(f"width {width}: float32 {sizes['float32']:,} B, int8 {sizes['int8']:,} B "
              f"({100 * rows[-1]['int8_vs_float32']:.1f}%)", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.export_size_by_width",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", default="0.25,0.5,1.0")
    parser.add_argument("--output", default="benchmarks/results/export_size_by_width.json")
    args = parser.parse_args(argv)
    widths = [float(w) for w in args.widths.split(",")]
    rows = measure(widths)
    import tensorflow as tf

    report = {
        "command": " ".join(
            ["python -m benchmarks.export_size_by_width", *(sys.argv[1:] if argv is None else argv)]
        ),
        "model": "GoogLeNet(stem='cifar', classes=10, input 32x32), main head, random weights "
                 "with trained-like BatchNorm statistics",
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
        "results": rows,
    }
    atomic_write_json(args.output, report)
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
