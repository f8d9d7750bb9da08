"""The model's configuration: `GoogLeNet`'s keyword arguments as one object.

`GoogLeNetConfig` holds exactly the keyword arguments of `keras_googlenet.GoogLeNet`
that describe the network (all of them but `weights` and `input_tensor`, which say
where values come from, not what the network is). It validates them, round-trips
through JSON, and is what every part of the project writes beside weights as
`model_config.json`:

    >>> config = GoogLeNetConfig(stem="cifar", classes=10, width=0.5)
    >>> model = build_model(config)                      # keras_googlenet.model
    >>> save_model_folder(model, "my_model", config)     # weights + model_config.json
    >>> model = load_model_folder("my_model")            # the same network, same weights

This module imports no Keras (only the activation check does, when an
activation is given), so training, tuning and export code can validate a
configuration cheaply. Building the network from it is `keras_googlenet.model`'s job
(`build_model(config)`; the keyword `GoogLeNet(...)` makes a config and builds from
it), reading and writing model folders `keras_googlenet.saving`'s.
"""

import dataclasses
import json
import math
import numbers
import os
import sys
from dataclasses import dataclass
from typing import Optional

from keras_googlenet import architecture
from keras_googlenet._internal.fileio import atomic_write_text, parse_json
from keras_googlenet._internal.values import invalid_argument, is_int

#: The configuration file written beside weights.
MODEL_CONFIG_FILE = "model_config.json"

#: The weights file `keras_googlenet.save_model_folder` writes beside it.
WEIGHTS_FILE = "model.weights.h5"

#: Weight files `keras_googlenet.load_model_folder` looks for, in order.
WEIGHT_FILES = (WEIGHTS_FILE, "model.keras")

#: Version of the `model_config.json` layout.
CONFIG_FORMAT = 1

#: Largest `width` accepted (the widest block then has 16384 channels, and the
#: network over a billion parameters); a training run's --width is checked here too.
MAX_WIDTH = 16.0

#: Largest side (or channel count) of `input_shape` accepted.
MAX_INPUT_SIDE = 65536


