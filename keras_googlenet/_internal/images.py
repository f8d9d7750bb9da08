"""Reading images: the one decoder of the project (Pillow), and image folders.

The model takes raw RGB pixels in [0, 255]; everything here returns `uint8`
arrays of shape `(H, W, 3)` (or `(N, H, W, 3)`), which is also what the
exported TFLite models take. Training (`training.data`) and export
(`keras_googlenet.export`) both read images through this module. Pillow is
imported when an image is read, so the model itself does not need it.
"""

import os
import stat

import numpy as np

#: File extensions read as images (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


class ImageError(ValueError):
    """An image that cannot be read; the message names the file."""


def _pillow():
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - pillow is in every extra that reads images
        raise ImportError(
            "Reading images needs Pillow: pip install 'keras-googlenet[training]'."
        ) from e
    return Image


def _size(size):
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


#: Modes with an alpha channel: composited over black (transparent pixels become 0).
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def _to_rgb(image):
    """An 8-bit RGB copy of a Pillow image of any mode.

    16- and 32-bit integer greys (`I;16*`, `I`: 16-bit PNGs and TIFFs) are
    scaled from [0, 65535] to [0, 255] (Pillow's own conversion clips them,
    turning mid-grey 32768 into white); 32-bit float greys (`F`) are read as
    [0, 1], the convention of floating-point images (and of TensorFlow's
    `convert_image_dtype`). Alpha, including a palette's or a grey/RGB
    image's transparent colour, is composited over black, so a transparent
    pixel is black whatever colour it hides. Other modes (`1`, `L`, `P`,
    `CMYK`, `YCbCr`, ...) use Pillow's conversion.
    """
    Image = _pillow()
    mode = image.mode
    if mode == "I" or mode.startswith("I;16"):
        grey = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        grey = (grey * 255 + 32767) // 65535
    elif mode == "F":
        grey = np.rint(np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64)), 0, 1) * 255)
    elif mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint32)
        rgb = (rgba[..., :3] * rgba[..., 3:] + 127) // 255
        return Image.fromarray(rgb.astype(np.uint8), "RGB")
    else:
        return image.convert("RGB")
    return Image.fromarray(np.repeat(grey.astype(np.uint8)[..., None], 3, axis=-1), "RGB")


def _file_kind(mode):
    """What a `st_mode` that is not a regular file's is, in words."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character "
             "device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((kind for test, kind in kinds if test(mode)), "not a file")


def decode_image(path, size):
    """Reads one image file as RGB, resized (bilinear) to `size` when it differs.

    Every Pillow mode is read as 8-bit RGB (see `_to_rgb`): 16-bit images
    are scaled, alpha is composited over black.

    Args:
        path: The image file.
        size: `side` or `(height, width)`. Non-square images are squashed, not cropped.

    Returns:
        A `uint8` array of shape `(height, width, 3)`.

    Raises:
        ImageError: If the file cannot be read or decoded (also for decompression
            bombs), or is not a regular file (a FIFO, a device: refused unread).
    """
    Image = _pillow()
    h, w = _size(size)
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):  # a FIFO would block, /dev/zero never end
            raise OSError(f"not a regular file ({_file_kind(mode)})")
        with Image.open(path) as image:
            image = _to_rgb(image)
            if image.size != (w, h):
                image = image.resize((w, h), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        text = " ".join(str(e).split()) or type(e).__name__
        raise ImageError(f"Could not read image {os.fspath(path)!r}: {text}") from e


def resize_images(images, size):
    """Resizes a `uint8` batch `(N, H, W, C)` to `size` (bilinear); grey becomes RGB."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    h, w = _size(size)
    if images.shape[1:3] == (h, w):
        return images.astype(np.uint8, copy=False)
    Image = _pillow()
    return np.stack([
        np.asarray(Image.fromarray(im).resize((w, h), Image.BILINEAR)) for im in images
    ]).astype(np.uint8, copy=False)


def list_images(directory):
    """Sorted paths of the image files under `directory` (recursively)."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        found.extend(
            os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)
        )
    return found


def load_image_folder(directory, size, *, limit=None, seed=0, labels=None):
    """Reads up to `limit` images (a seeded random subset) from a folder tree.

    When `labels` is given and every image's parent folder is named after a
    label (`<root>/.../<class>/<file>`), integer labels are returned too.

    Args:
        directory: A folder (searched recursively).
        size: `side` or `(height, width)` of the returned images.
        limit: At most this many images (a random subset drawn with `seed`).
        seed: Seed of that subset.
        labels: Optional class names, index = label.

    Returns:
        `(images uint8 [N, H, W, 3], labels int64 [N] or None)`.

    Raises:
        ImageError: If the folder is missing, holds no image, or an image is unreadable.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ImageError(f"Image folder not found: {directory!r}.")
    files = list_images(directory)
    if not files:
        raise ImageError(
            f"No images ({', '.join(IMAGE_EXTENSIONS)}) found under {directory!r}."
        )
    if limit is not None and len(files) > limit:
        picked = np.random.default_rng(seed).choice(len(files), size=limit, replace=False)
        files = [files[i] for i in sorted(picked)]
    h, w = _size(size)
    images = np.empty((len(files), h, w, 3), np.uint8)
    for i, file in enumerate(files):
        images[i] = decode_image(file, (h, w))
    y = None
    if labels is not None:
        index = {label: i for i, label in enumerate(labels)}
        parents = [os.path.basename(os.path.dirname(f)) for f in files]
        if all(p in index for p in parents):
            y = np.array([index[p] for p in parents], np.int64)
    return images, y
