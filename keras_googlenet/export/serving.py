"""The deployment graph: raw uint8 RGB pixels in, one head's probabilities out.

Every export format (SavedModel, each TFLite file) is traced from
`serving_function`, so they all share one input/output contract:
`image: uint8 [batch, H, W, 3]` -> `probabilities: float32 [batch, classes]`.
"""

import keras
import numpy as np

from keras_googlenet.architecture import MAIN_HEAD
from keras_googlenet.utils import float32_model, inference_model

#: Name of the serving signature's input (raw RGB uint8 pixels).
INPUT_NAME = "image"
#: Name of the serving signature's output (class probabilities).
OUTPUT_NAME = "probabilities"


def deployment_model(model, head=MAIN_HEAD):
    """Cuts `model` after `head` and returns `(keras_model, apply_softmax)`.

    The deployed model always computes in float32 (`float32_model`), whatever
    precision `model` was trained in: TFLite's builtin kernels and the phone
    delegates run float32 and quantized graphs, not bf16 ones.

    `apply_softmax` says whether the head returns logits (its activation is linear,
    `classifier_activation=None`), so the deployed graph must add a softmax; a head
    that already has a softmax is used as is.

    Raises:
        ValueError: If `head` is unknown, missing from `model`, or has an activation
            other than linear or softmax.
    """
    deploy = inference_model(float32_model(model), head)
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


def input_size(model):
    """`(H, W)` of a channels-last RGB model with a static input size.

    Raises:
        ValueError: For a channels-first model or one without a static `(H, W, 3)` input.
    """
    shape = tuple(model.inputs[0].shape)
    if keras.config.image_data_format() != "channels_last":
        raise ValueError("Export supports channels_last models only.")
    if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[2] is None:
        raise ValueError(
            "Export needs an RGB model with a static input size, input shape "
            f"(None, H, W, 3). Received: input shape {shape}"
        )
    return int(shape[1]), int(shape[2])


def num_classes(model, head=MAIN_HEAD):
    """The number of classes `head` of `model` predicts."""
    return int(model.get_layer(head).output.shape[-1])


def serving_function(model, head=MAIN_HEAD):
    """Returns `(fn, (H, W))`: a tf.function-ready callable uint8 images -> probabilities.

    `fn(image)` takes raw RGB `uint8 [batch, H, W, 3]` pixels, casts them to float
    (a GoogLeNet scales them itself with its `rescaling` layer; for a model built
    with `include_preprocessing=False` the function scales them to [-1, 1]) and
    returns `{"probabilities": float32 [batch, classes]}` from `head`.
    `fn.deploy_model` is the single-head Keras model it calls.
    """
    import tensorflow as tf

    deploy, apply_softmax = deployment_model(model, head)
    hw = input_size(deploy)
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


def keras_probabilities(model, images, *, head=MAIN_HEAD, batch_size=128):
    """Reference probabilities of one head of the Keras model for uint8 images."""
    import tensorflow as tf

    serve, _ = serving_function(model, head)
    fn = tf.function(serve)
    out = [
        fn(tf.constant(images[i : i + batch_size]))[OUTPUT_NAME].numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, num_classes(model, head)), np.float32)
