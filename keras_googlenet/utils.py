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
        ValueError: If `model` is not a Keras model, `head` is unknown or
            `model` has no such output.
    """
    _check_model(model, "inference_model")
    if not isinstance(head, str) or head not in HEADS:
        raise ValueError(f"`head` must be one of {list(HEADS)}. Received: head={head!r}")
    if head not in model.output_names:
        raise ValueError(
            f"The model has no {head!r} output (its outputs are {list(model.output_names)}). "
            f"Received: head={head!r}"
        )
    output = model.get_layer(head).output
    return keras.Model(model.inputs, output, name=f"{model.name}_{head}")


def float32_model(model):
    """Returns `model` computing in float32: itself, or a float32 copy of it.

    A model trained under a mixed-precision policy (`mixed_bfloat16`,
    `mixed_float16`) keeps float32 weights but computes in 16 bits; traced
    for export, its graph holds bf16/fp16 ops that TFLite's builtin kernels and
    most phone accelerators do not run. Every export therefore goes through
    this function: the copy has the same architecture with every layer's
    dtype policy set to float32, and the same weights (which are float32
    already, so nothing is rounded).

    Args:
        model: A functional Keras model.

    Returns:
        `model` if every layer already computes in float32, else a new model
        with the same name, layers (by name) and weight values.
    """
    _check_model(model, "float32_model")
    if all(_compute_dtype(layer) in (None, "float32") for layer in model.layers):
        return model

    def clone(layer):
        config = layer.get_config()
        config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _compute_dtype(layer):
    policy = getattr(layer, "dtype_policy", None)
    return None if policy is None else policy.compute_dtype


def count_flops(model):
    """Counts the multiply-adds of a model's convolutions and dense layers.

    Following the paper's convention, one multiply-add counts once (so the
    224x224 GoogLeNet main path is about 1.5 billion). Pooling, normalization,
    activations and additions are not counted. Only what `model` contains is
    counted: pass `inference_model(model)` for the deployed main-head network.

    Every call of a layer in the model's graph counts (a layer used twice
    counts twice; nested models are counted call by call), per example:

    - `Conv1D`/`Conv2D`/`Conv3D`: `prod(kernel) = k... * cin / groups * cout` per
      output position;
    - `DepthwiseConv1D`/`DepthwiseConv2D`: `k... * cin * depth_multiplier` per
      output position;
    - `SeparableConv1D`/`SeparableConv2D`: the depthwise part plus the 1x1
      pointwise part (`cin * depth_multiplier * cout`) per output position;
    - `Conv1DTranspose`/`Conv2DTranspose`/`Conv3DTranspose`: `k... * cin * cout`
      per *input* position;
    - `Dense`: `units_in * units_out` per position of its input's leading axes.

    Any other layer with a weight matrix (e.g. `EinsumDense`, attention,
    recurrent layers, `Embedding`) is refused rather than counted as zero.
    The graph is read from Keras's node structure (`Functional._nodes_by_depth`,
    which `Model.summary` also uses; Keras offers no public per-call API).

    Args:
        model: A built functional or `Sequential` Keras model with static spatial
            input size.

    Returns:
        The number of multiply-adds for one input example, as an int.

    Raises:
        ValueError: If `model` is not such a model, a counted layer's shape is
            not fully known, or a layer cannot be counted (the message names it).
    """
    _check_model(model, "count_flops")
    return _graph_flops(model)


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


def _check_model(model, function):
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`{function}` needs a Keras model. Received: model={model!r:.200}"
        )


def _graph_nodes(model):
    """The nodes (layer calls) of a functional or built Sequential model's graph."""
    if isinstance(model, keras.Sequential):
        model = getattr(model, "_functional", None) or model
    nodes_by_depth = getattr(model, "_nodes_by_depth", None)
    if nodes_by_depth is None:
        raise ValueError(
            "count_flops counts functional and built Sequential models (their layer "
            f"graph is known); build a subclassed model's layers into one. "
            f"Received: model={model.name!r} ({type(model).__name__})"
        )
    return [node for depth in sorted(nodes_by_depth) for node in nodes_by_depth[depth]]


def _graph_flops(model):
    total = 0
    for node in _graph_nodes(model):
        layer = node.operation
        if isinstance(layer, keras.Model):
            total += _graph_flops(layer)
        else:
            total += _layer_flops(layer, node)
    return total


_TRANSPOSED = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
               keras.layers.Conv3DTranspose)
_SEPARABLE = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


def _layer_flops(layer, node):
    """Multiply-adds of one call (`node`) of `layer`, per example."""
    if isinstance(layer, _TRANSPOSED):
        return _positions(layer, node.input_tensors[0]) * math.prod(layer.kernel.shape)
    if isinstance(layer, _SEPARABLE):
        per_position = math.prod(layer.depthwise_kernel.shape)
        per_position += math.prod(layer.pointwise_kernel.shape)
        return _positions(layer, node.output_tensors[0]) * per_position
    if isinstance(layer, (*_DEPTHWISE, *_CONV, keras.layers.Dense)):
        return _positions(layer, node.output_tensors[0]) * math.prod(layer.kernel.shape)
    if any(len(w.shape) >= 2 for w in getattr(layer, "weights", ())):  # keras.ops calls have none
        raise ValueError(
            "count_flops counts convolutions and Dense layers only, and this layer has a "
            f"weight matrix it cannot count. Received: layer {layer.name!r} "
            f"({type(layer).__name__})"
        )
    return 0


def _positions(layer, tensor):
    """Positions a layer's kernel is applied at: `tensor`'s axes but batch and channels."""
    shape = tuple(tensor.shape[1:])
    if isinstance(layer, keras.layers.Dense):
        shape = shape[:-1]
    elif getattr(layer, "data_format", "channels_last") == "channels_first":
        shape = shape[1:]
    else:
        shape = shape[:-1]
    if any(d is None for d in shape):
        raise ValueError(
            "count_flops needs static spatial shapes; build the model with a fixed "
            f"input size. Received: layer {layer.name!r} with shape {tensor.shape}"
        )
    return math.prod(shape)
