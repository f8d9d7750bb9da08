"""Layers GoogLeNet needs that Keras does not ship.

Pure Keras 3 (`keras.ops`), so they run on the TensorFlow, JAX and PyTorch backends
and serialize with the model (`.keras` files, `get_config`/`from_config`).
"""

import keras
from keras import ops


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
        **kwargs: Standard layer arguments (`name`, `dtype`, ...).
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, bias=1.0, data_format=None, **kwargs):
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
        )
        return config
