"""`training.metrics`: exact figures on hand-made predictions."""

import json

import numpy as np
import pytest

from training.metrics import (
    classification_report,
    confusion_matrix,
    per_class_metrics,
    top_k_correct,
)

CLASSES = ["cat", "dog", "frog"]

#: Six images; predictions (argmax): cat, cat, dog, cat, dog, dog. "frog" is
#: never predicted and its one image (the last) is predicted "dog".
LABELS = np.array([0, 0, 1, 1, 1, 2])
SCORES = np.array([
    [0.9, 0.05, 0.05],  # cat -> cat
    [0.6, 0.3, 0.1],    # cat -> cat
    [0.1, 0.8, 0.1],    # dog -> dog
    [0.5, 0.4, 0.1],    # dog -> cat
    [0.2, 0.7, 0.1],    # dog -> dog
    [0.1, 0.5, 0.4],    # frog -> dog
])


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    counts = confusion_matrix(LABELS, SCORES.argmax(1), 3)
    assert counts.tolist() == [[2, 0, 0], [1, 2, 0], [0, 1, 0]]


def test_per_class_figures_are_exact_and_a_never_predicted_class_has_precision_0():
    m = per_class_metrics(confusion_matrix(LABELS, SCORES.argmax(1), 3))
    assert m["support"].tolist() == [2, 3, 1]
    assert m["predicted"].tolist() == [3, 3, 0]
    assert m["correct"].tolist() == [2, 2, 0]
    np.testing.assert_allclose(m["precision"], [2 / 3, 2 / 3, 0.0])
    np.testing.assert_allclose(m["recall"], [1.0, 2 / 3, 0.0])
    np.testing.assert_allclose(m["accuracy"], m["recall"])
    np.testing.assert_allclose(m["f1"], [0.8, 2 / 3, 0.0])
    assert not np.isnan(m["precision"]).any()


def test_a_class_without_images_has_recall_0_not_nan():
    m = per_class_metrics(confusion_matrix([0, 0], [0, 1], 3))
    assert m["support"].tolist() == [2, 0, 0]
    np.testing.assert_allclose(m["recall"], [0.5, 0.0, 0.0])
    np.testing.assert_allclose(m["precision"], [1.0, 0.0, 0.0])


def test_report_of_three_classes_has_top1_and_no_top5():
    report = classification_report(SCORES, LABELS, CLASSES)
    assert report["num_images"] == 6
    assert report["top1_accuracy"] == pytest.approx(4 / 6)
    assert "top5_accuracy" not in report
    assert report["per_class"]["frog"] == {"support": 1, "predicted": 0, "correct": 0,
                                           "accuracy": 0.0, "precision": 0.0, "recall": 0.0,
                                           "f1": 0.0}
    assert report["macro"]["precision"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert report["macro"]["recall"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert report["confusion_matrix"] == [[2, 0, 0], [1, 2, 0], [0, 1, 0]]
    json.dumps(report, allow_nan=False)  # plain JSON


def test_top5_of_seven_classes_counts_the_true_class_among_the_five_best():
    # Rank of the true class (0) in each row: 1st, 5th, 6th, 7th.
    scores = np.array([
        [7, 6, 5, 4, 3, 2, 1],
        [3, 7, 6, 5, 4, 2, 1],
        [2, 7, 6, 5, 4, 3, 1],
        [1, 7, 6, 5, 4, 3, 2],
    ], dtype=float)
    labels = np.zeros(4, dtype=int)
    assert top_k_correct(scores, labels, 5) == 2
    assert top_k_correct(scores, labels, 1) == 1
    report = classification_report(scores, labels, [f"c{i}" for i in range(7)])
    assert report["top5_accuracy"] == pytest.approx(0.5)
    assert report["top1_accuracy"] == pytest.approx(0.25)


def test_top_k_counts_ties_at_the_boundary_as_in():
    scores = np.array([[1.0, 1.0, 1.0, 0.0]])
    assert top_k_correct(scores, np.array([2]), 1) == 1  # nothing scores strictly higher
    assert top_k_correct(scores, np.array([3]), 3) == 0


@pytest.mark.parametrize("labels, scores, match", [
    ([0, 3], SCORES[:2], r"in \[0, 3\)"),
    ([0, 1, 2], SCORES[:2], "one row per label"),
    ([0.0, 1.0], SCORES[:2], "integer"),
    ([0, 1], [[np.nan, 0, 0], [0, 1, 0]], "NaN"),
    (np.zeros(0, dtype=int), np.zeros((0, 3)), "no images"),
])
def test_bad_inputs_are_named(labels, scores, match):
    with pytest.raises(ValueError, match=match):
        classification_report(np.asarray(scores, dtype=float), np.asarray(labels), CLASSES)
