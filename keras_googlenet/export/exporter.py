"""`export`: every format of one head of a model, each checked against Keras, and a report.

The inputs are a Keras model and images given as arrays or image folders
(read with `keras_googlenet._internal.images`); where the images come from (a training
run, a dataset) is the caller's business. `python -m training.export` is the
command-line front end that reads a training run folder.
"""

import functools
import numbers
import os
import shutil

import keras
import numpy as np

from keras_googlenet.architecture import HEADS, MAIN_HEAD
from keras_googlenet.config import MODEL_CONFIG_FILE
from keras_googlenet.export.errors import ExportError, check_export_destination
from keras_googlenet.export.errors import export_directory, one_line
from keras_googlenet.export.labels import LABELS_FILE, resolve_labels, write_labels
from keras_googlenet.export.labels import check_model_config, write_model_config
from keras_googlenet.export.litert import LiteRTClassifier
from keras_googlenet.export.metadata import embed_metadata, model_metadata, resolve_metadata
from keras_googlenet.export.analysis import gpu_compatibility, gpu_line, integer_only
from keras_googlenet.export.chart import write_report_chart
from keras_googlenet.export.report import NO_METADATA_NOTE, REPORT_FILE, metadata_summary
from keras_googlenet.export.report import add_float32_ratios, compare, environment, targets
from keras_googlenet.export.saved_model import load_signature, saved_model_latency_ms
from keras_googlenet.export.saved_model import saved_model_probabilities, write_saved_model
from keras_googlenet.export.serving import INPUT_NAME, OUTPUT_NAME, deployment_model
from keras_googlenet.export.serving import input_size, keras_probabilities, num_classes
from keras_googlenet.export.tflite import FORMATS, TFLITE_FORMATS, convert_saved_model
from keras_googlenet.export.tflite import parse_formats, tflite_filename, tflite_ops
from keras_googlenet._internal.fileio import atomic_write_bytes, atomic_write_json
from keras_googlenet._internal.fileio import temporary_directory_sibling
from keras_googlenet._internal.images import ImageError, load_image_folder
from keras_googlenet.utils import count_flops, float32_model, inference_model


def check_exportable(model, head=MAIN_HEAD, source=None):
    """Returns `(deploy_model, (H, W))` of `head`, or raises ExportError saying why not.

    Args:
        model: The Keras model.
        head: The head to deploy.
        source: What to call the model in the message (default: its name).
    """
    if head not in HEADS:
        raise ExportError(f"head must be one of {', '.join(HEADS)}; got {head!r}.")
    try:
        deploy, _ = deployment_model(model, head)
        return deploy, input_size(deploy)
    except ValueError as e:
        raise ExportError(f"Cannot export {source or model.name!r}: {one_line(e)}") from e


def subset(x, y, limit, seed):
    """At most `limit` rows of `x` (and `y`), a seeded random subset in original order."""
    if limit is None or len(x) <= limit:
        return x, y
    picked = np.sort(np.random.default_rng(seed).choice(len(x), size=limit, replace=False))
    return x[picked], None if y is None else y[picked]


def _read_folder(path, hw, *, limit, seed, labels=None):
    try:
        return load_image_folder(path, hw, limit=limit, seed=seed, labels=labels)
    except ImageError as e:
        raise ExportError(str(e)) from e


def _check_images(images, hw, what):
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != (*hw, 3):
        raise ExportError(
            f"{what} must be uint8 [N, {hw[0]}, {hw[1]}, 3] for this model; got "
            f"{images.dtype} {list(images.shape)}."
        )
    return images


def _dir_size(path):
    return sum(
        os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files
    )


