"""On-the-fly augmentation of uint8 NHWC batches: random pad-and-crop plus flip.

The same transformation twice: in numpy (`augment_numpy`, for the `numpy`
pipeline) and in TensorFlow ops (`augment_tf`, inside `tf.data`).
"""

import numpy as np


def augment_numpy(images, pad, rng):
    """Random pad-and-crop plus horizontal flip of a uint8 NHWC batch, in numpy.

    Each image is zero-padded by `pad` pixels on every side and cropped back to
    its size at a random offset (a shift of up to `pad` pixels), then flipped
    left-right with probability 1/2. Offsets and flips are drawn per image.

    Args:
        images: Array of shape `(n, h, w, c)`.
        pad: Padding in pixels; 0 disables the crop.
        rng: A `numpy.random.Generator`.

    Returns:
        A new array of the same shape and dtype.
    """
    n, h, w, _ = images.shape
    if pad:
        padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        rows = rng.integers(0, 2 * pad + 1, n)[:, None] + np.arange(h)
        cols = rng.integers(0, 2 * pad + 1, n)[:, None] + np.arange(w)
        images = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    else:
        images = images.copy()
    flip = rng.random(n) < 0.5
    images[flip] = images[flip, :, ::-1]
    return images


def augment_tf(images, pad):
    """`augment_numpy` in TensorFlow ops, for a batch inside `tf.data`.

    Hand-written rather than `keras.layers.RandomCrop`, which crops a whole
    batch at one offset; this draws one offset per image.

    Args:
        images: A tensor of shape `(n, h, w, c)`.
        pad: Padding in pixels; 0 disables the crop.

    Returns:
        A tensor of the same shape and dtype.
    """
    import tensorflow as tf

    shape = tf.shape(images)
    n, h, w = shape[0], shape[1], shape[2]
    if pad:
        padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        dy = tf.random.uniform([n], 0, 2 * pad + 1, tf.int32)
        dx = tf.random.uniform([n], 0, 2 * pad + 1, tf.int32)
        rows = dy[:, None] + tf.range(h)[None, :]
        cols = dx[:, None] + tf.range(w)[None, :]
        images = tf.gather(padded, rows, axis=1, batch_dims=1)
        images = tf.gather(images, cols, axis=2, batch_dims=1)
    flip = tf.random.uniform([n]) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
