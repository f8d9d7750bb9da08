"""Layers GoogLeNet needs that Keras does not ship, and a fused BatchNorm step.

Written with Keras 3 (`keras.ops`), so they run on the TensorFlow, JAX and PyTorch
backends and serialize with the model (`.keras` files, `get_config`/`from_config`).
The one backend-specific code is the fused BatchNorm training kernel, taken on
TensorFlow only (TensorFlow is imported there, never at import time).

`GoogLeNet`'s BatchNorm layers are Keras's own `keras.layers.BatchNormalization`
given the fused training kernel by `use_fused_kernel`, so a saved `.keras` file
holds only Keras's layers and loads wherever Keras is installed. Only the 2014
network's `LocalResponseNormalization` needs this package to load.
"""

import types

import keras
from keras import ops

#: What a `.keras` file holding `LocalResponseNormalization` needs before
#: `keras.saving.load_model`; stored in the layer's config, so Keras's "Could not
#: locate class" error shows it.
REQUIRES = "import keras_googlenet"


@keras.saving.register_keras_serializable(package="keras_googlenet")
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalization across channels (Krizhevsky et al., 2012).

    Used by the original 2014 GoogLeNet (Szegedy et al., 2015, "Going Deeper with
    Convolutions", https://arxiv.org/abs/1409.4842) after the first two stem
    convolutions. Keras has no LRN layer, so this is a small one written with
    `keras.ops`. It follows the Caffe / PyTorch convention, in which `alpha` is
    divided by the window `size`:

        y_c = x_c / (bias + alpha / size * sum_{c' in window(c)} x_{c'}^2) ** beta

    The window is `size` channels centred on `c`, zero-padded at the edges. With
    TensorFlow this equals `tf.nn.local_response_normalization(x,
    depth_radius=size // 2, bias=bias, alpha=alpha / size, beta=beta)`.

    Args:
        size: Odd number of channels in the normalization window. Defaults to 5.
        alpha: Scale of the sum of squares. Defaults to 1e-4.
        beta: Exponent. Defaults to 0.75.
        bias: Additive constant. Defaults to 1.0.
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.
        requires: Ignored; `get_config` stores `REQUIRES` there.
        **kwargs: Standard layer arguments (`name`, `dtype`, ...).
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, bias=1.0, data_format=None, requires=None,
                 **kwargs):
        # `requires` (saved by get_config, ignored here) names the import that
        # loading needs, for the error of a process that lacks it.
        del requires
        super().__init__(**kwargs)
        if not isinstance(size, int) or size < 1 or size % 2 == 0:
            raise ValueError(
                f"`size` must be a positive odd integer. Received: size={size!r}"
            )
        self.size = size
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.bias = float(bias)
        self.data_format = data_format or keras.config.image_data_format()
        self.channel_axis = -1 if self.data_format == "channels_last" else 1

    def call(self, inputs):
        squared = ops.square(inputs)
        half = self.size // 2
        pad = [[0, 0]] * len(inputs.shape)
        pad[self.channel_axis] = [half, half]
        padded = ops.pad(squared, pad)
        channels = inputs.shape[self.channel_axis]
        axis = self.channel_axis % len(inputs.shape)
        window_sum = sum(
            ops.slice(
                padded,
                [offset if i == axis else 0 for i in range(len(inputs.shape))],
                [channels if i == axis else ops.shape(padded)[i] for i in range(len(inputs.shape))],
            )
            for offset in range(self.size)
        )
        scale = ops.power(self.bias + (self.alpha / self.size) * window_sum, self.beta)
        return inputs / scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            size=self.size,
            alpha=self.alpha,
            beta=self.beta,
            bias=self.bias,
            data_format=self.data_format,
            requires=REQUIRES,
        )
        return config


