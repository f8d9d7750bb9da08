"""The model's input: its shape and the image data format's axes.

What `keras.applications`' `obtain_input_shape` does for its models:
`resolve_input_shape` picks and checks `GoogLeNet`'s input shape, and the
helpers place the channel axis by `keras.config.image_data_format()`.
"""

import keras

from keras_googlenet.architecture import DEFAULT_INPUT_SIZE, MIN_INPUT_SIZE


def channel_axis():
    """The channel axis of a batch (`keras.config.image_data_format()`): -1 or 1."""
    return -1 if keras.config.image_data_format() == "channels_last" else 1


def channel_index():
    """The channel axis of a shape without its batch axis (an `input_shape`): 2 or 0."""
    return 2 if keras.config.image_data_format() == "channels_last" else 0


def spatial_shape(x, batch=True):
    """(height, width) of a batch `x` (a tensor or shape), or of a shape without
    its batch axis (`batch=False`), in the image data format."""
    shape = tuple(getattr(x, "shape", x))[1:] if batch else tuple(x)
    channel = channel_index()
    return tuple(d for i, d in enumerate(shape) if i != channel)


def resolve_input_shape(input_shape, input_tensor, stem, include_top):
    """The model's input shape: `input_shape` (validated by GoogLeNetConfig), else
    `input_tensor`'s, else the default: the stem's size with the top, any size
    (`(None, None, 3)`) without it, as in keras.applications. Raises ValueError
    for a bad one.

    Shapes have no batch axis and follow `keras.config.image_data_format()`:
    `(height, width, channels)` or `(channels, height, width)`.
    """
    data_format = keras.config.image_data_format()
    if input_shape is None and input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
        if len(input_shape) != 3:
            layout = "height, width, channels" if data_format == "channels_last" else (
                "channels, height, width")
            raise ValueError(
                f"`input_tensor` must be a batch of images, (batch, {layout}) for "
                f"{data_format}. Received: input_tensor with shape {input_tensor.shape}"
            )
    if input_shape is None:
        size = DEFAULT_INPUT_SIZE[stem] if include_top else None
        input_shape = (size, size, 3) if data_format == "channels_last" else (3, size, size)
    channels = input_shape[channel_index()]
    if channels is None:
        raise ValueError(
            f"The number of input channels (axis {channel_index()} of `input_shape` for "
            f"{data_format}) must be known. Received: input_shape={input_shape}"
        )
    minimum = MIN_INPUT_SIZE[stem]
    if any(d is not None and d < minimum for d in spatial_shape(input_shape, batch=False)):
        raise ValueError(
            f"Input size must be at least {minimum}x{minimum} for stem={stem!r}"
            + (" (use stem='cifar' for small images)" if stem == "imagenet" else "")
            + f". Received: input_shape={input_shape} ({data_format})"
        )
    return input_shape
