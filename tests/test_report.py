"""report.metrics on small cases worked out by hand (positive is class 0, column 0 of the scores)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meerkat.report.metrics import metrics

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


# --- curves and thresholds, worked out by hand ------------------------------------------------------
# Eight crops, highest score first: P N P P N N P N (P = positive). 4 positives, 4 negatives.
S8 = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
Y8 = np.array([1, 0, 1, 1, 0, 0, 1, 0], bool)


def test_roc_curve_and_auc_of_a_hand_worked_example():
    from meerkat.report.metrics import roc_curve

    roc = roc_curve(Y8, S8)
    # Lowering the threshold one crop at a time: TP 1 1 2 3 3 3 4 4, FP 0 1 1 1 2 3 3 4.
    np.testing.assert_allclose(roc["tpr"], [0, 0.25, 0.25, 0.5, 0.75, 0.75, 0.75, 1, 1])
    np.testing.assert_allclose(roc["fpr"], [0, 0, 0.25, 0.25, 0.25, 0.5, 0.75, 0.75, 1])
    # Pairs (positive, negative) with the positive above: 0.9 beats 4, 0.7 and 0.6 beat 3 each, 0.3 beats 1.
    assert roc["auc"] == pytest.approx(11 / 16)


def test_pr_curve_and_average_precision_of_a_hand_worked_example():
    from meerkat.report.metrics import pr_curve

    pr = pr_curve(Y8, S8)
    np.testing.assert_allclose(pr["recall"], [0.25, 0.25, 0.5, 0.75, 0.75, 0.75, 1, 1])
    np.testing.assert_allclose(pr["precision"], [1, 1 / 2, 2 / 3, 3 / 4, 3 / 5, 3 / 6, 4 / 7, 4 / 8])
    # Recall rises by 0.25 at precisions 1, 2/3, 3/4 and 4/7.
    assert pr["average_precision"] == pytest.approx(0.25 * (1 + 2 / 3 + 3 / 4 + 4 / 7))


def test_tied_scores_count_half_and_are_one_point():
    from meerkat.report.metrics import pr_curve, roc_curve

    # One positive and one negative tied at 0.5, a positive above them: pairs 1 + 0.5 of 2.
    y, s = np.array([1, 1, 0], bool), np.array([0.9, 0.5, 0.5])
    roc = roc_curve(y, s)
    assert roc["auc"] == pytest.approx(0.75)
    np.testing.assert_allclose(roc["tpr"], [0, 0.5, 1])  # the tie is one step, not two
    np.testing.assert_allclose(pr_curve(y, s)["precision"], [1, 2 / 3])


def test_curves_without_one_class_have_no_area():
    from meerkat.report.metrics import pr_curve, roc_curve

    assert roc_curve(np.array([1, 1], bool), np.array([0.2, 0.7]))["auc"] is None
    assert pr_curve(np.array([0, 0], bool), np.array([0.2, 0.7]))["average_precision"] is None


def test_a_row_of_the_threshold_table():
    from meerkat.report.metrics import at_threshold

    row = at_threshold(Y8, S8, 0.5)  # keeps 0.9 0.8 0.7 0.6 0.5: TP 3, FP 2, FN 1, TN 2
    counts = [row[k] for k in ("true_positives", "false_positives", "false_negatives", "true_negatives")]
    assert counts == [3, 2, 1, 2]
    assert row["precision"] == 0.6 and row["recall"] == 0.75
    assert row["false_positive_rate"] == 0.5 and row["kept_fraction"] == 0.625 and row["accuracy"] == 0.625
    assert at_threshold(Y8, S8, 0.95)["precision"] is None  # nothing kept


def test_recommended_thresholds_of_a_hand_worked_example():
    from meerkat.report.metrics import best_accuracy_threshold, recall_threshold

    # recall >= 0.95 of 4 positives needs all 4: the lowest positive, 0.3, must be kept. Any threshold
    # in (0.2, 0.3] does that; the highest with the fewest decimals is 0.3.
    assert recall_threshold(Y8, S8) == 0.3
    assert recall_threshold(Y8, S8, target=0.75) == 0.6  # 3 of 4: keep down to 0.6 (0.5 is a negative)
    # Correct crops by threshold: (0.6, 0.7] 5, (0.5, 0.6] 6 (TP 3, TN 3), (0.4, 0.5] 5, (0.2, 0.3] 5.
    assert best_accuracy_threshold(Y8, S8) == 0.6
    assert recall_threshold(np.array([0, 0], bool), np.array([0.1, 0.2])) is None


def test_recommended_thresholds_round_to_the_fewest_decimals_that_decide_alike():
    from meerkat.report.metrics import best_accuracy_threshold, recall_threshold

    y = np.array([1, 1, 0, 0], bool)
    # The lowest positive 0.123457 must be kept and the negative 0.1183 may go: 0.12 does both.
    assert recall_threshold(y, np.array([0.9, 0.123457, 0.1183, 0.01])) == 0.12
    # Only 0.123457 separates them from 0.123456: six decimals it is.
    assert recall_threshold(y, np.array([0.9, 0.123457, 0.123456, 0.01])) == 0.123457
    # Perfect separation anywhere in (0.3, 0.8]: ties go to the threshold nearest 0.5, 0.5 itself.
    assert best_accuracy_threshold(y, np.array([0.9, 0.8, 0.3, 0.1])) == 0.5
    # In (0.62, 0.8] the nearest to 0.5 with one decimal is 0.7.
    assert best_accuracy_threshold(y, np.array([0.9, 0.8, 0.62, 0.1])) == 0.7
    # The positive scores below both negatives: keeping none is best, with a threshold above 0.9.
    assert best_accuracy_threshold(np.array([1, 0, 0], bool), np.array([0.1, 0.8, 0.9])) == 1.0


def test_thresholds_are_compared_as_the_csv_prints_the_scores():
    from meerkat.report.metrics import evaluate_thresholds

    # 0.4999996 prints as 0.500000, and predict/scan call it positive at --threshold 0.5.
    scores = np.array([[0.4999996, 0.5000004], [0.2, 0.8]])
    rows = {r["threshold"]: r for r in evaluate_thresholds(np.array([0, 1]), scores)["table"]}
    assert rows[0.5]["true_positives"] == 1


def test_write_report_adds_aucs_and_the_threshold_table_and_is_deterministic(tmp_path):
    import csv
    import json

    from meerkat.report.metrics import write_report

    labels = Y8.astype(int) ^ 1  # class 0 is positive
    scores = np.stack([S8, 1 - S8], 1).astype(np.float32)
    uris = [f"/crops/{i}.jpg" for i in range(8)]
    write_report(tmp_path / "a", uris, labels, scores, NAMES)
    write_report(tmp_path / "b", uris, labels, scores, NAMES)
    for name in ("metrics.json", "thresholds.csv", "predictions.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["roc_auc"] == pytest.approx(11 / 16, abs=1e-6)
    assert m["average_precision"] == pytest.approx(0.747024, abs=1e-6)
    assert m["thresholds"]["recall_target"]["threshold"] == 0.3
    assert m["thresholds"]["best_accuracy"]["threshold"] == 0.6
    assert m["thresholds"]["deepmeerkat"]["threshold"] == 0.05
    assert m["thresholds"]["default"]["recall"] == 0.75
    rows = list(csv.DictReader((tmp_path / "a" / "thresholds.csv").open()))
    assert list(rows[0]) == [
        "threshold", "precision", "recall", "false_positive_rate", "kept_fraction", "accuracy",
        "true_positives", "false_positives", "false_negatives", "true_negatives", "note",
    ]  # fmt: skip
    notes = {float(r["threshold"]): r["note"] for r in rows}
    assert notes[0.5] == "default" and notes[0.05] == "DeepMeerkat"
    assert notes[0.3] == "recall >= 0.95" and notes[0.6] == "best accuracy"
    assert [float(r["threshold"]) for r in rows] == sorted(float(r["threshold"]) for r in rows)


# --- one rule for "positive" ------------------------------------------------------------------------


def test_a_score_that_prints_as_the_threshold_is_positive_everywhere(tmp_path):
    """0.4999996 prints as 0.500000: predict and scan call it positive, so metrics.json and
    predictions.csv must too (argmax called it negative)."""
    import csv
    import json

    from meerkat.report.metrics import write_report

    labels = np.array([0, 0, 1, 1])
    p = np.array([0.4999996, 0.9, 0.4999994, 0.1], np.float32)
    scores = np.stack([p, 1 - p], axis=1)
    result = write_report(tmp_path, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], labels, scores, NAMES)
    assert result["confusion_matrix"]["matrix"] == [[2, 0], [0, 2]]
    with open(tmp_path / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["score_positive"], r["predicted"]) for r in rows] == [
        ("0.500000", "positive"),
        ("0.900000", "positive"),
        ("0.499999", "negative"),
        ("0.100000", "negative"),
    ]
    assert json.loads((tmp_path / "metrics.json").read_text()) == result


def test_metrics_json_is_the_threshold_tables_half_row(tiny_run):
    import json

    import pandas as pd

    m = json.loads((tiny_run / "report" / "metrics.json").read_text())
    row = pd.read_csv(tiny_run / "report" / "thresholds.csv").set_index("threshold").loc[0.5]
    for key in ("accuracy", "precision", "recall", "false_positive_rate"):
        assert m[key] == (None if pd.isna(row[key]) else row[key]), key
    (tp, fn), (fp, tn) = m["confusion_matrix"]["matrix"]
    assert (tp, fn, fp, tn) == tuple(
        row[k] for k in ("true_positives", "false_negatives", "false_positives", "true_negatives")
    )
    predictions = pd.read_csv(tiny_run / "report" / "predictions.csv")
    assert ((predictions["score_positive"] >= 0.5) == (predictions["predicted"] == "positive")).all()


# --- any number of classes (issue 24) ---------------------------------------------------------------
# Three classes, "empty" the background: 8 crops, worked out by hand.
SPECIES3 = ["Red fox", "deer", "empty"]
LABELS3 = np.array([0, 0, 0, 1, 1, 2, 2, 2])
PROBS3 = np.array(
    [
        [0.7, 0.2, 0.1],  # fox -> fox
        [0.5, 0.4, 0.1],  # fox -> fox
        [0.2, 0.7, 0.1],  # fox -> deer
        [0.1, 0.8, 0.1],  # deer -> deer
        [0.6, 0.3, 0.1],  # deer -> fox
        [0.1, 0.1, 0.8],  # empty -> empty
        [0.2, 0.1, 0.7],  # empty -> empty
        [0.1, 0.6, 0.3],  # empty -> deer
    ]
)


def test_species_metrics_of_a_hand_worked_example():
    from meerkat.report.metrics import evaluate

    m, _ = evaluate(LABELS3, PROBS3, SPECIES3)
    assert m["confusion_matrix"] == {
        "labels": SPECIES3,
        "rows_are": "true label",
        "columns_are": "predicted label",
        "matrix": [[2, 1, 0], [1, 1, 0], [0, 1, 2]],
    }
    per = m["per_class"]
    # fox: 2 of 3 right, 3 called fox; deer: 1 of 2, 3 called deer; empty: 2 of 3, 2 called empty.
    assert per["Red fox"] == {"precision": 0.666667, "recall": 0.666667, "f1": 0.666667, "support": 3}
    assert per["deer"] == {"precision": 0.333333, "recall": 0.5, "f1": 0.4, "support": 2}
    assert per["empty"] == {"precision": 1.0, "recall": 0.666667, "f1": 0.8, "support": 3}
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.4 + 0.8) / 3, abs=1e-6)
    assert m["top1"] == 0.625
    assert "top3" not in m  # with 3 classes every crop is in the top 3
    assert m["counts"] == {"total": 8, "Red fox": 3, "deer": 2, "empty": 3}


def test_top3_counts_a_crop_whose_class_is_among_its_three_highest_scores():
    from meerkat.report.metrics import evaluate

    probs = np.array(
        [
            [0.1, 0.2, 0.3, 0.4],  # a is 4th: missed
            [0.4, 0.3, 0.2, 0.1],  # b is 2nd: top-3, not top-1
            [0.1, 0.2, 0.6, 0.1],  # c is 1st
            [0.3, 0.3, 0.3, 0.1],  # d is 4th: missed
        ]
    )
    m, _ = evaluate(np.array([0, 1, 2, 3]), probs, ["a", "b", "c", "d"])
    assert (m["top1"], m["top3"]) == (0.25, 0.5)


def test_species_thresholds_are_animal_versus_background(tmp_path):
    """With a background class the threshold table, ROC and PR are scan's keep rule: 1 - P(empty)."""
    from meerkat.report.metrics import evaluate, evaluate_thresholds

    m, evaluation = evaluate(LABELS3, PROBS3, SPECIES3)
    keep = 1 - PROBS3[:, 2]
    expected = evaluate_thresholds(LABELS3 == 2, np.stack([keep, 1 - keep], 1))  # animal = class 0 of a pair
    assert m["kept_when"] == "1 - P(empty) >= threshold"
    np.testing.assert_array_equal(evaluation["is_positive"], LABELS3 != 2)
    np.testing.assert_allclose(evaluation["scores"], expected["scores"])
    assert evaluation["table"] == expected["table"]
    assert m["roc_auc"] == pytest.approx(expected["roc"]["auc"], abs=1e-6)
    assert m["thresholds"]["default"]["threshold"] == 0.5


