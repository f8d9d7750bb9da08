"""On-the-fly augmentation of uint8 NHWC batches: random pad-and-crop, flip, cutout.

The same transformation twice: in numpy (`augment_numpy`, for the `numpy`
pipeline) and in TensorFlow ops (`augment_tf`, inside `tf.data`).

Cutout (DeVries & Taylor 2017, "Improved Regularization of Convolutional Neural
Networks with Cutout") is hand-written too: `keras.layers.RandomErasing` draws a
random area and aspect ratio (and one per batch on some backends), not the fixed
square the CIFAR-10 recipes use. As in the paper the square's centre is any
pixel, so squares near the border are clipped. The fill is 0, black in the raw
0-255 images, like the pad-and-crop padding (the paper fills after
normalisation, i.e. with the mean; the model rescales inside, so 0 is what the
data layer can write).
"""

import numpy as np


def augment_numpy(images, pad, rng, cutout=0):
    """Random pad-and-crop plus horizontal flip of a uint8 NHWC batch, in numpy.

    Each image is zero-padded by `pad` pixels on every side and cropped back to
    its size at a random offset (a shift of up to `pad` pixels), then flipped
    left-right with probability 1/2. Offsets and flips are drawn per image.

    Args:
        images: Array of shape `(n, h, w, c)`.
        pad: Padding in pixels; 0 disables the crop.
        rng: A `numpy.random.Generator`.
        cutout: Side of the square `cutout_numpy` zeroes after the crop and
            flip; 0 disables it.

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
    if cutout:
        images = cutout_numpy(images, cutout, rng)
    return images


def cutout_box(centre, size, extent):
    """`[start, stop)` of a cutout square's side along one axis, clipped to `[0, extent)`."""
    start = centre - size // 2
    return max(start, 0), min(start + size, extent)


def cutout_numpy(images, size, rng):
    """Zeroes one `size`x`size` square per image, centred at a random pixel.

    The square spans `centre - size // 2` to `centre - size // 2 + size` on
    each axis (`cutout_box`), clipped at the border. Modifies `images` in place
    and returns it.

    Args:
        images: Array of shape `(n, h, w, c)`.
        size: Side of the square in pixels (>= 1).
        rng: A `numpy.random.Generator`.
    """
    n, h, w, _ = images.shape
    rows = np.arange(h)[None, :] - (rng.integers(0, h, n) - size // 2)[:, None]
    cols = np.arange(w)[None, :] - (rng.integers(0, w, n) - size // 2)[:, None]
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    images[inside] = 0
    return images


def augment_tf(images, pad, cutout=0):
    """`augment_numpy` in TensorFlow ops, for a batch inside `tf.data`.

    Hand-written rather than `keras.layers.RandomCrop`, which crops a whole
    batch at one offset; this draws one offset per image.

    Args:
        images: A tensor of shape `(n, h, w, c)`.
        pad: Padding in pixels; 0 disables the crop.
        cutout: Side of the cutout square (`cutout_numpy`); 0 disables it.

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
    images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
    if cutout:
        rows = tf.range(h)[None, :] - (tf.random.uniform([n], 0, h, tf.int32) - cutout // 2)[:, None]
        cols = tf.range(w)[None, :] - (tf.random.uniform([n], 0, w, tf.int32) - cutout // 2)[:, None]
        inside = (((rows >= 0) & (rows < cutout))[:, :, None, None]
                  & ((cols >= 0) & (cols < cutout))[:, None, :, None])
        images = tf.where(inside, tf.zeros_like(images), images)
    return images
