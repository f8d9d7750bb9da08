"""On-the-fly augmentation of uint8 NHWC batches: random pad-and-crop, flip, cutout.

Written once, in the NumPy API (`augment`), and run by both pipelines: with
`numpy` in the numpy pipeline and with `tf.experimental.numpy` inside
`tf.data`. Whether a run augments, and how, is `Augmentation.of(config)`
(`None`: off). The random numbers are an input, `draws`: each pipeline draws
them from a per-batch seed, so that a seeded run repeats its batches whatever
order its worker threads or parallel `tf.data` calls finish in.

Not Keras's preprocessing layers, which were checked (Keras 3.15) and do not
fit: `keras.layers.RandomCrop` crops a whole batch at one offset (here every
image has its own) and returns floats; `keras.layers.RandomErasing` erases a
rectangle of random area and aspect ratio kept inside the image, not the fixed
square, clipped at the border, of cutout; and their random numbers come from a
`keras.random.SeedGenerator`, a variable whose draws go to whichever parallel
call takes them first, so a seeded run would not repeat its batches. A layer
of our own built from `keras.ops` runs on the Keras backend, so inside
`tf.data` on JAX or PyTorch it needs Keras's private `DataLayer`, and in the
numpy pipeline it was slower than numpy (`docs/benchmarks.md`).

Cutout (DeVries & Taylor 2017, "Improved Regularization of Convolutional Neural
Networks with Cutout"): as in the paper the square's centre is any pixel, so
squares near the border are clipped. The fill is 0, black in the raw 0-255
images, like the pad-and-crop padding (the paper fills after normalisation,
i.e. with the mean; the model rescales inside, so 0 is what the data layer can
write).
"""

import dataclasses

import numpy as np

#: Uniform random numbers `augment` takes per image: row and column offset of
#: the crop, flip, row and column of the cutout square's centre.
DRAWS = 5


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """A run's augmentation: what both pipelines apply to every training batch.

    Attributes:
        pad: Padding of the pad-and-crop in pixels (0: no crop).
        cutout: Side of the cutout square in pixels (0: no cutout).
    """

    pad: int = 4
    cutout: int = 0

    @classmethod
    def of(cls, config):
        """The augmentation `config` asks for, or `None` with `config.augment` off."""
        return cls(config.pad, config.cutout) if config.augment else None

    def __call__(self, images, draws, xp=np):
        """`augment` with these settings."""
        return augment(images, draws, self.pad, self.cutout, xp)


def augment(images, draws, pad, cutout=0, xp=np):
    """Random pad-and-crop, horizontal flip and cutout of a uint8 NHWC batch.

    Each image is zero-padded by `pad` pixels on every side and cropped back to
    its size at a random offset (a shift of up to `pad` pixels in each
    direction), flipped left-right with probability 1/2, and then, with
    `cutout`, a `cutout`x`cutout` square centred at a random pixel is zeroed:
    it spans `centre - cutout // 2` to `centre - cutout // 2 + cutout` on each
    axis, clipped at the border. Everything is drawn per image.

    All of it is one gather: every output pixel is an input pixel or a zero.

    Args:
        images: Array of shape `(n, h, w, c)` with a known `n`.
        draws: float32 array of shape `(n, DRAWS)`, uniform in `[0, 1)`: its
            columns pick, each among its equally likely values, the choices
            `DRAWS` lists.
        pad: Padding in pixels; 0 disables the crop.
        cutout: Side of the cutout square in pixels; 0 disables it.
        xp: The NumPy-API module to compute with: `numpy`, or
            `tf.experimental.numpy` for tensors inside `tf.data`.

    Returns:
        An array of the same shape and dtype (`xp`'s).
    """
    n, h, w, c = images.shape
    if None in (n, h, w, c):
        raise ValueError(f"augment needs a batch of known shape; got {tuple(images.shape)}")
    choices = xp.asarray([2 * pad + 1, 2 * pad + 1, 2, h, w], dtype="int32")
    # float32 rounding may give u * k == k for u just below 1: clip to k - 1.
    picks = xp.asarray(xp.floor(draws * xp.asarray(choices, dtype="float32")), dtype="int32")
    picks = xp.minimum(picks, choices - 1)
    rows = xp.arange(h, dtype="int32")[None, :] + picks[:, 0:1] - pad  # (n, h) source rows
    cols = xp.arange(w, dtype="int32")[None, :]
    cols = xp.where(picks[:, 2:3] == 1, w - 1 - cols, cols) + picks[:, 1:2] - pad
    zero = ((rows < 0) | (rows >= h))[:, :, None] | ((cols < 0) | (cols >= w))[:, None, :]
    if cutout:
        r = xp.arange(h, dtype="int32")[None, :] - (picks[:, 3:4] - cutout // 2)
        q = xp.arange(w, dtype="int32")[None, :] - (picks[:, 4:5] - cutout // 2)
        square = ((r >= 0) & (r < cutout))[:, :, None] & ((q >= 0) & (q < cutout))[:, None, :]
        zero = zero | square
    # Pixel 0 of the gathered table is black; image i's pixels follow from 1 + i*h*w.
    index = (1 + xp.arange(n, dtype="int32")[:, None, None] * (h * w)
             + xp.clip(rows, 0, h - 1)[:, :, None] * w + xp.clip(cols, 0, w - 1)[:, None, :])
    index = xp.where(zero, 0, index)
    pixels = xp.concatenate(
        [xp.zeros((1, c), dtype=images.dtype), xp.reshape(images, (n * h * w, c))], axis=0)
    return xp.take(pixels, index, axis=0)
