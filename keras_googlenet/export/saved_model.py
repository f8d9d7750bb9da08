"""The SavedModel format: writing the serving SavedModel, running it and timing it."""

import os
import statistics
import time

import keras
import numpy as np

from keras_googlenet.architecture import HEADS, MAIN_HEAD
from keras_googlenet.export.errors import export_directory
from keras_googlenet.export.labels import (
    check_model_config,
    resolve_labels,
    write_labels,
    write_model_config,
)
from keras_googlenet.export.serving import (
    INPUT_NAME,
    OUTPUT_NAME,
    deployment_model,
    num_classes,
    serving_function,
)


def write_saved_model(model, directory, head=MAIN_HEAD, batch_size=None, float_input=False):
    """Writes the serving SavedModel of `head` into the existing (empty) `directory`.

    `batch_size=None` gives a dynamic batch; TFLite conversion uses `1`.
    `float_input=True` takes the same raw 0-255 pixels as float32: the source of
    the full-integer int8 file, whose converter then makes the input uint8
    itself (`tflite.convert_saved_model`) with no float cast in the graph.
    """
    import tensorflow as tf

    serve, (h, w) = serving_function(model, head)
    archive = keras.export.ExportArchive()
    archive.track(serve.deploy_model)
    archive.add_endpoint(
        "serving_default",
        serve,
        input_signature=[tf.TensorSpec([batch_size, h, w, 3],
                                       tf.float32 if float_input else tf.uint8,
                                       name=INPUT_NAME)],
    )
    archive.write_out(directory, verbose=False)


def export_saved_model(model, directory, labels=None, *, head=MAIN_HEAD, overwrite=False,
                       config=None):
    """Writes a deployable SavedModel (and `labels.txt`) of one head of `model`.

    The SavedModel's `serving_default` signature takes raw RGB pixels,
    `image: uint8 [batch, H, W, 3]`, scales them itself and returns
    `probabilities: float32 [batch, classes]` (softmax of the chosen head; the
    other heads are not in the graph). `labels.txt` (one class name per line, in
    output order) is written beside `saved_model.pb`, and `model_config.json`
    when `config` is given.

    The export is atomic: it is built in a temporary folder next to `directory`
    and renamed into place, so `directory` never holds a half-written export.
    The folder and its files get the user's default permissions (umask).

    Args:
        model: A Keras GoogLeNet (three-head or single-head) with a static
            input size, TensorFlow backend.
        directory: Destination folder.
        labels: Class names in output order, or None (labels `"0"`, `"1"`, ...).
        head: `"main"` (default), `"aux1"` or `"aux2"` (early-exit network).
        overwrite: Replace an existing non-empty `directory`.
        config: The model's `GoogLeNetConfig`, written as `model_config.json` with the
            model's weights as `model.weights.h5`.

    Returns:
        The absolute path of `directory`.

    Raises:
        ValueError: If the model has no such head or cannot be exported.
        ExportError: If `directory` holds something and `overwrite` is False, or
            the labels or `config` do not match the model.
    """
    if head not in HEADS:
        raise ValueError(f"`head` must be one of {list(HEADS)}. Received: head={head!r}")
    deployment_model(model, head)  # validate before touching the disk
    labels = resolve_labels(labels, num_classes(model, head))
    if config is not None:
        check_model_config(config, model)
    directory = os.path.abspath(os.fspath(directory))
    with export_directory(directory, overwrite) as tmp:
        if config is not None:
            write_model_config(tmp, config, model)
        write_saved_model(model, tmp, head)
        write_labels(tmp, labels)
    return directory


def load_signature(directory):
    """The `serving_default` signature of the SavedModel in `directory`."""
    import tensorflow as tf

    return tf.saved_model.load(os.fspath(directory)).signatures["serving_default"]


def saved_model_probabilities(directory, images, batch_size=128, *, signature=None):
    """Runs `serving_default` of a SavedModel on uint8 images; returns probabilities."""
    import tensorflow as tf

    if signature is None:
        signature = load_signature(directory)
    out = [
        signature(**{INPUT_NAME: tf.constant(images[i : i + batch_size])})[OUTPUT_NAME].numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out)


def saved_model_latency_ms(signature, image, repeats, warmup=3):
    """Median wall time of one batch-1 `signature` call on `image`, in milliseconds."""
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
