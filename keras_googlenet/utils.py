"""Utilities around a built GoogLeNet: deployment heads, FLOPs, preprocessing."""

import math

import keras

from keras_googlenet.architecture import HEADS, MAIN_HEAD


def inference_model(model, head=MAIN_HEAD):
    """Returns a single-output model for deployment that shares `model`'s weights.

    The returned model is cut after the chosen head: with `head="main"` the
    auxiliary classifiers are dropped; with `head="aux1"` (after block 4a) or
    `head="aux2"` (after 4d) everything after that block is dropped too, which
    gives a cheaper early-exit network. Layers (and so weights) are shared with
    `model`, not copied.

    Args:
        model: A GoogLeNet built with `include_top=True`.
        head: `"main"`, `"aux1"` or `"aux2"`.

    Returns:
        A functional `keras.Model` with one output, named after `head`.

    Raises:
        ValueError: If `head` is unknown or `model` has no such output.
    """
    if head not in HEADS:
        raise ValueError(f"`head` must be one of {list(HEADS)}. Received: head={head!r}")
    if head not in model.output_names:
        raise ValueError(
            f"The model has no {head!r} output (its outputs are {list(model.output_names)}). "
            f"Received: head={head!r}"
        )
    output = model.get_layer(head).output
    return keras.Model(model.inputs, output, name=f"{model.name}_{head}")


def count_flops(model):
    """Counts the multiply-adds of a model's convolutions and dense layers.

    Following the paper's convention, one multiply-add counts once (so the
    224x224 GoogLeNet main path is about 1.5 billion). Pooling, normalization,
    activations and additions are not counted. Only what `model` contains is
    counted: pass `inference_model(model)` for the deployed main-head network.

    Args:
        model: A built Keras model with static spatial input size.

    Returns:
        The number of multiply-adds for one input example, as an int.

    Raises:
        ValueError: If a counted layer's output shape is not fully known.
    """
    total = 0
    for layer in _iter_layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            kernel = layer.kernel.shape  # (kh, kw, cin / groups, cout)
            positions = _positions(layer, skip_channel=True)
            total += positions * math.prod(kernel)
        elif isinstance(layer, keras.layers.Dense):
            positions = _positions(layer, skip_channel=True)
            total += positions * math.prod(layer.kernel.shape)
    return total


def preprocess_input(x, data_format=None):
    """Identity function kept for keras.applications compatibility.

    GoogLeNet models take raw RGB pixels in [0, 255] and scale them internally
    (their `rescaling` layer), so no preprocessing is needed: pass decoded images
    straight in. This function returns its input unchanged. For a model built with
    `include_preprocessing=False`, scale inputs to [-1, 1] as `x / 127.5 - 1`.

    Args:
        x: Images, raw RGB in [0, 255].
        data_format: Unused, for signature compatibility.

    Returns:
        `x`, unchanged.
    """
    return x


def _iter_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _iter_layers(layer)
        else:
            yield layer


def _positions(layer, skip_channel):
    shape = layer.output.shape[1:]
    if keras.config.image_data_format() == "channels_first" and isinstance(
        layer, keras.layers.Conv2D
    ):
        shape = shape[1:]
    elif skip_channel:
        shape = shape[:-1]
    if any(d is None for d in shape):
        raise ValueError(
            "count_flops needs static spatial shapes; build the model with a fixed "
            f"input size. Received: layer {layer.name!r} with output shape {layer.output.shape}"
        )
    return math.prod(shape)
