"""Where the bytes of a `.tflite` file go: weights, biases, quantization parameters, names.

    python -m benchmarks.tflite_size_breakdown [--widths 0.25,0.5] [--output PATH]

For each width, the model of `benchmarks.export_size_by_width` (random weights,
trained-like BatchNorm statistics, CIFAR stem, 32x32, 10 classes) is converted
with the export's settings (`keras_googlenet.export.convert_model`) to float32
and int8, and with the converter's public option that leaves out its
conversion metadata (`exclude_conversion_metadata`); then the TFLite metadata
of `python -m training.export` is embedded. Every file is split into

- weights: buffers of constant tensors, by element type (int8 kernels,
  int32 biases, float32);
- quantization parameters: per-tensor or per-channel scales (float32) and
  zero points (int64 in the TFLite schema);
- tensor names, the converter's metadata (`min_runtime_version`,
  `CONVERSION_METADATA`), our TFLite metadata plus the zipped labels;
- the rest (operators, tensor shapes, flatbuffer tables and alignment).

A printed table and `benchmarks/results/tflite_size_breakdown.json` (with the
CPU model from lscpu) hold the figures; sizes do not depend on the machine.
"""

import argparse
import sys

import numpy as np

from benchmarks.export_size_by_width import trained_like_model
from keras_googlenet._internal.environment import describe
from keras_googlenet._internal.fileio import atomic_write_json

LABELS = [f"class_{i}" for i in range(10)]


def breakdown(data):
    """`{part: bytes}` of a `.tflite` file's bytes (see the module docstring)."""
    from ai_edge_litert import schema_py_generated as tfl

    from keras_googlenet.export import embedded_files

    model = tfl.Model.GetRootAsModel(bytearray(data), 0)
    types = {v: k.lower() for k, v in vars(tfl.TensorType).items() if not k.startswith("_")}
    meta = {model.Metadata(i).Buffer(): model.Metadata(i).Name().decode()
            for i in range(model.MetadataLength())}
    parts = {}

    def add(part, n):
        parts[part] = parts.get(part, 0) + int(n)

    buffer_type = {}
    names = quant = 0
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            names += len(tensor.Name() or b"")
            q = tensor.Quantization()
            if q is not None:
                quant += 4 * (q.ScaleLength() + q.MinLength() + q.MaxLength())
                quant += 8 * q.ZeroPointLength()
            buffer_type.setdefault(tensor.Buffer(), types.get(tensor.Type(), "?"))
    for b in range(model.BuffersLength()):
        n = model.Buffers(b).DataLength()
        if not n:
            continue
        if b in meta:
            add("our TFLite metadata" if meta[b] == "TFLITE_METADATA"
                else "converter metadata", n)
        else:
            add(f"weights {buffer_type.get(b, '?')}", n)
    add("quantization parameters", quant)
    add("tensor names", names)
    zipped = len(data) - _flatbuffer_size(data) if embedded_files(data) else 0
    add("zipped labels.txt", zipped)
    parts["rest (ops, shapes, tables, padding)"] = len(data) - sum(parts.values())
    return parts


def _flatbuffer_size(data):
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return min(info.header_offset for info in archive.infolist())


def convert(model, fmt, calibration, exclude_conversion_metadata=False):
    """`convert_model`'s file, or with the converter's conversion metadata left out."""
    from keras_googlenet.export import tflite

    if not exclude_conversion_metadata:
        return tflite.convert_model(model, fmt, calibration_images=calibration)
    import tensorflow as tf

    original = tf.lite.TFLiteConverter.from_saved_model

    def from_saved_model(*args, **kwargs):
        converter = original(*args, **kwargs)
        converter.exclude_conversion_metadata = True
        return converter

    tf.lite.TFLiteConverter.from_saved_model = from_saved_model
    try:
        return tflite.convert_model(model, fmt, calibration_images=calibration)
    finally:
        tf.lite.TFLiteConverter.from_saved_model = original


def with_metadata(flatbuffer, size):
    from keras_googlenet.export import embed_metadata, model_metadata

    meta = model_metadata(name="cifar", description="GoogLeNet (Inception v1) image classifier",
                          version=None, author="keras-googlenet", license="Apache-2.0",
                          input_name="image", input_size=(size, size),
                          output_name="probabilities", labels_name="labels.txt")
    labels = "".join(f"{label}\n" for label in LABELS).encode()
    return embed_metadata(flatbuffer, meta, {"labels.txt": labels})


def measure(widths, size=32):
    rng = np.random.default_rng(0)
    calibration = rng.integers(0, 256, (32, size, size, 3), dtype=np.uint8)
    rows = []
    for width in widths:
        model = trained_like_model(width, size=size, classes=len(LABELS))
        for variant, exclude in (("export settings", False),
                                 ("exclude_conversion_metadata", True)):
            files = {fmt: convert(model, fmt, calibration, exclude)
                     for fmt in ("float32", "int8")}
            for embedded in (False, True):
                sizes = {fmt: with_metadata(f, size) if embedded else f
                         for fmt, f in files.items()}
                row = {
                    "width": width,
                    "converter": variant,
                    "tflite_metadata": embedded,
                    "float32_bytes": len(sizes["float32"]),
                    "int8_bytes": len(sizes["int8"]),
                    "int8_vs_float32": len(sizes["int8"]) / len(sizes["float32"]),
                    "float32_parts": breakdown(sizes["float32"]),
                    "int8_parts": breakdown(sizes["int8"]),
                }
                rows.append(row)
                print(f"width {width}, {variant}, TFLite metadata {embedded}: int8 "
                      f"{row['int8_bytes']:,} B / float32 {row['float32_bytes']:,} B = "
                      f"{100 * row['int8_vs_float32']:.1f}%", flush=True)
    return rows


def table(row):
    """Markdown table of one row's float32 and int8 parts."""
    parts = sorted(set(row["float32_parts"]) | set(row["int8_parts"]))
    lines = [f"width {row['width']}, {row['converter']}, TFLite metadata "
             f"{row['tflite_metadata']}:", "",
             "| part | float32 (B) | int8 (B) | int8 share of file |", "|---|---:|---:|---:|"]
    for part in parts:
        f32, i8 = row["float32_parts"].get(part, 0), row["int8_parts"].get(part, 0)
        lines.append(f"| {part} | {f32:,} | {i8:,} | {100 * i8 / row['int8_bytes']:.1f}% |")
    lines.append(f"| total | {row['float32_bytes']:,} | {row['int8_bytes']:,} | "
                 f"{100 * row['int8_vs_float32']:.1f}% of float32 |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tflite_size_breakdown",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", default="0.25,0.5")
    parser.add_argument("--output", default="benchmarks/results/tflite_size_breakdown.json")
    args = parser.parse_args(argv)
    rows = measure([float(w) for w in args.widths.split(",")])
    for row in rows:
        print()
        print(table(row))
    atomic_write_json(args.output, {
        "benchmark": "tflite_size_breakdown",
        "command": " ".join(["python -m benchmarks.tflite_size_breakdown",
                             *(sys.argv[1:] if argv is None else argv)]),
        "model": "GoogLeNet(stem='cifar', classes=10, input 32x32), main head, random weights "
                 "with trained-like BatchNorm statistics (benchmarks.export_size_by_width)",
        "environment": describe(),
        "results": rows,
    })
    print(f"\nWrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