@dataclass
class GoogLeNetConfig:
    """`keras_googlenet.GoogLeNet`'s keyword arguments (see its docstring).

    Every field has `GoogLeNet`'s default. `input_shape` and `blocks` are stored
    as tuples; JSON lists are accepted and converted.
    """

    include_top: bool = True
    input_shape: Optional[tuple] = None
    pooling: Optional[str] = None
    classes: int = 1000
    classifier_activation: Optional[str] = None
    aux_logits: bool = True
    batch_norm: bool = True
    dropout: float = 0.4
    aux_dropout: float = 0.7
    stem: str = "imagenet"
    width: float = 1.0
    blocks: Optional[tuple] = None
    include_preprocessing: bool = True
    name: str = "googlenet"
    # architecture.ARCHITECTURE_OPTIONS (the paper's values by default).
    large_branch_kernel: int = architecture.PAPER_OPTIONS["large_branch_kernel"]
    stage5_pool_size: int = architecture.PAPER_OPTIONS["stage5_pool_size"]
    stem_padding: str = architecture.PAPER_OPTIONS["stem_padding"]
    ceil_mode: bool = architecture.PAPER_OPTIONS["ceil_mode"]
    aux_pool: str = architecture.PAPER_OPTIONS["aux_pool"]

    def __post_init__(self):
        if isinstance(self.input_shape, list):
            self.input_shape = tuple(self.input_shape)
        if isinstance(self.blocks, list):
            self.blocks = tuple(tuple(r) if isinstance(r, list) else r for r in self.blocks)

    # ---- validation --------------------------------------------------------
    def validate(self):
        """Checks every field; returns `self`.

        Checks that depend on the Keras image data format (the channel axis of
        `input_shape`, minimum sizes) are done by `GoogLeNet` itself.

        Raises:
            ValueError: For any invalid value; the message names the value received.
        """
        for field in ("include_top", "aux_logits", "batch_norm", "include_preprocessing"):
            setattr(self, field, _as_bool(field, getattr(self, field)))
        for field, allowed in architecture.ARCHITECTURE_OPTIONS.items():
            value = getattr(self, field)
            # `type(...) is` so that True does not pass for 1 nor 1 for True.
            if not any(type(value) is type(a) and value == a for a in allowed):
                raise invalid_argument(field, f"one of {list(allowed)}", value)
        if not isinstance(self.stem, str) or self.stem not in architecture.STEMS:
            raise invalid_argument("stem", f"one of {sorted(architecture.STEMS)}", self.stem)
        classes = self.classes
        if not is_int(classes, numpy=True) or classes < 1:
            raise invalid_argument("classes", "an integer >= 1", classes)
        self.classes = int(classes)
        if not (self.pooling is None or isinstance(self.pooling, str)) or self.pooling not in (
            None, "avg", "max"
        ):
            raise ValueError(
                f"`pooling` must be None, 'avg' or 'max'. Received: pooling={self.pooling!r}"
            )
        if self.include_top and self.pooling == "max":
            raise ValueError(
                "With `include_top=True` the classifier uses global average pooling, so "
                "`pooling` must be None or 'avg' (set include_top=False for max-pooled "
                f"features). Received: pooling={self.pooling!r}"
            )
        width = _as_float(self.width)
        if width is None or not 0 < width <= MAX_WIDTH:
            raise invalid_argument("width", f"> 0 and <= {MAX_WIDTH:g} (a width of {MAX_WIDTH:g} "
                                "already has over a billion parameters)", self.width)
        self.width = width
        for arg in ("dropout", "aux_dropout"):
            rate = _as_float(getattr(self, arg))
            if rate is None or not 0 <= rate < 1:
                raise invalid_argument(arg, "in [0, 1)", getattr(self, arg))
            setattr(self, arg, rate)
        self.input_shape = _validate_input_shape(self.input_shape)
        if self.blocks is not None:
            self.blocks = architecture.validate_blocks(self.blocks)
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"`name` must be a non-empty string. Received: name={self.name!r}")
        if self.classifier_activation is not None:
            import keras

            try:
                keras.activations.get(self.classifier_activation)
            except (ValueError, TypeError) as e:
                raise ValueError(
                    "`classifier_activation` must be None or a Keras activation. "
                    f"Received: classifier_activation={self.classifier_activation!r}"
                ) from e
        return self

    # ---- JSON --------------------------------------------------------------
    def to_dict(self):
        """The fields as JSON-ready values (tuples become lists)."""
        values = dataclasses.asdict(self)
        activation = values["classifier_activation"]
        if activation is not None and not isinstance(activation, str):
            import keras

            activation = keras.activations.serialize(activation)
            if not isinstance(activation, str):
                raise ValueError(
                    "Only activations given by name can be saved in a model configuration. "
                    f"Received: classifier_activation={self.classifier_activation!r}"
                )
            values["classifier_activation"] = activation
        if values["input_shape"] is not None:
            values["input_shape"] = list(values["input_shape"])
        if values["blocks"] is not None:
            values["blocks"] = [list(row) for row in values["blocks"]]
        return values

    @classmethod
    def from_dict(cls, values):
        """Builds and validates a configuration from `to_dict()`'s output.

        Raises:
            ValueError: For an unknown key or an invalid value.
        """
        if not isinstance(values, dict):
            raise ValueError(f"A model configuration must be a JSON object. Received: {values!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"Unknown GoogLeNet argument(s) {unknown}; expected some of {sorted(known)}."
            )
        return cls(**values).validate()

    def to_json(self):
        """The configuration as a JSON document (with a format version)."""
        doc = {"format": CONFIG_FORMAT, "class_name": "GoogLeNet", "config": self.to_dict()}
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, text):
        """Reads `to_json()`'s output.

        Raises:
            ValueError: If the text is not such a document.
        """
        try:
            doc = parse_json(text)
        except ValueError as e:
            raise ValueError(f"A model configuration must be JSON ({e}).") from e
        if not isinstance(doc, dict) or doc.get("class_name") != "GoogLeNet" or "config" not in doc:
            raise ValueError(
                "Not a GoogLeNet model configuration (expected an object with "
                "'class_name': 'GoogLeNet' and 'config')."
            )
        if doc.get("format") != CONFIG_FORMAT:
            raise ValueError(
                f"Unsupported model configuration format {doc.get('format')!r}; "
                f"this version reads format {CONFIG_FORMAT}."
            )
        return cls.from_dict(doc["config"])

    def save(self, path):
        """Writes the JSON document to `path` atomically."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path):
        """Reads a `model_config.json` (or a folder holding one).

        Raises:
            ValueError: If the file is missing or not a valid configuration.
        """
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, MODEL_CONFIG_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ValueError(f"Could not read the model configuration {path!r}: {e.strerror}.") from e
        try:
            return cls.from_json(text)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e

    # ---- models ------------------------------------------------------------
    def kwargs(self):
        """The keyword arguments to pass to `GoogLeNet`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes):
        """A validated copy with `changes` applied."""
        return dataclasses.replace(self, **changes).validate()

    def differences(self, other):
        """Names of the fields whose JSON values differ from `other`'s."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [name for name in mine if mine[name] != theirs[name]]


def _numpy_bool(value):
    numpy = sys.modules.get("numpy")  # a numpy value means numpy is imported
    return numpy is not None and isinstance(value, numpy.bool_)


def _as_bool(field, value):
    """`value` as a Python bool (numpy bools accepted), or ValueError naming it."""
    if isinstance(value, bool) or _numpy_bool(value):
        return bool(value)
    raise invalid_argument(field, "True or False", value)


def _as_float(value):
    """`value` as a finite Python float if it is a real number (not a bool), else None."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and not _numpy_bool(value):
        value = float(value)
        return value if math.isfinite(value) else None
    return None


def _validate_input_shape(input_shape):
    """`None`, or a tuple of 3 Python ints (>= 1) or `None`s; else ValueError naming it."""
    if input_shape is None:
        return None
    sides = None
    if isinstance(input_shape, (tuple, list)) and len(input_shape) == 3:
        sides = tuple(int(d) if is_int(d, numpy=True) else None for d in input_shape)
    if sides is None or any(
        side is None and d is not None for side, d in zip(sides, input_shape)
    ) or any(side is not None and not 1 <= side <= MAX_INPUT_SIDE for side in sides):
        raise ValueError(
            "`input_shape` must be a tuple of 3 integers from 1 to "
            f"{MAX_INPUT_SIDE} (or None for an unknown side), e.g. (224, 224, 3) for "
            f"channels_last. Received: input_shape={input_shape!r}"
        )
    return sides
