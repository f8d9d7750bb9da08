"""Model folders: a GoogLeNet's configuration beside its weights.

A model folder holds a `model_config.json` (a `GoogLeNetConfig`) beside the
weights; training runs, tuner searches and exports all write one, and
`load_model_folder` rebuilds the model from any of them.
"""

import dataclasses
import functools
import os

import keras

from keras_googlenet.config import MODEL_CONFIG_FILE, WEIGHT_FILES, WEIGHTS_FILE, GoogLeNetConfig
from keras_googlenet._internal.fileio import atomic_save_weights
from keras_googlenet.model import build_model


def save_model_folder(model, directory, config):
    """Writes `model`'s weights and `config` to `directory`.

    The folder then holds `model.weights.h5` and `model_config.json`, enough for
    `load_model_folder` to rebuild the same network with the same weights. Each
    file is written atomically; the folder is created if needed.

    Args:
        model: A model built from `config`.
        directory: The folder to write.
        config: The model's `GoogLeNetConfig`.

    Raises:
        ValueError: If `model`'s weights do not fit `config`'s network.
    """
    config = check_weights_fit(model, config)
    os.makedirs(directory, exist_ok=True)
    atomic_save_weights(model, os.path.join(directory, WEIGHTS_FILE))
    config.save(os.path.join(directory, MODEL_CONFIG_FILE))


def check_weights_fit(model, config):
    """Checks that `config` rebuilds `model`'s network: the same weights, of the same shapes.

    Returns:
        The validated `config`.

    Raises:
        ValueError: If `config` is invalid or its network's weights differ from
            `model`'s (the message names the first difference).
    """
    config = config.validate()
    mine = [(w.path, tuple(w.shape)) for w in model.weights]
    # The classifier's activation has no weights (and may be a function, which
    # JSON cannot hold).
    shapes_of = dataclasses.replace(config, classifier_activation=None).to_json()
    expected = _weight_shapes(shapes_of, keras.config.image_data_format())
    if [shape for _, shape in mine] != [shape for _, shape in expected]:
        first = next((f"{a[0]} {a[1]} against {b[1]}" for a, b in zip(mine, expected)
                      if a[1] != b[1]), f"{len(mine)} weights against {len(expected)}")
        raise ValueError(
            f"The model's weights do not match the configuration ({first} expected). "
            f"Received: config={config}"
        )
    return config


@functools.lru_cache(maxsize=16)
def _weight_shapes(config_json, data_format):
    """`(path, shape)` of each weight of the network a configuration builds.

    Building a GoogLeNet takes about half a second; an export checks its
    configuration up to three times (`check_model_config`, `save_model_folder`),
    so each configuration (and image data format, which orders the shapes) is
    built once a process.
    """
    del data_format  # a key only: build_model reads keras.config.image_data_format()
    config = GoogLeNetConfig.from_json(config_json)
    return tuple((w.path, tuple(w.shape)) for w in build_model(config).weights)


def find_weights(directory):
    """The weights file of a model folder, or None (see `WEIGHT_FILES`)."""
    for name in WEIGHT_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def load_model_folder(directory, **overrides):
    """Rebuilds the model saved in `directory` (a `model_config.json` and weights).

    Works on folders written by `save_model_folder`, training runs
    (`runs/NAME`), tuner searches and exports written with a configuration
    (`keras_googlenet.export.export(..., config=...)`, `python -m
    training.export` of a run folder): each holds a `model_config.json` beside
    its weights (an export's `model.weights.h5` are the exported network's
    float32 weights, every head included).

    Args:
        directory: The folder.
        **overrides: Configuration fields to change that keep the weights'
            shapes (e.g. `name`, `dropout`, `classifier_activation`).

    Returns:
        The `keras.Model`, with the weights loaded.

    Raises:
        ValueError: If the folder has no configuration or no weights, or they do not fit.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ValueError(f"Model folder not found. Received: directory={directory!r}")
    config = GoogLeNetConfig.load(directory)
    if overrides:
        config = config.replace(**overrides)
    weights = find_weights(directory)
    if weights is None:
        raise ValueError(
            f"The model folder has no weights (expected one of {list(WEIGHT_FILES)}). "
            f"Received: directory={directory!r}"
        )
    return build_model(config, weights=weights)
