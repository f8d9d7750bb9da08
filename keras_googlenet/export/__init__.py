"""Export a trained GoogLeNet for deployment: SavedModel and TFLite.

    >>> from keras_googlenet import export as ex
    >>> ex.export_saved_model(model, "saved_models/cifar", labels=class_names)
    >>> report = ex.export(model, "saved_models/cifar", calibration_images=x_train,
    ...                    eval_images=x_val, eval_labels=y_val, labels=class_names)

`export` writes into one folder:

- the SavedModel (`saved_model.pb`, `variables/`): `serving_default` takes raw RGB
  pixels `image: uint8 [batch, H, W, 3]` and returns
  `probabilities: float32 [batch, classes]` (softmax of one head, `main` by default);
- `model_float32.tflite`, `model_float16.tflite` (float16 weights),
  `model_dynamic.tflite` (int8 weights, float activations) and `model_int8.tflite`
  (full integer, calibrated on training images), all batch 1 with input
  `uint8 [1, H, W, 3]` and output `[1, classes]` (float32 probabilities, or uint8
  probabilities with scale 1/256 for `int8`), TFLite builtin ops only, each
  with TFLite metadata (model description, input image and normalization,
  output, and `labels.txt` as an associated file) that MediaPipe Tasks'
  `ImageClassifier` and Android Studio's model binding read (`metadata=False`
  leaves it out);
- `labels.txt` (class names in output order), `model_config.json` (the model's
  `GoogLeNetConfig`, when given) with `model.weights.h5` (its float32 weights, so
  that `keras_googlenet.load_model_folder` rebuilds the model from the export) and `export_report.json` (size, LiteRT latency
  and agreement of every artifact with the Keras model), with its chart
  `export_report.png` (accuracy, size and latency of the TFLite files).

The folder is built in a temporary folder next to it and renamed into place, so
it is either a complete export or absent; it gets the user's default permissions.

One role per module: `serving` (the deployment graph and its input/output
contract), `saved_model`, `tflite` (conversion and the builtin-ops check),
`litert` (running `.tflite` files), `analysis` (what a `.tflite` file can run on:
the GPU delegate analyzer's verdict, full-integer or not), `metadata` (TFLite metadata inside the
`.tflite` files), `labels` (the files describing an export),
`report`, `chart` (the report's picture), `exporter` (`export`, all of it with
checks) and `errors`. To add a
format, add its converter beside `tflite` and a row in `exporter`.

This package needs the TensorFlow backend (SavedModel and TFLite are TensorFlow
formats) and is not imported by `keras_googlenet/__init__.py`, so the model
itself stays importable without TensorFlow; its own names load on first use. The command line that exports a
training run folder is `python -m training.export`.
"""

import importlib

from keras_googlenet.export.errors import ExportError, check_export_destination

# Names that need Keras/TensorFlow load on first use, so that importing this package
# (e.g. for ExportError, or by `training.export` before it quiets TensorFlow's logging)
# is cheap. Name -> the module of this package that defines it.
_LAZY = {
    "check_exportable": "exporter",
    "check_model_config": "labels",
    "export": "exporter",
    "LABELS_FILE": "labels",
    "read_labels": "labels",
    "resolve_labels": "labels",
    "write_labels": "labels",
    "write_model_config": "labels",
    "LiteRTClassifier": "litert",
    "gpu_compatibility": "analysis",
    "integer_only": "analysis",
    "METADATA_FIELDS": "metadata",
    "METADATA_NAME": "metadata",
    "embed_metadata": "metadata",
    "embedded_files": "metadata",
    "model_metadata": "metadata",
    "METADATA_NOTE": "report",
    "NO_METADATA_NOTE": "report",
    "REPORT_FILE": "report",
    "format_report": "report",
    "export_saved_model": "saved_model",
    "saved_model_latency_ms": "saved_model",
    "saved_model_probabilities": "saved_model",
    "write_saved_model": "saved_model",
    "INPUT_NAME": "serving",
    "OUTPUT_NAME": "serving",
    "deployment_model": "serving",
    "input_size": "serving",
    "keras_probabilities": "serving",
    "num_classes": "serving",
    "serving_function": "serving",
    "FORMATS": "tflite",
    "TFLITE_FORMATS": "tflite",
    "check_builtin_ops": "tflite",
    "convert_model": "tflite",
    "convert_saved_model": "tflite",
    "parse_formats": "tflite",
    "tflite_filename": "tflite",
    "tflite_ops": "tflite",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"keras_googlenet.export.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_googlenet.export' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ExportError",
    "FORMATS",
    "INPUT_NAME",
    "LABELS_FILE",
    "LiteRTClassifier",
    "METADATA_FIELDS",
    "METADATA_NAME",
    "METADATA_NOTE",
    "NO_METADATA_NOTE",
    "OUTPUT_NAME",
    "REPORT_FILE",
    "TFLITE_FORMATS",
    "check_builtin_ops",
    "check_export_destination",
    "check_exportable",
    "check_model_config",
    "convert_model",
    "convert_saved_model",
    "deployment_model",
    "embed_metadata",
    "embedded_files",
    "export",
    "export_saved_model",
    "format_report",
    "gpu_compatibility",
    "input_size",
    "integer_only",
    "keras_probabilities",
    "model_metadata",
    "num_classes",
    "parse_formats",
    "read_labels",
    "resolve_labels",
    "saved_model_latency_ms",
    "saved_model_probabilities",
    "serving_function",
    "tflite_filename",
    "tflite_ops",
    "write_labels",
    "write_model_config",
    "write_saved_model",
]
