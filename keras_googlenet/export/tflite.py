"""The TFLite formats: conversion from the serving SavedModel, and the builtin-ops check.

Every `.tflite` file is batch 1 with input `image: uint8 [1, H, W, 3]` and
output `probabilities: [1, classes]` (float32, or uint8 with scale 1/256 for
`int8`), and uses TFLite builtin operators only (no Flex / select TF ops).
"""

import os
import re
import tempfile
import warnings

import numpy as np

from keras_googlenet.architecture import MAIN_HEAD
from keras_googlenet.export.errors import ExportError, one_line
from keras_googlenet.export.saved_model import write_saved_model
from keras_googlenet.export.serving import INPUT_NAME, deployment_model
from keras_googlenet._internal.logs import quiet_native_stderr

#: Every format `export` can write, in the order it writes them.
FORMATS = ("saved_model", "float32", "float16", "dynamic", "int8")
#: The TFLite formats.
TFLITE_FORMATS = ("float32", "float16", "dynamic", "int8")


def tflite_filename(fmt):
    """`"int8"` -> `"model_int8.tflite"`."""
    return f"model_{fmt}.tflite"


def parse_formats(formats):
    """`"float32,int8"` or a list -> the formats in `FORMATS` order.

    Raises:
        ExportError: For an unknown format or an empty list.
    """
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(
            f"Unknown format(s) {unknown or formats}; choose from {', '.join(FORMATS)}."
        )
    return [f for f in FORMATS if f in formats]


def _calibrate(converter, calibration_images):
    import tensorflow as tf

    if calibration_images is None or len(calibration_images) == 0:
        raise ExportError(
            "int8 export needs calibration images: pass --calibration-data DIR "
            "(a folder of training images) or export a run folder."
        )
    images = np.asarray(calibration_images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"calibration_images must be uint8 [N, H, W, 3]. Received: {images.dtype} "
            f"{images.shape}"
        )

    # The graph takes float pixels (see `convert_saved_model`); one more image,
    # a copy of the first with a 0 and a 255, makes the input's calibrated range
    # exactly [0, 255], so the uint8 input's scale is 1 and its zero point 0:
    # raw pixels, as every other file takes them.
    extremes = images[:1].copy()
    extremes.reshape(-1)[:2] = (0, 255)

    def representative_dataset():
        for image in (*images, *extremes):
            yield {INPUT_NAME: image[None].astype(np.float32)}

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8


def convert_saved_model(saved_model_dir, fmt, calibration_images=None):
    """Converts a batch-1 serving SavedModel to TFLite and returns the flatbuffer.

    Args:
        saved_model_dir: A SavedModel whose `serving_default` takes
            `image: uint8 [1, H, W, 3]`, or for `"int8"` the same pixels as
            float32 (`write_saved_model(..., float_input=True)`; see `convert_model`).
        fmt: `"float32"`, `"float16"` (float16 weights), `"dynamic"` (int8
            weights, float activations) or `"int8"` (full integer: uint8 input
            with scale 1 and zero point 0, int8 weights and activations, uint8
            output, no float tensor; calibrated on `calibration_images`).
        calibration_images: uint8 array `[N, H, W, 3]` of training images, needed
            for `"int8"`.

    Returns:
        The `.tflite` file's bytes.

    Raises:
        ExportError: If int8 has no calibration images, or the model needs ops
            outside the TFLite builtins (Flex / select TF ops are not allowed).
    """
    import tensorflow as tf

    if fmt not in TFLITE_FORMATS:
        raise ValueError(f"`fmt` must be one of {list(TFLITE_FORMATS)}. Received: fmt={fmt!r}")
    converter = tf.lite.TFLiteConverter.from_saved_model(
        os.fspath(saved_model_dir), signature_keys=["serving_default"]
    )
    # Builtin ops only: a graph that would need Flex (select TF ops) fails to
    # convert instead of silently depending on the Flex delegate.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if fmt == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif fmt == "int8":
        _calibrate(converter, calibration_images)
    try:
        # The converter's C++ side logs a dozen INFO/WARNING lines per file.
        with warnings.catch_warnings(), quiet_native_stderr():
            # The calibrator uses the deprecated tf.lite.Interpreter internally.
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            flatbuffer = converter.convert()
    except Exception as e:
        select = re.search(r"TF Select ops: ([^\n]+)", str(e))
        if select:
            raise ExportError(
                f"TFLite {fmt} conversion failed: the model needs ops outside the TFLite "
                f"builtins ({select.group(1).strip()}); Flex / select TF ops are not allowed."
            ) from e
        raise ExportError(
            f"TFLite {fmt} conversion with builtin ops only failed: {one_line(e)}"
        ) from e
    check_builtin_ops(flatbuffer)
    if fmt == "int8":
        _check_raw_pixel_input(flatbuffer)
    return flatbuffer


def _check_raw_pixel_input(flatbuffer):
    """Raises ExportError unless the int8 file's input is uint8 raw pixels (scale 1, zero 0)."""
    from ai_edge_litert import schema_py_generated as schema

    graph = schema.Model.GetRootAsModel(bytearray(flatbuffer), 0).Subgraphs(0)
    tensor = graph.Tensors(graph.Inputs(0))
    quantization = tensor.Quantization()
    scale = quantization.ScaleAsNumpy() if quantization is not None else None
    zero = quantization.ZeroPointAsNumpy() if quantization is not None else None
    if (tensor.Type() != schema.TensorType.UINT8 or scale is None or len(scale) != 1
            or scale[0] != 1.0 or zero[0] != 0):
        raise ExportError(
            "The int8 file's input is not uint8 raw pixels (scale 1, zero point 0); got type "
            f"{tensor.Type()}, scale {None if scale is None else list(scale)}, zero point "
            f"{None if zero is None else list(zero)}."
        )


def convert_model(model, fmt, *, head=MAIN_HEAD, calibration_images=None):
    """Converts one head of a Keras GoogLeNet to a batch-1 TFLite flatbuffer.

    Convenience wrapper around `convert_saved_model` (writes a temporary batch-1
    SavedModel first). Input `image: uint8 [1, H, W, 3]` (raw RGB), output
    `probabilities: [1, classes]`.
    """
    deployment_model(model, head)
    with tempfile.TemporaryDirectory(prefix="googlenet_batch1_") as tmp:
        write_saved_model(model, tmp, head, batch_size=1, float_input=fmt == "int8")
        return convert_saved_model(tmp, fmt, calibration_images)


def tflite_ops(flatbuffer):
    """Returns the sorted operator names a `.tflite` flatbuffer uses.

    Builtin operators are named as in the TFLite schema (`"CONV_2D"`); custom
    operators (including Flex ops, `"FlexXxx"`) as `"CUSTOM:<name>"`.
    """
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    buf = bytearray(flatbuffer)
    tfl = schema.Model.GetRootAsModel(buf, 0)
    ops = set()
    for i in range(tfl.OperatorCodesLength()):
        code = tfl.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.CustomCode()
            ops.add(f"CUSTOM:{custom.decode() if custom else '?'}")
        else:
            ops.add(names.get(builtin, f"BUILTIN_{builtin}"))
    return sorted(ops)


def check_builtin_ops(flatbuffer):
    """Raises ExportError if a `.tflite` flatbuffer uses custom or Flex ops; returns its ops."""
    ops = tflite_ops(flatbuffer)
    custom = [op for op in ops if op.startswith("CUSTOM:")]
    if custom:
        raise ExportError(
            f"The TFLite model needs non-builtin ops {custom}; only TFLite builtin ops are allowed."
        )
    return ops
