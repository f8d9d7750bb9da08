"""The files that describe an export: `labels.txt`, and `model_config.json`
with `model.weights.h5`.

`labels.txt` (one class name a line, in output order) ships beside every
export; `model_config.json` (the model's `GoogLeNetConfig`) and the exported
network's float32 weights (`model.weights.h5`, for
`keras_googlenet.load_model_folder`) when the configuration is known.
"""

import os

from keras_googlenet.config import MODEL_CONFIG_FILE, GoogLeNetConfig
from keras_googlenet.export.errors import ExportError
from keras_googlenet._internal.fileio import atomic_write_text, label_forbidden_characters
from keras_googlenet.imagenet import imagenet_class_names
from keras_googlenet.saving import check_weights_fit, save_model_folder

#: Name of the labels file written beside every export.
LABELS_FILE = "labels.txt"


def resolve_labels(labels, classes):
    """Returns a list of `classes` label strings (`"0"`, `"1"`, ... when `labels` is None).

    `labels="imagenet"` gives the 1000 ImageNet class names
    (`keras_googlenet.imagenet_class_names()`), for a model with
    `weights="imagenet"` and its top.

    Raises:
        ExportError: If the count differs from `classes` or a label is empty,
            multi-line, holds a character class names may not hold
            (`keras_googlenet._internal.fileio.label_forbidden_characters`) or is not valid UTF-8 text (they are embedded in the
            `.tflite` files as UTF-8).
    """
    if labels is None:
        return [str(i) for i in range(classes)]
    if isinstance(labels, str):
        if labels != "imagenet":
            raise ExportError(
                f"`labels` must be a list of class names, None or 'imagenet'. Received: {labels!r}"
            )
        labels = imagenet_class_names()
    labels = [str(label) for label in labels]
    if len(labels) != classes:
        raise ExportError(f"Got {len(labels)} labels for a model with {classes} classes.")
    for label in labels:
        if not label.strip() or "\n" in label or "\r" in label:
            raise ExportError(f"Invalid label {label!r}: labels must be non-empty single lines.")
        try:
            label.encode("utf-8")
        except UnicodeEncodeError as e:  # lone surrogates (undecodable bytes)
            raise ExportError(f"Invalid label {label!r}: not valid UTF-8 text.") from e
        forbidden = label_forbidden_characters(label)
        if forbidden:
            raise ExportError(
                f"Invalid label {label!r}: it holds the control or format character(s) "
                f"{forbidden!r}, which training refuses in class names.")
    return labels


def write_labels(directory, labels):
    """Writes `labels` to `directory/labels.txt`; returns its path."""
    path = os.path.join(directory, LABELS_FILE)
    atomic_write_text(path, "".join(f"{label}\n" for label in labels))
    return path


def read_labels(path):
    """The lines of a UTF-8 labels file (one class name a line), in order.

    Raises:
        ExportError: If the file is not UTF-8 text or has an empty line (it
            would shift every later class name).
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\r\n") for line in f]
    except UnicodeDecodeError as e:
        raise ExportError(
            f"Labels file {os.fspath(path)!r} is not UTF-8 text (byte {e.start}: "
            f"{e.object[e.start:e.start + 1]!r})."
        ) from e
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise ExportError(
                f"Labels file {os.fspath(path)!r} has an empty line {number}; expected one "
                "class name a line."
            )
    return lines


def check_model_config(config, model):
    """Checks that `config` describes `model` before anything is written.

    Args:
        config: The `GoogLeNetConfig` `model` was built from.
        model: The Keras model being exported.

    Raises:
        ExportError: If `config` is not a valid GoogLeNetConfig, its input
            shape or class count differ from the model's, or it does not
            rebuild the model's network (`keras_googlenet.saving.check_weights_fit`).
    """
    if not isinstance(config, GoogLeNetConfig):
        raise ExportError(f"`config` must be a GoogLeNetConfig. Received: config={config!r}")
    try:
        config.validate()
    except ValueError as e:
        raise ExportError(f"Invalid model configuration: {' '.join(str(e).split())}") from e
    shape = tuple(model.inputs[0].shape[1:])
    if config.input_shape is not None and tuple(config.input_shape) != shape:
        raise ExportError(
            f"The model configuration's input_shape {tuple(config.input_shape)} differs from "
            f"the model's {shape}."
        )
    classes = {int(output.shape[-1]) for output in model.outputs}
    if config.include_top and classes != {config.classes}:
        raise ExportError(
            f"The model configuration has classes={config.classes}; the model predicts "
            f"{sorted(classes)}."
        )
    try:
        check_weights_fit(model, config)
    except ValueError as e:
        raise ExportError(f"The model configuration does not describe the model: "
                          f"{' '.join(str(e).split())}") from e


def write_model_config(directory, config, model):
    """Writes `config` as `directory/model_config.json` and `model`'s weights as
    `directory/model.weights.h5` (`keras_googlenet.save_model_folder`), after
    `check_model_config`.

    Returns:
        The path of `model_config.json`.

    Raises:
        ExportError: As `check_model_config`.
    """
    check_model_config(config, model)
    save_model_folder(model, directory, config)
    return os.path.join(directory, MODEL_CONFIG_FILE)
