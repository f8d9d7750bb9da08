"""Classification metrics of a set of predictions, in numpy: the one place they are computed.

`classification_report` turns the scores a model gave some labelled images
into what `evaluation.json` holds (`training.evaluate`): the confusion
matrix, top-1 and top-5 accuracy, and each class's accuracy, precision,
recall and F1. Conventions:

- the confusion matrix counts images by true class (rows) and predicted class
  (columns); the predicted class is the argmax of the scores, the first of
  tied ones (as `keras.metrics.CategoricalAccuracy` takes it), so top-1
  accuracy is the matrix's trace over its sum;
- top-k counts an image as correct when fewer than k classes score strictly
  higher than its true class (as `keras.metrics.TopKCategoricalAccuracy` and
  TensorFlow's `in_top_k`: ties at the boundary count as in the top k). It is
  only reported for more than `TOP_K` classes (with fewer it is always 1);
- a class's accuracy is the share of its images predicted as it: the same
  number as its recall (both are given, under the names people look for);
- a ratio with nothing to count is 0, not NaN: the precision of a class that
  is never predicted, the recall of a class without images (its `predicted`
  or `support` count, also reported, tells them apart from real zeros), and
  the F1 where precision and recall are both 0. This keeps the JSON plain
  (no NaN) and the macro averages defined, as scikit-learn's
  `zero_division=0` does.

Scores may be logits or probabilities: only their order within a row counts.
"""

import numpy as np

#: The k of the top-k accuracy reported beside top-1.
TOP_K = 5


def _labels(labels, num_classes):
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a vector of integer class indices. Received: "
                         f"dtype={labels.dtype}, shape={labels.shape}")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise ValueError(f"labels must be in [0, {num_classes}). Received: {sorted(set(bad))[:5]}")
    return labels


def _scores(scores, labels):
    scores = np.asarray(scores, dtype="float64")
    if scores.ndim != 2 or len(scores) != len(labels):
        raise ValueError(f"scores must be (images, classes) with one row per label. Received: "
                         f"shape={scores.shape} for {len(labels)} labels")
    if not np.isfinite(scores).all():
        raise ValueError("scores hold NaN or infinite values")
    return scores


def confusion_matrix(labels, predicted, num_classes):
    """Counts of images by true class (rows) and predicted class (columns).

    Args:
        labels: int vector of true classes.
        predicted: int vector of predicted classes, as long as `labels`.
        num_classes: Number of classes (the matrix's side).

    Returns:
        An int64 array `(num_classes, num_classes)`.

    Raises:
        ValueError: If a label is outside `[0, num_classes)` or the lengths differ.
    """
    labels = _labels(labels, num_classes)
    predicted = _labels(predicted, num_classes)
    if len(labels) != len(predicted):
        raise ValueError(f"labels and predictions differ in length: {len(labels)} and "
                         f"{len(predicted)}")
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts


def top_k_correct(scores, labels, k):
    """How many images have their true class among the `k` best-scored ones
    (fewer than `k` classes score strictly higher; ties count as in).

    Args:
        scores: `(images, classes)` floats.
        labels: int vector of true classes.
        k: The k (1 or more).
    """
    if k < 1:
        raise ValueError(f"k must be 1 or more. Received: k={k}")
    scores = np.asarray(scores, dtype="float64")
    labels = _labels(labels, scores.shape[-1] if scores.ndim == 2 else 0)
    scores = _scores(scores, labels)
    true = scores[np.arange(len(labels)), labels]
    higher = (scores > true[:, None]).sum(axis=1)
    return int((higher < k).sum())


def _ratio(numerator, denominator):
    """`numerator / denominator` elementwise, 0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype="float64")
    denominator = np.asarray(denominator, dtype="float64")
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def per_class_metrics(counts):
    """Each class's figures from a confusion matrix (`confusion_matrix`).

    Returns:
        A dict of vectors, one entry per class: `support` (its images),
        `predicted` (images predicted as it), `correct`, `accuracy` (= `recall`),
        `precision`, `recall`, `f1`; 0 where a ratio has nothing to count
        (see the module's docstring).
    """
    counts = np.asarray(counts)
    correct = np.diag(counts)
    support, predicted = counts.sum(axis=1), counts.sum(axis=0)
    precision, recall = _ratio(correct, predicted), _ratio(correct, support)
    return {
        "support": support, "predicted": predicted, "correct": correct,
        "accuracy": recall, "precision": precision, "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
    }


def classification_report(scores, labels, class_names):
    """Everything `evaluation.json` reports of `scores` against `labels`.

    Args:
        scores: `(images, classes)` floats (logits or probabilities).
        labels: int vector of true classes.
        class_names: The classes' names, in score order.

    Returns:
        A JSON-ready dict: `num_images`, `class_names`, `top1_accuracy`,
        `top5_accuracy` (only with more than `TOP_K` classes), `macro` (the
        unweighted means of the classes' precision, recall and F1),
        `per_class` (`{class name: {support, predicted, correct, accuracy,
        precision, recall, f1}}`) and `confusion_matrix` (rows: true class,
        columns: predicted class).

    Raises:
        ValueError: For inconsistent shapes, labels out of range, non-finite
            scores, or no images.
    """
    names = [str(c) for c in class_names]
    labels = _labels(labels, len(names))
    scores = _scores(scores, labels)
    if scores.shape[1] != len(names):
        raise ValueError(f"the scores have {scores.shape[1]} classes, the class names "
                         f"{len(names)}")
    if not len(labels):
        raise ValueError("no images to evaluate")
    counts = confusion_matrix(labels, scores.argmax(axis=1), len(names))
    metrics = per_class_metrics(counts)
    report = {
        "num_images": int(len(labels)),
        "class_names": names,
        "top1_accuracy": float(np.trace(counts) / len(labels)),
    }
    if len(names) > TOP_K:
        report[f"top{TOP_K}_accuracy"] = top_k_correct(scores, labels, TOP_K) / len(labels)
    report["macro"] = {m: float(metrics[m].mean()) for m in ("precision", "recall", "f1")}
    report["per_class"] = {
        name: {m: (int(v[i]) if v.dtype.kind == "i" else float(v[i])) for m, v in metrics.items()}
        for i, name in enumerate(names)
    }
    report["confusion_matrix"] = counts.tolist()
    return report
