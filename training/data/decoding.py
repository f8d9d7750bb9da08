"""Decoding lists of image files into uint8 arrays, in threads.

Every image goes through the project's one decoder,
`keras_googlenet._internal.images.decode_image`; a file it cannot read is returned as
"bad" for the caller to skip or report.
"""

import concurrent.futures
import os

import numpy as np

from keras_googlenet._internal.images import ImageError, decode_image


def _decode_or_none(path, size):
    try:
        return decode_image(path, size)
    except ImageError:
        return None


def decode_files(files, labels, size):
    """Decodes image files in threads (Pillow releases the GIL).

    Args:
        files: Sequence of file paths.
        labels: int labels, a numpy array indexed like `files`.
        size: Side of the (square) decoded images; others are resized.

    Returns:
        `(images, labels, bad)`: uint8 images `(n, size, size, 3)` and int32
        labels of the readable files, and the paths of the unreadable ones.
    """
    workers = min(8, (os.cpu_count() or 1) * 2)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        decoded = list(pool.map(lambda f: _decode_or_none(f, size), files, chunksize=64))
    good = [i for i, image in enumerate(decoded) if image is not None]
    bad = [str(files[i]) for i, image in enumerate(decoded) if image is None]
    x = np.stack([decoded[i] for i in good]) if good else np.zeros((0, size, size, 3), np.uint8)
    return x, labels[good].astype("int32"), bad