def test_species_without_a_background_class_have_no_threshold_table(tmp_path):
    from meerkat.report.metrics import evaluate, write_report

    names = ["Red fox", "deer", "badger"]
    m, evaluation = evaluate(LABELS3, PROBS3, names)
    assert evaluation is None
    assert not {"roc_auc", "average_precision", "thresholds", "kept_when"} & set(m)
    uris = [f"{i}.jpg" for i in range(8)]
    write_report(tmp_path, uris, LABELS3, PROBS3, SPECIES3)  # an earlier run's, with a background class
    assert (tmp_path / "thresholds.csv").exists()
    write_report(tmp_path, uris, LABELS3, PROBS3, names)
    assert not (tmp_path / "thresholds.csv").exists()


def test_species_predictions_csv_has_a_score_column_per_class_and_reads_back(tmp_path):
    import csv

    from meerkat.report.metrics import write_report
    from meerkat.train.pipeline import _saved_scores

    uris = [f"/crops/{i}.jpg" for i in range(8)]
    write_report(tmp_path, uris, LABELS3, PROBS3.astype(np.float32), SPECIES3)
    with open(tmp_path / "predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["image_uri", "label", "predicted", "score_Red fox", "score_deer", "score_empty"]
    assert [r["predicted"] for r in rows] == ["Red fox", "Red fox", "deer", "deer", "Red fox", "empty", "empty", "deer"]
    assert rows[2]["score_deer"] == "0.700000"
    back = _saved_scores(tmp_path / "predictions.csv", uris[::-1], SPECIES3)
    np.testing.assert_allclose(back, PROBS3[::-1], atol=1e-6)


def test_pair_predictions_read_back_as_two_columns(tmp_path):
    from meerkat.report.metrics import write_report
    from meerkat.train.pipeline import _saved_scores

    scores = np.stack([S8, 1 - S8], 1)
    write_report(tmp_path, [f"{i}.jpg" for i in range(8)], Y8.astype(int) ^ 1, scores, NAMES)
    np.testing.assert_allclose(_saved_scores(tmp_path / "predictions.csv", ["1.jpg", "0.jpg"], NAMES), scores[[1, 0]])


@given(
    n=st.integers(2, 6),
    rows=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=40, deadline=None)
def test_species_metrics_agree_with_each_other(n, rows, seed):
    from meerkat.report.metrics import evaluate

    rng = np.random.default_rng(seed)
    names = [f"class {i}" for i in range(n)]
    labels = rng.integers(0, n, rows)
    probs = rng.dirichlet(np.ones(n), rows)
    m, _ = evaluate(labels, probs, names)
    matrix = np.array(m["confusion_matrix"]["matrix"])
    assert matrix.shape == (n, n) and matrix.sum() == rows
    supports = [m["per_class"][c]["support"] for c in names]
    assert supports == matrix.sum(1).tolist() == np.bincount(labels, minlength=n).tolist()
    assert m["top1"] == pytest.approx(np.trace(matrix) / rows, abs=1e-6)
    assert m["top1"] == pytest.approx((probs.argmax(1) == labels).mean(), abs=1e-6)
    assert ("top3" in m) == (n > 3)
    if n > 3:
        assert m["top3"] >= m["top1"]
    # F1 is undefined only for a class neither present nor predicted; macro-F1 is the mean of the others.
    f1s = [m["per_class"][c]["f1"] for c in names]
    assert [f is None for f in f1s] == ((matrix.sum(0) + matrix.sum(1)) == 0).tolist()
    assert m["macro_f1"] == pytest.approx(np.mean([f for f in f1s if f is not None]), abs=2e-6)
