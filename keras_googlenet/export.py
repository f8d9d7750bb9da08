"""Export a trained GoogLeNet for deployment: SavedModel and TFLite.

    python -m keras_googlenet.export MODEL --name NAME

turns a `.keras` file or a `training.cifar` run folder into `saved_models/NAME/`:

- the SavedModel (`saved_model.pb`, `variables/`): `serving_default` takes raw RGB
  pixels `image: uint8 [batch, H, W, 3]` and returns
  `probabilities: float32 [batch, classes]` (softmax of one head, `main` by default);
- `model_float32.tflite`, `model_float16.tflite` (float16 weights),
  `model_dynamic.tflite` (int8 weights, float activations) and `model_int8.tflite`
  (full integer, calibrated on training images), all batch 1 with input
  `uint8 [1, H, W, 3]` and output `[1, classes]` (float32 probabilities, or uint8
  probabilities with scale 1/256 for `int8`), TFLite builtin ops only;
- `labels.txt` (class names in output order) and `export_report.json` (size,
  LiteRT latency and agreement of every artifact with the Keras model).

The folder is built in a temporary folder next to it and renamed into place, so
it is either a complete export or absent.

This module needs the TensorFlow backend (SavedModel and TFLite are TensorFlow
formats); it is deliberately not imported by `keras_googlenet/__init__.py`, so the
package itself stays importable without TensorFlow.
"""

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np

import keras

from keras_googlenet.utils import HEADS, count_flops, inference_model

#: Name of the SavedModel signature's input (raw RGB uint8 pixels).
INPUT_NAME = "image"
#: Name of the SavedModel signature's output (class probabilities).
OUTPUT_NAME = "probabilities"
#: Name of the labels file written beside every export.
LABELS_FILE = "labels.txt"
#: Name of the report written beside every export.
REPORT_FILE = "export_report.json"
#: Every format `export` can write, in the order it writes them.
FORMATS = ("saved_model", "float32", "float16", "dynamic", "int8")
#: The TFLite formats.
TFLITE_FORMATS = ("float32", "float16", "dynamic", "int8")
#: File extensions read as images from a calibration or evaluation folder.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
#: Files a run folder of `training.cifar` holds (the final model is exported).
RUN_MODEL_FILE = "model.keras"
RUN_CONFIG_FILE = "config.json"

#: Why the labels are shipped as `labels.txt` and not embedded as TFLite metadata.
METADATA_NOTE = (
    "Not embedded: the TFLite metadata writer (tflite-support 0.4.4, its last release) "
    "requires protobuf<4 while TensorFlow 2.21 requires protobuf>=6.31.1, so it cannot be "
    "installed beside this TensorFlow; labels ship as labels.txt."
)


def tflite_filename(fmt):
    """`"int8"` -> `"model_int8.tflite"`."""
    return f"model_{fmt}.tflite"


class ExportError(Exception):
    """A problem with the user's input to the export (one-line message)."""


# ---------------------------------------------------------------------------
# Deployment graph
# ---------------------------------------------------------------------------


def deployment_model(model, head="main"):
    """Cuts `model` after `head` and returns `(keras_model, apply_softmax)`.

    `apply_softmax` says whether the head returns logits (its activation is linear,
    `classifier_activation=None`), so the deployed graph must add a softmax; a head
    that already has a softmax is used as is.

    Raises:
        ValueError: If `head` is unknown, missing from `model`, or has an activation
            other than linear or softmax.
    """
    deploy = inference_model(model, head)
    layer = model.get_layer(head)
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    if activation is None or name == "linear":
        return deploy, True
    if name == "softmax":
        return deploy, False
    raise ValueError(
        f"The {head!r} head has activation {name!r}; only logits (linear) or softmax heads "
        "can be exported as class probabilities."
    )


def _input_hw(model):
    shape = tuple(model.inputs[0].shape)
    if keras.config.image_data_format() != "channels_last":
        raise ValueError("Export supports channels_last models only.")
    if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[2] is None:
        raise ValueError(
            "Export needs an RGB model with a static input size, input shape "
            f"(None, H, W, 3). Received: input shape {shape}"
        )
    return int(shape[1]), int(shape[2])


