"""report.metrics on small cases worked out by hand (positive is class 0, column 0 of the scores)."""

import numpy as np
import pytest

from meerkat.report import metrics

NAMES = ["positive", "negative"]
POS, NEG = [0.9, 0.1], [0.2, 0.8]  # scores that predict positive / negative


def test_metrics_of_a_hand_worked_example():
    # 3 positives predicted P, P, N; 5 negatives predicted P, P, N, N, N.
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    scores = np.array([POS, POS, NEG, POS, POS, NEG, NEG, NEG])
    # TP 2, FN 1, FP 2, TN 3
    m = metrics(labels, scores, NAMES)
    assert m["confusion_matrix"]["matrix"] == [[2, 1], [2, 3]]
    assert m["accuracy"] == 0.625  # 5 / 8
    assert m["precision"] == 0.5  # 2 / 4
    assert m["recall"] == pytest.approx(0.666667, abs=1e-6)  # 2 / 3
    assert m["false_positive_rate"] == 0.4  # 2 / 5
    assert m["false_negative_rate"] == pytest.approx(0.333333, abs=1e-6)  # 1 / 3
    assert m["counts"] == {"total": 8, "positive": 3, "negative": 5}


def test_no_positive_predictions_gives_no_precision():
    # 2 positives and 3 negatives, all predicted negative: TP 0, FN 2, FP 0, TN 3.
    m = metrics(np.array([0, 0, 1, 1, 1]), np.array([NEG] * 5), NAMES)
    assert m["confusion_matrix"]["matrix"] == [[0, 2], [0, 3]]
    assert m["precision"] is None  # 0 / 0: undefined, not 0
    assert m["accuracy"] == 0.6
    assert m["recall"] == 0.0
    assert m["false_positive_rate"] == 0.0
    assert m["false_negative_rate"] == 1.0


def test_no_negatives_gives_no_false_positive_rate():
    # 2 positives, both predicted positive: TP 2, FN 0, FP 0, TN 0.
    m = metrics(np.array([0, 0]), np.array([POS, POS]), NAMES)
    assert m["confusion_matrix"]["matrix"] == [[2, 0], [0, 0]]
    assert (m["accuracy"], m["precision"], m["recall"], m["false_negative_rate"]) == (1.0, 1.0, 1.0, 0.0)
    assert m["false_positive_rate"] is None
    assert m["counts"] == {"total": 2, "positive": 2, "negative": 0}
