"""Stage 5: eval-set predictions -> report/metrics.json, predictions.csv and thresholds.csv.

Everything here is a function of the eval labels and scores only, so the same inputs give the same
bytes (timings, versions and paths go to run.json). The curves are computed here with numpy:

- the scores are taken as predictions.csv prints them (6 decimals), which is what `predict` and
  `scan` compare with --threshold: a crop is positive when score_positive >= threshold;
- ROC: the true- and false-positive rates at every distinct score used as the threshold, from
  (0, 0) to (1, 1); its AUC is the trapezoid area, which equals the chance that a random positive
  scores above a random negative (ties count half);
- precision-recall: precision and recall at every distinct score; its area is the average precision
  sum((R_k - R_(k-1)) * P_k), the step-wise area without interpolation.

Any other classes (issue 24, samples/classes.py) get per-class precision, recall, F1 and support,
macro-F1 (the mean F1 of the classes present or predicted), top-1 and, from 4 classes, top-3
accuracy (with 3 or fewer every crop is in its top 3), and the N x N confusion matrix of the top
class. When some classes are background, the curves and thresholds above are scan's keep rule,
animal against background: a crop is kept when 1 - P(background) >= threshold. Without a
background class there is no threshold to choose, and no table.

The page, the TensorBoard eval summaries and the model card (publish.py) are drawn from
what `evaluate` returns.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from meerkat.core import atomic, ownership
from meerkat.samples.classes import DEFAULT_THRESHOLD, SCORE_DECIMALS, Classes, from_labels, printed

# Thresholds of the table: a grid, plus 0.5 (the default) and 0.05 (DeepMeerkat's operating point).
GRID = (0.01, 0.02, 0.05, *(round(0.1 * i, 1) for i in range(1, 10)), 0.95, 0.98, 0.99)
DEEPMEERKAT_THRESHOLD = 0.05  # DeepMeerkat kept a box unless P(negative) > 0.95
RECALL_TARGET = 0.95
TOP_K = 3


def metrics(labels: np.ndarray, scores: np.ndarray, names: list[str]) -> dict:
    """Binary metrics with `names[0]` (positive) as the class of interest, at the default threshold.

    A crop is called positive by the one rule of predict, scan and the threshold table: its score as
    printed is at least the threshold. So these figures are the table's 0.5 row.
    """
    row = at_threshold(np.asarray(labels) == 0, printed(scores[:, 0]), DEFAULT_THRESHOLD)
    tp, fn, fp, tn = (row[k] for k in ("true_positives", "false_negatives", "false_positives", "true_negatives"))
    pos = np.asarray(labels) == 0
    return {
        **{k: row[k] for k in ("accuracy", "precision", "recall", "false_positive_rate")},
        "false_negative_rate": _ratio(fn, fn + tp),
        "confusion_matrix": {
            "labels": names,
            "rows_are": "true label",
            "columns_are": "predicted label",
            "matrix": [[tp, fn], [fp, tn]],
        },
        "counts": {"total": int(len(labels)), names[0]: int(pos.sum()), names[1]: int((~pos).sum())},
    }


def species_metrics(labels: np.ndarray, scores: np.ndarray, classes: Classes) -> dict:
    """Per-class precision, recall, F1 and support, macro-F1, top-1 (top-3 from 4 classes) and the
    N x N confusion matrix of each crop's top class (classes.predicted)."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    n, total = len(classes), len(labels)
    matrix = np.zeros((n, n), np.int64)
    np.add.at(matrix, (labels, classes.predicted(scores)), 1)
    per_class, f1s = {}, []
    for i, name in enumerate(classes.names):
        tp, called, support = int(matrix[i, i]), int(matrix[:, i].sum()), int(matrix[i].sum())
        # F1 = 2TP / (2TP + FP + FN): undefined only for a class neither present nor predicted
        f1 = _ratio(2 * tp, called + support)
        per_class[name] = {"precision": _ratio(tp, called), "recall": _ratio(tp, support), "f1": f1, "support": support}
        if called + support:
            f1s.append(2 * tp / (called + support))
    top = {"top1": _ratio(int(np.trace(matrix)), total)}
    if n > TOP_K:  # with TOP_K classes or fewer every crop's class is in its top TOP_K
        ranked = np.argsort(-scores, axis=1, kind="stable")[:, :TOP_K]
        top[f"top{TOP_K}"] = _ratio(int((ranked == labels[:, None]).any(axis=1).sum()), total)
    return {
        **top,
        "macro_f1": round(float(np.mean(f1s)), SCORE_DECIMALS) if f1s else None,
        "per_class": per_class,
        "confusion_matrix": {
            "labels": list(classes.names),
            "rows_are": "true label",
            "columns_are": "predicted label",
            "matrix": matrix.tolist(),
        },
        "counts": {"total": total, **{name: per_class[name]["support"] for name in classes.names}},
    }


def background_scores(classes: Classes) -> str:
    """The background classes' scores as a rule spells them: P(empty), P(blank) + P(empty)."""
    return " + ".join(f"P({n})" for n in classes.names if n in classes.background)