def use_fused_kernel(layer, fused=None):
    """Gives a `keras.layers.BatchNormalization` the fused training step on TensorFlow.

    Keras 3 computes BatchNorm on TensorFlow as a chain of element-wise ops
    (`moments`, then `batch_normalization`) forward and backward, for each of
    GoogLeNet's 59 BatchNorm layers (keras-team/keras-core#225, "BatchNorm is
    slow"). Keras 2 had a `fused` argument that called TensorFlow's one-kernel
    `FusedBatchNormV3` instead; this brings it back: 1.18x faster training
    of the whole network in float32 on a 2-core CPU, 1.19x-1.32x across input
    sizes (`benchmarks/README.md`, "Keras against PyTorch" and "What was tried
    for speed"), and 1.19x under mixed_bfloat16
    (`benchmarks/results/cpu_bf16_fused_batchnorm.json`).

    The layer keeps its class (Keras's), weights, arguments and inference graph
    (so `.keras` files, SavedModel and TFLite exports hold Keras's own layer and
    load without this package), and Keras's update rule for the moving
    statistics (Keras's biased batch variance, not the fused kernel's
    Bessel-corrected one). Only the layer object's `call` changes: the fused
    path is taken only where it computes exactly what the Keras path does:
    TensorFlow backend, training, 4-D channels-last input, no mask, no renorm,
    not `synchronized`. Otherwise, and always on JAX (where XLA fuses
    BatchNorm itself) and PyTorch, the Keras path runs. A model loaded from a
    file trains with Keras's path unless this is applied to its layers again.

    Args:
        layer: A `keras.layers.BatchNormalization` (or subclass) instance.
        fused: `None` (default) uses the fused kernel where it applies; `False`
            always uses Keras's implementation; `True` is like `None` but raises
            a `ValueError` where the fused kernel cannot be used. Stored as
            `layer.fused`, which may be changed before the model is compiled.

    Returns:
        `layer`.

    Raises:
        ValueError: If `layer` is not a Keras BatchNormalization or `fused` is
            not None, True or False.
    """
    if not isinstance(layer, keras.layers.BatchNormalization):
        raise ValueError(
            f"`layer` must be a keras.layers.BatchNormalization. Received: layer={layer!r}"
        )
    _check_fused(fused)
    layer.fused = fused
    if not isinstance(layer, BatchNormalization):  # ours has the step as its `call`
        layer.call = types.MethodType(_call_maybe_fused, layer)
    return layer


def _check_fused(fused):
    if fused not in (None, True, False):
        raise ValueError(f"`fused` must be None, True or False. Received: fused={fused!r}")


def _call_maybe_fused(layer, inputs, training=None, mask=None):
    """`layer.call` with the fused training kernel where `layer.fused` allows it."""
    keras_call = super(BatchNormalization, layer).call if isinstance(
        layer, BatchNormalization) else type(layer).call.__get__(layer)
    if layer.fused is False or not (training and layer.trainable):
        return keras_call(inputs, training=training, mask=mask)
    reason = _fused_unsupported(layer, inputs, mask)
    if reason is not None:
        if layer.fused:
            raise ValueError(
                f"BatchNormalization(fused=True) cannot use the fused kernel: {reason}. "
                f"Received: input shape {tuple(inputs.shape)}"
            )
        return keras_call(inputs, training=training, mask=mask)
    return _fused_train_step(layer, inputs)


def _fused_unsupported(layer, inputs, mask):
    """Why the fused kernel cannot be used for this call, or None."""
    if keras.backend.backend() != "tensorflow":
        return f"backend is {keras.backend.backend()!r}, not 'tensorflow'"
    if len(inputs.shape) != 4 or layer.axis not in (-1, 3):
        return f"needs a 4-D channels-last input, got rank {len(inputs.shape)} axis {layer.axis}"
    if mask is not None:
        return "a mask was given"
    if layer.renorm or layer.synchronized:
        return "renorm and synchronized are not supported"
    return None