def serving_function(model, head="main"):
    """Returns `(fn, (H, W))`: a tf.function-ready callable uint8 images -> probabilities.

    `fn(image)` takes raw RGB `uint8 [batch, H, W, 3]` pixels, casts them to float
    (a GoogLeNet scales them itself with its `rescaling` layer; for a model built
    with `include_preprocessing=False` the function scales them to [-1, 1]) and
    returns `{"probabilities": float32 [batch, classes]}` from `head`.
    """
    import tensorflow as tf

    deploy, apply_softmax = deployment_model(model, head)
    hw = _input_hw(deploy)
    compute_dtype = deploy.inputs[0].dtype or "float32"
    scale_inputs = not any(layer.name == "rescaling" for layer in deploy.layers)

    def serve(image):
        x = tf.cast(image, compute_dtype)
        if scale_inputs:
            x = x / 127.5 - 1.0
        out = tf.cast(deploy(x, training=False), tf.float32)
        if apply_softmax:
            out = tf.nn.softmax(out, axis=-1)
        return {OUTPUT_NAME: out}

    serve.deploy_model = deploy
    return serve, hw


# ---------------------------------------------------------------------------
# Atomic output folder
# ---------------------------------------------------------------------------


def _is_nonempty_dir(path):
    return os.path.isdir(path) and any(os.scandir(path))


def check_destination(directory, overwrite=False):
    """Raises ExportError if `directory` cannot receive an export."""
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ExportError(f"Export path {directory!r} exists and is not a folder.")
    if _is_nonempty_dir(directory) and not overwrite:
        raise ExportError(
            f"Export folder {directory!r} already exists and is not empty; "
            "pass --overwrite (overwrite=True) to replace it."
        )


@contextlib.contextmanager
def atomic_directory(directory, overwrite=False):
    """Yields a temporary folder that replaces `directory` on success.

    The temporary folder is created next to `directory` (same file system) and
    renamed into place only when the `with` block finishes without an exception;
    otherwise it is deleted. An existing non-empty `directory` is refused unless
    `overwrite`, in which case it is moved aside, replaced, then deleted. So
    `directory` is always either the old content or a complete new export.
    """
    directory = os.path.abspath(os.fspath(directory))
    check_destination(directory, overwrite)
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(directory)
    tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
    try:
        yield tmp
        # Check again: something may have appeared while we were exporting.
        check_destination(directory, overwrite)
        old = None
        if os.path.lexists(directory):
            old = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
            os.rmdir(old)
            os.rename(directory, old)
        try:
            os.replace(tmp, directory)
        except BaseException:
            if old is not None:
                os.rename(old, directory)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------


def _num_classes(model, head):
    return int(model.get_layer(head).output.shape[-1])


def resolve_labels(labels, classes):
    """Returns a list of `classes` label strings (`"0"`, `"1"`, ... when `labels` is None)."""
    if labels is None:
        return [str(i) for i in range(classes)]
    labels = [str(label) for label in labels]
    if len(labels) != classes:
        raise ExportError(
            f"Got {len(labels)} labels for a model with {classes} classes."
        )
    for label in labels:
        if not label.strip() or "\n" in label or "\r" in label:
            raise ExportError(f"Invalid label {label!r}: labels must be non-empty single lines.")
    return labels


def write_labels(directory, labels):
    path = os.path.join(directory, LABELS_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(f"{label}\n" for label in labels))
    return path