def keep_rule(classes: Classes) -> str:
    """scan's rule for keeping a crop of species, in words: 1 - P(empty) >= threshold."""
    return f"1 - {background_scores(classes).replace(' + ', ' - ')} >= threshold"


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, SCORE_DECIMALS) if b else None


def _cumulative(is_pos: np.ndarray, scores: np.ndarray):
    """At each distinct score, highest first: (threshold, true positives, false positives) kept by it."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], is_pos[order].astype(np.int64)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each run of equal scores
    tps = np.cumsum(y)[last]
    return s[last], tps, last + 1 - tps


def roc_curve(is_pos, scores) -> dict:
    """False- and true-positive rates from (0, 0) to (1, 1), and the trapezoid AUC (None without
    both classes). thresholds[i] is the lowest score kept at point i (inf at (0, 0))."""
    is_pos, scores = np.asarray(is_pos, bool), np.asarray(scores, np.float64)
    p, n = int(is_pos.sum()), int((~is_pos).sum())
    thresholds, tps, fps = _cumulative(is_pos, scores)
    tpr = np.r_[0.0, tps / p] if p else np.zeros(len(tps) + 1)
    fpr = np.r_[0.0, fps / n] if n else np.zeros(len(fps) + 1)
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)) if p and n else None
    return {"fpr": fpr, "tpr": tpr, "thresholds": np.r_[np.inf, thresholds], "auc": auc}


def pr_curve(is_pos, scores) -> dict:
    """Precision and recall at each distinct score (highest threshold first), and the average
    precision (None without positives)."""
    is_pos, scores = np.asarray(is_pos, bool), np.asarray(scores, np.float64)
    p = int(is_pos.sum())
    thresholds, tps, fps = _cumulative(is_pos, scores)
    precision = tps / (tps + fps)
    recall = tps / p if p else np.zeros(len(tps))
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision)) if p else None
    return {"precision": precision, "recall": recall, "thresholds": thresholds, "average_precision": ap}


def at_threshold(is_pos, scores, threshold: float) -> dict:
    """One row of the threshold table: crops with score >= threshold are kept (called positive)."""
    is_pos, scores = np.asarray(is_pos, bool), np.asarray(scores, np.float64)
    kept = scores >= threshold
    tp, fp = int((kept & is_pos).sum()), int((kept & ~is_pos).sum())
    fn, tn = int((~kept & is_pos).sum()), int((~kept & ~is_pos).sum())
    return {
        "threshold": threshold,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "false_positive_rate": _ratio(fp, fp + tn),
        "kept_fraction": _ratio(tp + fp, len(scores)),
        "accuracy": _ratio(tp + tn, len(scores)),
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "true_negatives": tn,
    }


def _units(x: float) -> int:
    return round(x * 10**SCORE_DECIMALS)


def _roundest(lo: float, hi: float, prefer: float | None = None) -> float:
    """The number with the fewest decimals in (lo, hi] (hi has at most SCORE_DECIMALS); among those,
    the closest to `prefer`, or the highest. Every threshold in (lo, hi] decides the same way."""
    lo_u, hi_u = (_units(lo) if lo > -math.inf else -1), _units(hi)
    for decimals in range(1, SCORE_DECIMALS + 1):
        unit = 10 ** (SCORE_DECIMALS - decimals)
        first, last = max(lo_u // unit + 1, 1), hi_u // unit  # > lo, <= hi, and above 0
        if first <= last:
            m = last if prefer is None else min(max(round(_units(prefer) / unit), first), last)
            return round(m * unit / 10**SCORE_DECIMALS, decimals)
    return hi


def recall_threshold(is_pos, scores, target: float = RECALL_TARGET) -> float | None:
    """The highest threshold that keeps recall >= target on these scores, rounded to the fewest
    decimals that decide every crop the same way. None without positives."""
    is_pos, scores = np.asarray(is_pos, bool), np.asarray(scores, np.float64)
    positives = np.sort(scores[is_pos])[::-1]
    if not len(positives):
        return None
    keep = math.ceil(round(target * len(positives), 9))  # positives that must score >= threshold
    hi = float(positives[keep - 1])
    below = scores[scores < hi]
    return _roundest(float(below.max()) if len(below) else -math.inf, hi)


def best_accuracy_threshold(is_pos, scores) -> float:
    """The threshold with the highest accuracy on these scores; ties go to the one nearest 0.5, and it
    is rounded to the fewest decimals that decide every crop the same way."""
    is_pos, scores = np.asarray(is_pos, bool), np.asarray(scores, np.float64)
    negatives = int((~is_pos).sum())
    highs, tps, fps = _cumulative(is_pos, scores)  # a threshold in (next lower score, highs[i]] keeps tps[i] + fps[i]
    lows = np.r_[highs[1:], -np.inf]
    correct = tps + negatives - fps
    if highs[0] < 1.0:  # a threshold above every score keeps none
        highs, lows, correct = np.r_[1.0, highs], np.r_[highs[0], lows], np.r_[negatives, correct]
    half = DEFAULT_THRESHOLD
    distance = np.where((lows < half) & (half <= highs), 0.0, np.minimum(np.abs(lows - half), np.abs(highs - half)))
    best = np.lexsort((distance, -correct))[0]
    return _roundest(float(lows[best]), float(highs[best]), prefer=half)


def evaluate_thresholds(labels: np.ndarray, scores: np.ndarray) -> dict:
    """The curves, their areas, the recommended thresholds and the threshold table (rows, with marks)."""
    is_pos, s = np.asarray(labels) == 0, printed(scores[:, 0] if np.ndim(scores) == 2 else scores)
    roc, pr = roc_curve(is_pos, s), pr_curve(is_pos, s)
    recall_t = recall_threshold(is_pos, s)
    accuracy_t = best_accuracy_threshold(is_pos, s)
    marks: dict[float, list[str]] = {t: [] for t in GRID}
    marks[DEFAULT_THRESHOLD].append("default")
    marks[DEEPMEERKAT_THRESHOLD].append("DeepMeerkat")
    if recall_t is not None:
        marks.setdefault(recall_t, []).append(f"recall >= {RECALL_TARGET:g}")
    marks.setdefault(accuracy_t, []).append("best accuracy")
    rows = [{**at_threshold(is_pos, s, t), "note": "; ".join(marks[t])} for t in sorted(marks)]
    return {
        "scores": s,
        "is_positive": is_pos,
        "roc": roc,
        "pr": pr,
        "recall_threshold": recall_t,
        "best_accuracy_threshold": accuracy_t,
        "table": rows,
    }


def _row(rows: list[dict], threshold) -> dict | None:
    return next((r for r in rows if r["threshold"] == threshold), None)


def summary(evaluation: dict, background: str = "P(negative)") -> dict:
    """What metrics.json and the model card say about the curves and thresholds (`background`: the
    scores DeepMeerkat's operating point caps)."""
    rows = evaluation["table"]
    recall_t, accuracy_t = evaluation["recall_threshold"], evaluation["best_accuracy_threshold"]

    def pick(t, rule):
        row = _row(rows, t)
        return None if row is None else {"rule": rule, **{k: v for k, v in row.items() if k != "note"}}

    auc, ap = evaluation["roc"]["auc"], evaluation["pr"]["average_precision"]
    return {
        "roc_auc": None if auc is None else round(auc, 6),
        "average_precision": None if ap is None else round(ap, 6),
        "thresholds": {
            "recall_target": pick(recall_t, f"the highest threshold that keeps recall >= {RECALL_TARGET:g}"),
            "best_accuracy": pick(accuracy_t, "the threshold with the highest accuracy (ties: nearest 0.5)"),
            "default": pick(DEFAULT_THRESHOLD, "meerkat's default, the balanced choice"),
            "deepmeerkat": pick(DEEPMEERKAT_THRESHOLD, f"DeepMeerkat's operating point: {background} <= 0.95"),
        },
    }


def evaluate(labels: np.ndarray, scores: np.ndarray, names: list[str]) -> tuple[dict, dict | None]:
    """metrics.json's content, and the evaluation it summarises (evaluate_thresholds): for species,
    of animal against background, None without a background class."""
    classes = from_labels(names)
    if classes.is_pair:
        evaluation = evaluate_thresholds(labels, scores)
        return {**metrics(labels, scores, names), **summary(evaluation)}, evaluation
    result = species_metrics(labels, scores, classes)
    if not classes.background:
        return result, None
    background = [classes.index(n) for n in classes.background]
    animal = np.where(np.isin(labels, background), 1, 0)  # 0: the "positive" of the curves
    evaluation = evaluate_thresholds(animal, classes.keep_scores(scores))
    extra = {"kept_when": keep_rule(classes), **summary(evaluation, background_scores(classes))}
    return {**result, **extra}, evaluation


def write_report(report_dir, uris, labels, scores, names) -> dict:
    """metrics.json, predictions.csv and thresholds.csv (none without a threshold to choose): same
    inputs and seed, same bytes (timings go to run.json). Returns metrics.json's content."""
    report_dir = Path(report_dir)
    classes, scores = from_labels(names), np.asarray(scores)
    result, evaluation = evaluate(labels, scores, names)
    scored = classes.names[:1] if classes.is_pair else classes.names  # the pair: score_positive alone, as ever
    table = pd.DataFrame(
        {
            "image_uri": uris,
            "label": np.take(names, labels),
            "predicted": np.take(names, classes.predicted(scores)),
            **{classes.score_column(name): scores[:, classes.index(name)] for name in scored},
        }
    )
    with atomic.atomic_open(report_dir / "predictions.csv", "w", newline="", **atomic.TEXT) as f:
        table.to_csv(f, index=False, lineterminator="\n", float_format="%.6f")
    if evaluation is None:
        ownership.remove(report_dir / "thresholds.csv", "a report without a background class")
    else:
        with atomic.atomic_open(report_dir / "thresholds.csv", "w", newline="", encoding="utf-8") as f:
            pd.DataFrame(evaluation["table"]).to_csv(f, index=False, lineterminator="\n")
    atomic.write_text(report_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
    return result
