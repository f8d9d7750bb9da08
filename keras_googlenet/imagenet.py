"""The 1000 ImageNet classes, shipped with the package, and `decode_predictions`.

`imagenet_classes.txt` lists `<wnid>\\t<name>` in torchvision's class order
(made by `tools/make_imagenet_classes.py`), so no download is needed.
"""

import functools
import importlib.resources

import numpy as np

CLASSES_FILE = "imagenet_classes.txt"
NUM_CLASSES = 1000


@functools.lru_cache(maxsize=1)
def _classes():
    text = (importlib.resources.files("keras_googlenet") / CLASSES_FILE).read_text("utf-8")
    rows = tuple(tuple(line.split("\t")) for line in text.splitlines())
    if len(rows) != NUM_CLASSES or any(len(r) != 2 for r in rows):
        raise RuntimeError(f"keras_googlenet/{CLASSES_FILE} is damaged; reinstall the package")
    return rows


def imagenet_class_names():
    """The 1000 ImageNet class names, in the order of the pretrained model's outputs."""
    return [name for _, name in _classes()]


def decode_predictions(preds, top=5):
    """Decodes the predictions of an ImageNet model (keras.applications convention).

    Args:
        preds: Array of shape `(batch, 1000)`: logits or probabilities.
        top: How many of the best classes to return per sample.

    Returns:
        A list (one per sample) of lists of `(wnid, class_name, score)` tuples,
        best first; `score` is the value in `preds`.

    Raises:
        ValueError: If `preds` is not `(batch, 1000)` or `top` is not in 1..1000.
    """
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != NUM_CLASSES:
        raise ValueError(
            "`decode_predictions` expects a batch of predictions of shape (samples, 1000). "
            f"Received: preds with shape {preds.shape}"
        )
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 1 <= top <= NUM_CLASSES:
        raise ValueError(f"`top` must be an integer from 1 to {NUM_CLASSES}. Received: top={top!r}")
    classes = _classes()
    results = []
    for row in preds:
        best = np.argsort(-row, kind="stable")[:top]
        results.append([(*classes[i], float(row[i])) for i in best])
    return results