def read_labels(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\r\n") for line in f if line.strip()]


# ---------------------------------------------------------------------------
# SavedModel
# ---------------------------------------------------------------------------


def _write_saved_model(model, directory, head, batch_size=None):
    """Writes the serving SavedModel of `head` into the existing (empty) `directory`."""
    import tensorflow as tf

    serve, (h, w) = serving_function(model, head)
    archive = keras.export.ExportArchive()
    archive.track(serve.deploy_model)
    archive.add_endpoint(
        "serving_default",
        serve,
        input_signature=[tf.TensorSpec([batch_size, h, w, 3], tf.uint8, name=INPUT_NAME)],
    )
    archive.write_out(directory, verbose=False)


def export_saved_model(model, directory, labels=None, *, head="main", overwrite=False):
    """Writes a deployable SavedModel (and `labels.txt`) of one head of `model`.

    The SavedModel's `serving_default` signature takes raw RGB pixels,
    `image: uint8 [batch, H, W, 3]`, scales them itself and returns
    `probabilities: float32 [batch, classes]` (softmax of the chosen head; the
    other heads are not in the graph). `labels.txt` (one class name per line, in
    output order) is written beside `saved_model.pb`.

    The export is atomic: it is built in a temporary folder next to `directory`
    and renamed into place, so `directory` never holds a half-written export.

    Args:
        model: A Keras GoogLeNet (three-head or single-head) with a static
            input size, TensorFlow backend.
        directory: Destination folder.
        labels: Class names in output order, or None (labels `"0"`, `"1"`, ...).
        head: `"main"` (default), `"aux1"` or `"aux2"` (early-exit network).
        overwrite: Replace an existing non-empty `directory`.

    Returns:
        The absolute path of `directory`.

    Raises:
        ValueError: If the model has no such head or cannot be exported.
        ExportError: If `directory` holds something and `overwrite` is False, or
            the labels do not match the model.
    """
    if head not in HEADS:
        raise ValueError(f"`head` must be one of {list(HEADS)}. Received: head={head!r}")
    deployment_model(model, head)  # validate before touching the disk
    labels = resolve_labels(labels, _num_classes(model, head))
    directory = os.path.abspath(os.fspath(directory))
    with atomic_directory(directory, overwrite) as tmp:
        _write_saved_model(model, tmp, head)
        write_labels(tmp, labels)
    return directory


# ---------------------------------------------------------------------------
# TFLite conversion
# ---------------------------------------------------------------------------


def convert_saved_model(saved_model_dir, fmt, calibration_images=None):
    """Converts a batch-1 serving SavedModel to TFLite and returns the flatbuffer.

    Args:
        saved_model_dir: A SavedModel whose `serving_default` takes
            `image: uint8 [1, H, W, 3]` (see `convert_model`).
        fmt: `"float32"`, `"float16"` (float16 weights), `"dynamic"` (int8
            weights, float activations) or `"int8"` (full integer: int8 weights
            and activations, uint8 output; calibrated on `calibration_images`).
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

        def representative_dataset():
            for image in images:
                yield {INPUT_NAME: image[None]}

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    try:
        with warnings.catch_warnings():
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
            f"TFLite {fmt} conversion with builtin ops only failed: {_one_line(e)}"
        ) from e
    check_builtin_ops(flatbuffer)
    return flatbuffer


def convert_model(model, fmt, *, head="main", calibration_images=None):
    """Converts one head of a Keras GoogLeNet to a batch-1 TFLite flatbuffer.

    Convenience wrapper around `convert_saved_model` (writes a temporary batch-1
    SavedModel first). Input `image: uint8 [1, H, W, 3]` (raw RGB), output
    `probabilities: [1, classes]`.
    """
    deployment_model(model, head)
    with tempfile.TemporaryDirectory(prefix="googlenet_batch1_") as tmp:
        _write_saved_model(model, tmp, head, batch_size=1)
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


# ---------------------------------------------------------------------------
# Running the artifacts
# ---------------------------------------------------------------------------


class LiteRTClassifier:
    """Batch-1 inference with the LiteRT interpreter (`ai_edge_litert`).

    Feeds raw RGB uint8 images and returns float32 probabilities, dequantizing
    the uint8 output of an int8 model.
    """

    def __init__(self, model, num_threads=1):
        from ai_edge_litert.interpreter import Interpreter

        kwargs = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {
            "model_path": os.fspath(model)
        }
        self.num_threads = num_threads
        self.interpreter = Interpreter(num_threads=num_threads, **kwargs)
        self.interpreter.allocate_tensors()
        (self.input,) = self.interpreter.get_input_details()
        (self.output,) = self.interpreter.get_output_details()

    def _feed(self, image):
        x = np.asarray(image)[None]
        scale, zero_point = self.input["quantization"]
        if scale:  # a quantized input: map pixels to its integer grid
            x = np.round(x.astype(np.float32) / scale + zero_point)
            info = np.iinfo(self.input["dtype"])
            x = np.clip(x, info.min, info.max)
        self.interpreter.set_tensor(self.input["index"], x.astype(self.input["dtype"]))

    def _fetch(self):
        y = self.interpreter.get_tensor(self.output["index"])[0]
        scale, zero_point = self.output["quantization"]
        if scale:
            return (y.astype(np.float32) - zero_point) * scale
        return y.astype(np.float32)

    def predict(self, images):
        """Probabilities `[N, classes]` for uint8 images `[N, H, W, 3]`, one at a time."""
        out = []
        for image in images:
            self._feed(image)
            self.interpreter.invoke()
            out.append(self._fetch())
        return np.stack(out) if out else np.zeros((0, self.output["shape"][-1]), np.float32)

    def latency_ms(self, image, repeats=50, warmup=5):
        """Median wall time of one `invoke()` on `image`, in milliseconds."""
        self._feed(image)
        for _ in range(warmup):
            self.interpreter.invoke()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            self.interpreter.invoke()
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)


def keras_probabilities(model, images, *, head="main", batch_size=128):
    """Reference probabilities of one head of the Keras model for uint8 images."""
    import tensorflow as tf

    serve, _ = serving_function(model, head)
    fn = tf.function(serve)
    out = [
        fn(tf.constant(images[i : i + batch_size]))[OUTPUT_NAME].numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, _num_classes(model, head)), np.float32)


def saved_model_probabilities(directory, images, batch_size=128, *, signature=None):
    """Runs `serving_default` of a SavedModel on uint8 images; returns probabilities."""
    import tensorflow as tf

    if signature is None:
        signature = tf.saved_model.load(os.fspath(directory)).signatures["serving_default"]
    out = [
        signature(**{INPUT_NAME: tf.constant(images[i : i + batch_size])})[OUTPUT_NAME].numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out)


def _saved_model_latency_ms(signature, image, repeats, warmup=3):
    import tensorflow as tf

    x = tf.constant(image[None])
    for _ in range(warmup):
        signature(**{INPUT_NAME: x})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        signature(**{INPUT_NAME: x})[OUTPUT_NAME].numpy()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


# ---------------------------------------------------------------------------
# Models and data
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Source:
    """What `load_source` found: the model and, for a run folder, its context."""

    path: str
    model: object
    labels: list = None
    run_dir: str = None
    run_config: dict = None


def _one_line(error):
    text = " ".join(str(error).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def load_source(path):
    """Loads a `.keras` file or a run folder (`model.keras`, `labels.txt`, `config.json`).

    Raises:
        ExportError: If the file or folder is missing or the model cannot be read.
    """
    path = os.fspath(path)
    run_dir = run_config = labels = None
    if os.path.isdir(path):
        run_dir = path
        model_path = os.path.join(path, RUN_MODEL_FILE)
        if not os.path.isfile(model_path):
            raise ExportError(f"Run folder {path!r} has no {RUN_MODEL_FILE}.")
        config_path = os.path.join(path, RUN_CONFIG_FILE)
        if os.path.isfile(config_path):
            try:
                with open(config_path, encoding="utf-8") as f:
                    run_config = json.load(f)
            except (OSError, ValueError) as e:
                raise ExportError(f"Could not read {config_path!r}: {_one_line(e)}") from e
        labels_path = os.path.join(path, LABELS_FILE)
        if os.path.isfile(labels_path):
            labels = read_labels(labels_path)
    elif os.path.exists(path):
        model_path = path
    else:
        raise ExportError(f"Model not found: {path!r} (expected a .keras file or a run folder).")
    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as e:  # Keras raises many types for unreadable files.
        raise ExportError(f"Could not load model {model_path!r}: {_one_line(e)}") from e
    if not isinstance(model, keras.Model) or not model.inputs:
        raise ExportError(f"{model_path!r} does not hold a functional Keras model.")
    return Source(path=path, model=model, labels=labels, run_dir=run_dir, run_config=run_config)


def list_images(directory):
    """Sorted paths of the image files under `directory` (recursively)."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        found.extend(
            os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)
        )
    return found


