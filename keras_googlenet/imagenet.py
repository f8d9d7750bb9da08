"""The 1000 ImageNet classes, shipped with the package, and `decode_predictions`.

`imagenet_class_index.json` is Keras's own ImageNet class index, byte for byte
(the file `keras.applications.imagenet_utils.decode_predictions` downloads,
MD5 `KERAS_CLASS_INDEX_MD5`; see `tools/make_imagenet_classes.py`): class
index -> `[wnid, name]`, in the sorted-wnid order that torchvision's and Keras's
ImageNet models share. So `decode_predictions` returns exactly the
`(wnid, name, score)` tuples keras.applications returns, names such as
`'African_elephant'` and the index's two duplicated names (`'crane'`,
`'maillot'`) included, and no download is needed. This module is the one home
of the ImageNet class names; `pretrained.class_names("imagenet")` reads them here.
"""

import functools
import importlib.resources
import json

import numpy as np

CLASSES_FILE = "imagenet_class_index.json"
NUM_CLASSES = 1000

#: MD5 of `CLASSES_FILE`: the `file_hash` keras.applications checks its download against.
KERAS_CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"


@functools.lru_cache(maxsize=1)
def _classes():
    """`((wnid, name), ...)` in output order; RuntimeError if the shipped file is damaged."""
    text = (importlib.resources.files("keras_googlenet") / CLASSES_FILE).read_text("utf-8")
    try:
        index = json.loads(text)
        rows = tuple(tuple(index[str(i)]) for i in range(NUM_CLASSES))
    except (ValueError, KeyError, TypeError):
        rows = None
    if (rows is None or len(index) != NUM_CLASSES
            or any(len(r) != 2 or not all(isinstance(v, str) and v for v in r) for r in rows)):
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