def _saved_model_row(model, tmp, head, sample, reference, sample_y, repeats):
    write_saved_model(model, tmp, head)
    signature = load_signature(tmp)
    probs = saved_model_probabilities(tmp, sample, signature=signature)
    return {
        "format": "saved_model",
        "file": "saved_model.pb, variables/",
        "size_bytes": _dir_size(tmp) - os.path.getsize(os.path.join(tmp, LABELS_FILE)),
        "runtime": "TensorFlow (tf.saved_model.load, serving_default)",
        "latency_ms": saved_model_latency_ms(signature, sample[0], max(5, repeats // 5)),
        **compare(probs, reference, sample_y),
    }


def _default_metadata(directory, head, hw, classes):
    from keras_googlenet import __version__

    return {
        "name": os.path.basename(directory),
        "description": f"GoogLeNet (Inception v1) image classifier: {classes} classes, "
        f"{hw[0]}x{hw[1]} RGB input, head {head!r}; exported by keras-googlenet {__version__}.",
        "version": None,
        "author": "keras-googlenet",
        "license": "Apache-2.0",
    }


def _tflite_rows(model, tmp, head, fmts, calibration, sample, reference, sample_y, *, threads,
                 repeats, log, directory, embed):
    converted = []
    # The batch-1 SavedModel the converter reads: beside the export, not in the
    # system temp folder, so that a kill leaves it where the next export of
    # `directory` deletes it (keras_googlenet._internal.fileio.remove_stale_siblings).
    # One per input type: int8 converts from the same graph with a float32 input.
    batch1 = {}
    try:
        for fmt in fmts:
            log(f"Converting {fmt} ...")
            float_input = fmt == "int8"
            if float_input not in batch1:
                batch1[float_input] = temporary_directory_sibling(directory, "batch1_")
                write_saved_model(model, batch1[float_input], head, batch_size=1,
                                  float_input=float_input)
            flatbuffer = convert_saved_model(batch1[float_input], fmt, calibration)
            file = tflite_filename(fmt)
            data = flatbuffer if embed is None else embed(flatbuffer)
            atomic_write_bytes(os.path.join(tmp, file), data)
            converted.append((fmt, file, flatbuffer, data))
    finally:
        for path in batch1.values():
            shutil.rmtree(path, ignore_errors=True)
    # Every conversion before the first LiteRT interpreter: int8 calibration runs
    # TensorFlow's own TFLite interpreter, and running it while ai_edge_litert
    # interpreters were alive crashed a process in CI ("double free or corruption").
    rows = []
    for fmt, file, flatbuffer, data in converted:
        runner = LiteRTClassifier(os.path.join(tmp, file), num_threads=threads)
        gpu = gpu_compatibility(os.path.join(tmp, file))
        log(gpu_line(file, gpu))
        rows.append({
            "format": fmt,
            "file": file,
            "size_bytes": len(data),
            "metadata_bytes": len(data) - len(flatbuffer),
            "runtime": f"LiteRT Interpreter (XNNPACK), num_threads={threads}",
            "latency_ms": runner.latency_ms(sample[0], repeats=repeats),
            **compare(runner.predict(sample), reference, sample_y),
            **runner.io_contract(),
            "ops": tflite_ops(flatbuffer),
            "gpu_delegate": gpu,
            "integer": integer_only(flatbuffer),
        })
    return rows


def export(model, directory, *, formats=FORMATS, labels=None, config=None, head=MAIN_HEAD,
           metadata=True, overwrite=False, calibration_images=None, calibration_data=None, eval_images=None,
           eval_labels=None, eval_data=None, calibration_samples=256, eval_samples=1000,
           threads=1, repeats=50, seed=0, log=print, command=None, source=None,
           calibration_source=None, eval_source=None):
    """Exports one head of `model` to `directory` and checks every artifact against Keras.

    Writes the requested `formats` (see `FORMATS`: the SavedModel and the
    float32, float16, dynamic and int8 TFLite files, each with TFLite metadata
    and the labels embedded, see `keras_googlenet.export.metadata`), `labels.txt`,
    `model_config.json` and `model.weights.h5` (when `config` is given, for
    `keras_googlenet.load_model_folder`), `export_report.json` and
    its chart `export_report.png` (`keras_googlenet.export.chart`), after
    running every artifact on a sample of images and comparing it with the
    Keras model. The folder appears complete or not at all, with the
    user's default permissions.

    Calibration images (for `int8`) are `calibration_data` (an image folder) or
    else `calibration_images`. The evaluation sample is, in order of
    preference: `eval_data` (a folder with one sub-folder per class, named as
    in `labels`), `eval_images` (with `eval_labels`, if any), the calibration
    images (not held out), or random images (agreement only).

    Args:
        model: A Keras GoogLeNet with a static input size (TensorFlow backend).
        directory: The export folder.
        formats: Formats to write, a list or a comma-separated string.
        labels: Class names in output order, None (`"0"`, `"1"`, ...), or
            `"imagenet"` (the 1000 ImageNet names, for `weights="imagenet"`).
        config: The model's `GoogLeNetConfig`, or None.
        head: `"main"`, `"aux1"` or `"aux2"`.
        metadata: Embed TFLite metadata (what MediaPipe Tasks and Android
            Studio read) in every `.tflite` file: True (default fields), False
            (plain files, labels only in `labels.txt`), or a dict overriding
            `name`, `description`, `version`, `author`, `license`.
        overwrite: Replace an existing non-empty `directory`.
        calibration_images, eval_images: uint8 arrays `[N, H, W, 3]`.
        calibration_data, eval_data: Image folders.
        eval_labels: Integer labels of `eval_images`, or None.
        calibration_samples, eval_samples: At most this many images (seeded subsets).
        threads, repeats: LiteRT threads, and timed runs per artifact.
        seed: Seed of the subsets (`seed + 1` for the evaluation sample).
        log: Called with progress messages.
        command, source, calibration_source, eval_source: Recorded in the report
            (the command line, the model's file, where the images came from).

    Returns:
        The report (also written to `export_report.json`), a dict.

    Raises:
        ExportError: For any problem with the inputs (no `head` output, int8
            without calibration images, unreadable images, labels or `config`
            that do not fit, bad `metadata` fields, an existing export without
            `overwrite`, a model needing non-builtin ops).
    """
    formats = parse_formats(formats)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ExportError(f"seed must be an integer >= 0; got {seed!r}.")
    directory = os.path.abspath(os.fspath(directory))
    check_export_destination(directory, overwrite)
    if isinstance(model, keras.Model):  # not: check_exportable says what is wrong with it
        # The float32 copy once, before anything derives from it, so that the checks
        # and every artifact reuse it instead of copying a bf16 model again each.
        model = float32_model(model)
    deploy, hw = check_exportable(model, head, source)
    classes = num_classes(model, head)
    labels = resolve_labels(labels, classes)
    if config is not None:
        check_model_config(config, model)
    fields = resolve_metadata(metadata, _default_metadata(directory, head, hw, classes))
    embed = None
    if fields is not None:
        meta = model_metadata(**fields, input_name=INPUT_NAME, input_size=hw,
                              output_name=OUTPUT_NAME, labels_name=LABELS_FILE)
        files = {LABELS_FILE: "".join(f"{label}\n" for label in labels).encode("utf-8")}
        embed = functools.partial(embed_metadata, metadata=meta, files=files)

    calibration = None
    if "int8" in formats:
        if calibration_data is not None:
            calibration, _ = _read_folder(calibration_data, hw, limit=calibration_samples,
                                          seed=seed)
            calibration_source = os.fspath(calibration_data)
        elif calibration_images is not None:
            calibration = _check_images(calibration_images, hw, "calibration_images")
            calibration, _ = subset(calibration, None, calibration_samples, seed)
            calibration_source = calibration_source or "calibration_images"
        if calibration is None or len(calibration) == 0:
            raise ExportError(
                "int8 export needs calibration images: pass --calibration-data DIR "
                "(a folder of training images) or export a run folder."
            )

    sample = sample_y = None
    if eval_data is not None:
        sample, sample_y = _read_folder(eval_data, hw, limit=eval_samples, seed=seed + 1,
                                        labels=labels)
        eval_source = os.fspath(eval_data)
    elif eval_images is not None and len(eval_images):
        y = None if eval_labels is None else np.asarray(eval_labels)
        sample = _check_images(eval_images, hw, "eval_images")
        sample, sample_y = subset(sample, y, eval_samples, seed + 1)
        eval_source = eval_source or "eval_images"
    if sample is None and calibration is not None:
        sample, sample_y = subset(calibration, None, eval_samples, seed + 1)
        eval_source = "calibration images (not held out; no labels)"
    if sample is None:
        rng = np.random.default_rng(seed)
        sample = rng.integers(0, 256, (min(eval_samples, 64), *hw, 3), dtype=np.uint8)
        eval_source = "random uint8 images (no images given; agreement only)"
    sample = np.ascontiguousarray(sample)

    if fields is None and any(f in TFLITE_FORMATS for f in formats):
        log(NO_METADATA_NOTE)
    log(f"Exporting {source or model.name} (head {head!r}, {hw[0]}x{hw[1]}, {classes} classes) "
        f"to {directory}")
    reference = keras_probabilities(model, sample, head=head)
    artifacts = []
    with export_directory(directory, overwrite) as tmp:
        write_labels(tmp, labels)
        if "saved_model" in formats:
            artifacts.append(_saved_model_row(model, tmp, head, sample, reference, sample_y,
                                              repeats))
        fmts = [f for f in formats if f in TFLITE_FORMATS]
        if fmts:
            artifacts += _tflite_rows(model, tmp, head, fmts, calibration, sample, reference,
                                      sample_y, threads=threads, repeats=repeats, log=log,
                                      directory=directory, embed=embed)
        add_float32_ratios(artifacts)
        if config is not None:
            write_model_config(tmp, config, model)
        keras_row = {"top1_agreement": 1.0}
        if sample_y is not None:
            keras_row["accuracy"] = float(np.mean(reference.argmax(-1) == sample_y))
        report = {
            "name": os.path.basename(directory),
            "command": command,
            "model": None if source is None else os.path.abspath(os.fspath(source)),
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
            "model_config": None if config is None else MODEL_CONFIG_FILE,
            "flops": count_flops(deploy),
            "flops_main": count_flops(inference_model(model, MAIN_HEAD))
            if MAIN_HEAD in model.output_names
            else None,
            "params": int(deploy.count_params()),
            "calibration": None
            if calibration is None
            else {"source": calibration_source, "images": int(len(calibration)), "seed": seed},
            "sample": {
                "source": eval_source,
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
            "targets": targets(artifacts, sample_y is not None),
            "metadata": metadata_summary(fields),
            "environment": environment(),
        }
        atomic_write_json(os.path.join(tmp, REPORT_FILE), report)
        # A picture of the report; a failure to draw it is logged, not fatal.
        write_report_chart(tmp, report, log=log)
    return report