def _resolve_image_dir(path):
    """A folder of images, or an archive turned into one by `training.data.resolve_data_dir`."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return path
    if not os.path.exists(path):
        raise ExportError(f"Image folder not found: {path!r}.")
    try:
        from training.data import resolve_data_dir
    except ImportError as e:
        raise ExportError(
            f"{path!r} is not a folder (archives need the training package): {_one_line(e)}"
        ) from e
    try:
        return os.fspath(resolve_data_dir(path))
    except Exception as e:
        raise ExportError(f"Could not open image archive {path!r}: {_one_line(e)}") from e


def load_image_folder(path, size, *, limit=None, seed=0, labels=None):
    """Reads up to `limit` images (a seeded random subset) from a folder tree.

    Images are converted to RGB and resized (bilinear) to `size = (H, W)` when
    they differ. When `labels` is given and every image's parent folder is named
    after a label (`<root>/.../<class>/<file>`), integer labels are returned too.

    Returns:
        `(images uint8 [N, H, W, 3], labels int [N] or None)`.
    """
    from PIL import Image

    directory = _resolve_image_dir(path)
    files = list_images(directory)
    if not files:
        raise ExportError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found under {path!r}.")
    if limit is not None and len(files) > limit:
        picked = np.random.default_rng(seed).choice(len(files), size=limit, replace=False)
        files = [files[i] for i in sorted(picked)]
    h, w = size
    images = np.empty((len(files), h, w, 3), np.uint8)
    for i, file in enumerate(files):
        try:
            with Image.open(file) as im:
                im = im.convert("RGB")
                if im.size != (w, h):
                    im = im.resize((w, h), Image.BILINEAR)
                images[i] = np.asarray(im)
        except Exception as e:
            raise ExportError(f"Could not read image {file!r}: {_one_line(e)}") from e
    y = None
    if labels is not None:
        index = {label: i for i, label in enumerate(labels)}
        parents = [os.path.basename(os.path.dirname(f)) for f in files]
        if all(p in index for p in parents):
            y = np.array([index[p] for p in parents], np.int64)
    return images, y


def _subset(x, y, limit, seed):
    if limit is None or len(x) <= limit:
        return x, y
    picked = np.sort(np.random.default_rng(seed).choice(len(x), size=limit, replace=False))
    return x[picked], None if y is None else y[picked]


def run_data(run_dir, run_config):
    """The run's `(x_train, y_train, x_val, y_val, class_names)` via `training.data`."""
    try:
        from training import config as training_config
        from training import data as training_data
    except ImportError as e:
        raise ExportError(
            f"Reading run folder {run_dir!r}'s data needs the training package: {_one_line(e)}"
        ) from e
    if run_config is None:
        raise ExportError(f"Run folder {run_dir!r} has no {RUN_CONFIG_FILE}.")
    try:
        cls = training_config.TrainConfig
        names = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in run_config.items() if k in names})
        return training_data.load_arrays(config)
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(
            f"Could not load run folder {run_dir!r}'s data ({_one_line(e)}); "
            "pass --calibration-data DIR."
        ) from e