def _fused_train_step(layer, inputs):
    import tensorflow as tf  # Only reached on the TensorFlow backend.

    # As in Keras, statistics, scale and offset are float32 even under mixed
    # precision. A bfloat16/float16 input goes into the kernel as it is: the
    # kernel (T=bfloat16/half, U=float) accumulates in float32 and rounds only
    # its output, which is what Keras's cast to float32 and back computes,
    # without two casts per layer and pass (docs/training.md, "bf16 on CPU").
    x = inputs if inputs.dtype in (tf.bfloat16, tf.float16) else tf.cast(inputs, tf.float32)
    channels = x.shape[-1]
    gamma = tf.cast(layer.gamma.value, tf.float32) if layer.scale else tf.ones([channels])
    beta = tf.cast(layer.beta.value, tf.float32) if layer.center else tf.zeros([channels])
    y, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
        x, gamma, beta, epsilon=layer.epsilon, data_format="NHWC",
        is_training=True, exponential_avg_factor=1.0,
    )
    # The kernel returns the Bessel-corrected variance for the moving average;
    # Keras averages the biased one (the one it normalises with). Undo it.
    count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
    # (A single value per channel has variance 0, as in Keras.)
    variance = tf.where(
        count > 1.0, unbiased_variance * (count - 1.0) / count, tf.zeros_like(mean)
    )
    moving_mean = tf.cast(layer.moving_mean.value, tf.float32)
    moving_variance = tf.cast(layer.moving_variance.value, tf.float32)
    layer.moving_mean.assign(moving_mean * layer.momentum + mean * (1.0 - layer.momentum))
    layer.moving_variance.assign(
        moving_variance * layer.momentum + variance * (1.0 - layer.momentum)
    )
    return tf.cast(y, layer.compute_dtype)


@keras.saving.register_keras_serializable(package="keras_googlenet")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with a `fused` argument (see `use_fused_kernel`).

    `GoogLeNet` no longer uses this class (its layers are Keras's own, given the
    fused step by `use_fused_kernel`, so saved models load without this
    package); it stays registered as `keras_googlenet>BatchNormalization` so
    that `.keras` files saved by earlier versions load once `keras_googlenet`
    is imported.

    Args:
        fused: As in `use_fused_kernel`.
        **kwargs: Arguments of `keras.layers.BatchNormalization`.
    """

    def __init__(self, fused=None, **kwargs):
        super().__init__(**kwargs)
        _check_fused(fused)
        self.fused = fused

    def _fused_unsupported(self, inputs, mask):
        """Why the fused kernel cannot be used for this call, or None."""
        return _fused_unsupported(self, inputs, mask)

    def call(self, inputs, training=None, mask=None):
        return _call_maybe_fused(self, inputs, training=training, mask=mask)

    def get_config(self):
        config = super().get_config()
        config["fused"] = self.fused
        return config


class FlatHeNormal(keras.initializers.HeNormal):
    """`keras.initializers.HeNormal`, drawn as a flat sample of a power-of-two size.

    The same distribution (truncated normal, stddev `sqrt(2 / fan_in) / .8796`).
    Why: on JAX every new shape compiles its own sampling kernel (0.5-1 s each on
    a 2-core CPU) and GoogLeNet has about sixty kernel shapes, so building the
    model took 30-40 s there. Drawing `2**k` values and cutting them to shape on
    the host compiles one kernel per power of two (about fifteen) instead
    (`benchmarks/results/model_build_time.json`). `conv_block` builds with it and
    then hands the layer Keras's own `HeNormal`, which is what `get_config` and
    saved files record, so a saved model names no class of ours for it.
    """

    def __call__(self, shape, dtype=None):
        import math

        import numpy as np

        size = math.prod(shape)
        fan_in = max(1, math.prod(shape[:-1]))  # kernel (..., in, out): all but the last axis
        stddev = math.sqrt(self.scale / fan_in) / 0.87962566103423978
        flat = keras.random.truncated_normal(
            (1 << max(size - 1, 0).bit_length(),), dtype="float32", seed=self.seed)
        values = np.asarray(ops.convert_to_numpy(flat))[:size].reshape(shape) * stddev
        dtype = keras.backend.standardize_dtype(dtype or keras.config.floatx())
        return values if dtype == "float32" else ops.cast(values, dtype)