# ---------------------------------------------------------------------------
# Export with checks and report
# ---------------------------------------------------------------------------


def _dir_size(path):
    return sum(
        os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files
    )


def _parse_formats(formats):
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(
            f"Unknown format(s) {unknown or formats}; choose from {', '.join(FORMATS)}."
        )
    return [f for f in FORMATS if f in formats]


def _environment():
    import tensorflow as tf

    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:  # pragma: no cover - metadata missing
        litert = "unknown"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "ai_edge_litert": litert,
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
    }


def _compare(probs, reference, y):
    top = probs.argmax(-1)
    result = {
        "top1_agreement": float(np.mean(top == reference.argmax(-1))),
        "max_abs_prob_diff": float(np.abs(probs - reference).max()),
    }
    if y is not None:
        result["accuracy"] = float(np.mean(top == y))
    return result


def _io_contract(classifier):
    def describe(d):
        scale, zero_point = d["quantization"]
        return {
            "name": d["name"],
            "shape": [int(v) for v in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name,
            "quantization": {"scale": float(scale), "zero_point": int(zero_point)}
            if scale
            else None,
        }

    runner = classifier.interpreter.get_signature_runner("serving_default")
    return {
        "input": describe(classifier.input),
        "output": describe(classifier.output),
        "signature": {
            "key": "serving_default",
            "inputs": list(runner.get_input_details()),
            "outputs": list(runner.get_output_details()),
        },
    }


def _targets(artifacts, labelled):
    by = {a["format"]: a for a in artifacts}
    targets = {}
    for fmt in ("float32", "float16"):
        if fmt in by:
            targets[f"{fmt}_top1_agreement>=0.995"] = by[fmt]["top1_agreement"] >= 0.995
    if "int8" in by and "float32" in by:
        i8, f32 = by["int8"], by["float32"]
        if labelled:
            targets["int8_accuracy_loss<=1.0pt"] = (
                100 * (f32["accuracy"] - i8["accuracy"]) <= 1.0
            )
        targets["int8_size<=30%_of_float32"] = i8["size_bytes"] <= 0.30 * f32["size_bytes"]
        targets["int8_faster_than_float32"] = i8["latency_ms"] < f32["latency_ms"]
    return targets


def export(
    model_path,
    name,
    *,
    export_dir="saved_models",
    formats=FORMATS,
    calibration_data=None,
    eval_data=None,
    head="main",
    overwrite=False,
    calibration_samples=256,
    eval_samples=1000,
    threads=1,
    repeats=50,
    seed=0,
    log=print,
    command=None,
):
    """Exports `model_path` (a `.keras` file or run folder) to `export_dir/name/`.

    Writes the requested `formats` (see `FORMATS`), `labels.txt` and
    `export_report.json`, after running every artifact on a sample of images and
    comparing it with the Keras model. See the module docstring for the files.

    Calibration images (for `int8`) come from `calibration_data` (an image
    folder or archive) or, for a run folder, from the run's own training split.
    The evaluation sample is, in order of preference: `eval_data` (a folder with
    one sub-folder per class), the run's held-out validation split, the
    calibration images (not held out), or random images (agreement only).

    `command` (the command line, if any) is recorded in the report.

    Returns:
        The report (also written to `export_report.json`), a dict.

    Raises:
        ExportError: For any problem with the inputs (missing or unreadable
            model, no `head` output, int8 without calibration images, existing
            export without `overwrite`, a model needing non-builtin ops).
    """
    formats = _parse_formats(formats)
    if head not in HEADS:
        raise ExportError(f"--head must be one of {', '.join(HEADS)}; got {head!r}.")
    if not name or os.sep in name or name in (".", ".."):
        raise ExportError(f"--name must be a plain folder name; got {name!r}.")
    destination = os.path.abspath(os.path.join(os.fspath(export_dir), name))
    check_destination(destination, overwrite)

    source = load_source(model_path)
    model = source.model
    try:
        deploy, _ = deployment_model(model, head)
        hw = _input_hw(deploy)
    except ValueError as e:
        raise ExportError(f"Cannot export {source.path!r}: {_one_line(e)}") from e
    classes = _num_classes(model, head)
    labels = resolve_labels(source.labels, classes)

    # ---- images: calibration and evaluation sample ------------------------
    run_arrays = None

    def get_run_arrays():
        nonlocal run_arrays
        if run_arrays is None:
            log(f"Loading run data ({source.run_config.get('data', '?')}) ...")
            run_arrays = run_data(source.run_dir, source.run_config)
            x_train = run_arrays[0]
            if tuple(x_train.shape[1:3]) != hw:
                raise ExportError(
                    f"The run's images are {tuple(x_train.shape[1:3])}, the model takes {hw}."
                )
        return run_arrays

    calibration, calibration_source = None, None
    if "int8" in formats:
        if calibration_data is not None:
            calibration, _ = load_image_folder(
                calibration_data, hw, limit=calibration_samples, seed=seed
            )
            calibration_source = os.fspath(calibration_data)
        elif source.run_dir is not None and source.run_config is not None:
            x_train = get_run_arrays()[0]
            calibration, _ = _subset(x_train, None, calibration_samples, seed)
            calibration_source = f"training split of run {source.run_dir}"
        if calibration is None or len(calibration) == 0:
            raise ExportError(
                "int8 export needs calibration images: pass --calibration-data DIR "
                "(a folder of training images) or export a run folder."
            )

    sample = sample_y = sample_source = None
    if eval_data is not None:
        sample, sample_y = load_image_folder(
            eval_data, hw, limit=eval_samples, seed=seed + 1, labels=labels
        )
        sample_source = os.fspath(eval_data)
    elif source.run_dir is not None and source.run_config is not None:
        try:
            _, _, x_val, y_val, class_names = get_run_arrays()
        except ExportError as e:
            log(f"warning: no held-out sample from the run ({e})")
            x_val = []
        if len(x_val):
            if source.labels is None and len(class_names) == classes:
                labels = [str(c) for c in class_names]
            if list(class_names) != labels:
                raise ExportError(
                    f"The run's class names {list(class_names)} differ from its labels.txt."
                )
            sample, sample_y = _subset(x_val, np.asarray(y_val), eval_samples, seed + 1)
            sample_source = f"held-out validation split of run {source.run_dir}"
    if sample is None and calibration is not None:
        sample, sample_y = _subset(calibration, None, eval_samples, seed + 1)
        sample_source = "calibration images (not held out; no labels)"
    if sample is None:
        rng = np.random.default_rng(seed)
        sample = rng.integers(0, 256, (min(eval_samples, 64), *hw, 3), dtype=np.uint8)
        sample_y = None
        sample_source = "random uint8 images (no images given; agreement only)"
    sample = np.ascontiguousarray(sample)

    # ---- write, check, report ---------------------------------------------
    log(f"Exporting {source.path} (head {head!r}, {hw[0]}x{hw[1]}, {classes} classes) "
        f"to {destination}")
    reference = keras_probabilities(model, sample, head=head)
    artifacts = []
    with atomic_directory(destination, overwrite) as tmp:
        write_labels(tmp, labels)
        if "saved_model" in formats:
            _write_saved_model(model, tmp, head)
            import tensorflow as tf

            signature = tf.saved_model.load(tmp).signatures["serving_default"]
            probs = saved_model_probabilities(tmp, sample, signature=signature)
            artifacts.append(
                {
                    "format": "saved_model",
                    "file": "saved_model.pb, variables/",
                    "size_bytes": _dir_size(tmp)
                    - os.path.getsize(os.path.join(tmp, LABELS_FILE)),
                    "runtime": "TensorFlow (tf.saved_model.load, serving_default)",
                    "latency_ms": _saved_model_latency_ms(
                        signature, sample[0], max(5, repeats // 5)
                    ),
                    **_compare(probs, reference, sample_y),
                }
            )
        tflite = [f for f in formats if f in TFLITE_FORMATS]
        if tflite:
            with tempfile.TemporaryDirectory(prefix="googlenet_batch1_") as batch1:
                _write_saved_model(model, batch1, head, batch_size=1)
                for fmt in tflite:
                    log(f"Converting {fmt} ...")
                    flatbuffer = convert_saved_model(batch1, fmt, calibration)
                    file = tflite_filename(fmt)
                    with open(os.path.join(tmp, file), "wb") as f:
                        f.write(flatbuffer)
                    runner = LiteRTClassifier(os.path.join(tmp, file), num_threads=threads)
                    probs = runner.predict(sample)
                    artifacts.append(
                        {
                            "format": fmt,
                            "file": file,
                            "size_bytes": len(flatbuffer),
                            "runtime": f"LiteRT Interpreter (XNNPACK), num_threads={threads}",
                            "latency_ms": runner.latency_ms(sample[0], repeats=repeats),
                            **_compare(probs, reference, sample_y),
                            **_io_contract(runner),
                            "ops": tflite_ops(flatbuffer),
                        }
                    )
        float32 = next((a for a in artifacts if a["format"] == "float32"), None)
        for a in artifacts:
            if float32 is not None and a["format"] != "saved_model":
                a["size_vs_float32"] = a["size_bytes"] / float32["size_bytes"]
                a["speedup_vs_float32"] = float32["latency_ms"] / a["latency_ms"]
        keras_row = {"top1_agreement": 1.0}
        if sample_y is not None:
            keras_row["accuracy"] = float(np.mean(reference.argmax(-1) == sample_y))
        report = {
            "name": name,
            "command": command,
            "model": os.path.abspath(source.path),
            "head": head,
            "input": {
                "name": INPUT_NAME,
                "shape": [1, hw[0], hw[1], 3],
                "dtype": "uint8",
                "meaning": "raw RGB pixels 0-255; the model scales them itself",
            },
            "output": {
                "name": OUTPUT_NAME,
                "shape": [1, classes],
                "meaning": "softmax probabilities in labels.txt order (uint8, scale 1/256, "
                "for int8)",
            },
            "classes": classes,
            "labels": LABELS_FILE,
            "flops": count_flops(deploy),
            "flops_main": count_flops(inference_model(model, "main"))
            if "main" in model.output_names
            else None,
            "params": int(deploy.count_params()),
            "calibration": None
            if calibration is None
            else {"source": calibration_source, "images": int(len(calibration)), "seed": seed},
            "sample": {
                "source": sample_source,
                "images": int(len(sample)),
                "labelled": sample_y is not None,
                "seed": seed + 1,
            },
            "latency": {
                "batch": 1,
                "threads": threads,
                "repeats": repeats,
                "statistic": "median of single invoke() wall times after warm-up",
            },
            "keras": keras_row,
            "artifacts": artifacts,
            "targets": _targets(artifacts, sample_y is not None),
            "metadata": {"embedded": False, "note": METADATA_NOTE},
            "environment": _environment(),
        }
        with open(os.path.join(tmp, REPORT_FILE), "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return report


def format_report(report):
    """The report as a markdown table (one row per artifact)."""
    has_acc = report["sample"]["labelled"]
    lines = [
        f"Export {report['name']!r}: head {report['head']}, input uint8 "
        f"{report['input']['shape']}, {report['classes']} classes, "
        f"{report['flops'] / 1e6:.1f}M multiply-adds; sample: {report['sample']['images']} "
        f"{report['sample']['source']}; latency: batch 1, {report['latency']['threads']} "
        f"thread(s), median of {report['latency']['repeats']}.",
        "",
        "| artifact | size | vs float32 | latency (ms) | top-1 agreement | max abs prob diff"
        + (" | accuracy |" if has_acc else " |"),
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if has_acc else ""),
    ]
    if has_acc:
        lines.append(
            f"| Keras (reference) | | | | 100.00% | 0 | {100 * report['keras']['accuracy']:.2f}% |"
        )
    for a in report["artifacts"]:
        name = "SavedModel (TF)" if a["format"] == "saved_model" else a["file"]
        ratio = f"{100 * a['size_vs_float32']:.0f}%" if "size_vs_float32" in a else ""
        row = (
            f"| {name} | {a['size_bytes'] / 1e6:.2f} MB | {ratio} | {a['latency_ms']:.2f} | "
            f"{100 * a['top1_agreement']:.2f}% | {a['max_abs_prob_diff']:.4f} |"
        )
        if has_acc:
            row += f" {100 * a['accuracy']:.2f}% |"
        lines.append(row)
    if report["targets"]:
        lines.append("")
        lines.append(
            "Targets: "
            + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in report["targets"].items())
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m keras_googlenet.export",
        description="Export a trained GoogLeNet to SavedModel and TFLite, check every "
        "artifact against the Keras model and report size, latency and agreement.",
    )
    parser.add_argument("model", metavar="MODEL", help="a .keras file or a training run folder")
    out = parser.add_argument_group("output")
    out.add_argument("--name", required=True, help="export folder name under --export-dir")
    out.add_argument("--export-dir", default="saved_models", help="default: %(default)s")
    out.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help="comma-separated subset of %(default)s (default: all)",
    )
    out.add_argument("--overwrite", action="store_true", help="replace an existing export")
    net = parser.add_argument_group("network")
    net.add_argument(
        "--head",
        choices=HEADS,
        default="main",
        help="which classifier to deploy; aux1/aux2 export the cheaper early-exit network",
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--calibration-data",
        metavar="DIR",
        help="image folder (or archive) for int8 calibration; default: a run folder's "
        "training split",
    )
    data.add_argument(
        "--eval-data",
        metavar="DIR",
        help="image folder with one sub-folder per class for the held-out check; default: a "
        "run folder's validation split",
    )
    data.add_argument("--calibration-samples", type=int, default=256, metavar="N")
    data.add_argument("--eval-samples", type=int, default=1000, metavar="N")
    data.add_argument("--seed", type=int, default=0)
    bench = parser.add_argument_group("benchmark")
    bench.add_argument("--threads", type=int, default=1, help="LiteRT threads (default 1)")
    bench.add_argument("--repeats", type=int, default=50, help="timed runs per artifact")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    for flag in ("calibration_samples", "eval_samples", "threads", "repeats"):
        if getattr(args, flag) < 1:
            print(f"error: --{flag.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    try:
        report = export(
            args.model,
            args.name,
            export_dir=args.export_dir,
            formats=args.formats,
            calibration_data=args.calibration_data,
            eval_data=args.eval_data,
            head=args.head,
            overwrite=args.overwrite,
            calibration_samples=args.calibration_samples,
            eval_samples=args.eval_samples,
            threads=args.threads,
            repeats=args.repeats,
            seed=args.seed,
            log=lambda msg: print(msg, file=sys.stderr),
            command=shlex.join(["python", "-m", "keras_googlenet.export", *argv]),
        )
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_report(report))
    print(f"\nWrote {os.path.join(args.export_dir, args.name)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
