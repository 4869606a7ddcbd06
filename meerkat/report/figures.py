"""The report's figures as PNG bytes: the training curves, the confusion matrix, the precision-recall and ROC curves.

The page shows them all; TensorBoard gets the confusion matrix and the ROC curve as images. For
species the confusion matrix grows with the classes, and the curves, animal against background,
are drawn only when there is a background class.
"""

import numpy as np

from meerkat.report import canvas, metrics
from meerkat.report.facts import Facts

FIGURES = ("curves.png", "confusion.png", "pr.png", "roc.png")
POSITIVE_COLOUR = "#c0392b"
SPLIT_COLOURS = {"train": "#2471a3", "validation": "#d35400", "eval": "#27ae60"}


def draw(facts: Facts) -> dict[str, bytes]:
    """The figures by file name; no curves.png without a training history."""
    drawn = {"curves.png": curves(facts), "confusion.png": confusion(facts)}
    if facts.evaluation is not None:
        drawn.update({"pr.png": precision_recall(facts), "roc.png": roc(facts)})
    return {name: png for name, png in drawn.items() if png is not None}


def _style(ax) -> None:
    ax.grid(True, color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def curves(facts: Facts) -> bytes | None:
    """Loss and accuracy per epoch of each split, the exported epoch marked."""
    h = facts.history
    if h is None or h.empty:
        return None
    x = "epoch" if "epoch" in h.columns else "step"
    Figure = canvas.figure_class()
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for column in [c for c in h.columns if c.endswith(f"_{metric}")]:
            split = column.removesuffix(f"_{metric}")
            data = h[[x, column]].dropna()
            ax.plot(data[x], data[column], marker="o", markersize=3, label=split, color=SPLIT_COLOURS.get(split))
        if x == "epoch" and facts.best_epoch is not None:
            ax.axvline(facts.best_epoch, color="#7f8c8d", linestyle="--", linewidth=1, label="exported epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per {x}")
        if metric == "accuracy":
            ax.set_ylim(min(0.5, ax.get_ylim()[0]), 1.01)
        _style(ax)
        ax.legend(frameon=False)
    return canvas.png(fig)


def confusion(facts: Facts) -> bytes:
    """The confusion matrix at 0.5: counts, and shares of each true class."""
    if not facts.classes.is_pair:
        return species_confusion(facts)
    matrix = np.array(facts.metrics["confusion_matrix"]["matrix"])
    Figure = canvas.figure_class()
    fig = Figure(figsize=(4.2, 3.9), layout="constrained")
    ax = fig.subplots()
    rows = matrix.sum(1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, f"{count}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=13,
                color="white" if share[i, j] > 0.6 else "#1a1a1a")  # fmt: skip
    ax.set_xticks([0, 1], facts.names)
    ax.set_yticks([0, 1], facts.names)
    ax.set_xlabel("predicted (threshold 0.5)")
    ax.set_ylabel("true label")
    ax.set_title("confusion matrix, eval set")
    return canvas.png(fig)


def species_confusion(facts: Facts) -> bytes:
    """The N x N confusion matrix of the top class, its cells shaded by the share of their row: counts
    and shares written in while they fit, counts alone from 7 classes, then smaller."""
    matrix = np.array(facts.metrics["confusion_matrix"]["matrix"])
    n = len(matrix)
    Figure = canvas.figure_class()
    side = max(4.2, 0.36 * n + 2.6)  # inches: 30 classes get about 0.36 in (54 px) a cell
    fig = Figure(figsize=(side, side * 0.92), layout="constrained")
    ax = fig.subplots()
    rows = matrix.sum(1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    size = 11 if n <= 6 else 8 if n <= 15 else 6.5
    for (i, j), count in np.ndenumerate(matrix):
        if count or n <= 6:
            text = f"{count}\n{share[i, j]:.0%}" if n <= 6 else f"{count}"
            ax.text(j, i, text, ha="center", va="center", fontsize=size,
                    color="white" if share[i, j] > 0.6 else "#1a1a1a")  # fmt: skip
    ticks = range(n)
    labels = [_short_name(name) for name in facts.names]
    ax.set_xticks(ticks, labels, rotation=90 if n > 4 else 0, fontsize=9 if n <= 15 else 7)
    ax.set_yticks(ticks, labels, fontsize=9 if n <= 15 else 7)
    ax.set_xlabel("predicted (top class)")
    ax.set_ylabel("true label")
    ax.set_title("confusion matrix, eval set")
    return canvas.png(fig)


def _short_name(name: str) -> str:
    """A class name on a figure: cut to 28 characters, its end kept."""
    return name if len(name) <= 28 else "…" + name[-27:]


def _marked(facts: Facts) -> list[tuple[float, str, str]]:
    """The thresholds marked on the curves: (threshold, label, marker)."""
    marks = [
        (metrics.DEFAULT_THRESHOLD, "0.5 (default)", "o"),
        (metrics.DEEPMEERKAT_THRESHOLD, "0.05 (DeepMeerkat)", "s"),
    ]
    recall_t = facts.evaluation["recall_threshold"]
    if recall_t is not None:
        marks.append((recall_t, f"{recall_t:g} (recall >= {metrics.RECALL_TARGET:g})", "D"))
    return marks


def precision_recall(facts: Facts) -> bytes:
    """The step-wise precision-recall curve with its area (AP), chance, and the marked thresholds."""
    ev = facts.evaluation
    pr = ev["pr"]
    Figure = canvas.figure_class()
    fig = Figure(figsize=(4.2, 3.9), layout="constrained")
    ax = fig.subplots()
    ap = pr["average_precision"]
    recall, precision = np.r_[0.0, pr["recall"]], np.r_[1.0, pr["precision"]]
    ax.step(recall, precision, where="pre", color=POSITIVE_COLOUR, label=f"AP = {ap:.3f}" if ap is not None else "")
    base = int(ev["is_positive"].sum()) / max(1, len(ev["is_positive"]))  # the share of positives (animals)
    ax.axhline(base, color="#aaaaaa", linestyle=":", linewidth=1, label=f"chance ({base:.2f})")
    for t, label, marker in _marked(facts):
        row = metrics.at_threshold(ev["is_positive"], ev["scores"], t)
        if row["precision"] is not None and row["recall"] is not None:
            ax.plot(row["recall"], row["precision"], marker=marker, color="#1a1a1a", linestyle="none", label=label)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("precision-recall, eval set" if facts.classes.is_pair else "precision-recall, animal vs background")
    _style(ax)
    ax.legend(frameon=False, loc="lower left")
    return canvas.png(fig)


def roc(facts: Facts) -> bytes:
    """The ROC curve with its AUC, chance, and the marked thresholds."""
    ev = facts.evaluation
    curve = ev["roc"]
    Figure = canvas.figure_class()
    fig = Figure(figsize=(4.2, 3.9), layout="constrained")
    ax = fig.subplots()
    auc = curve["auc"]
    ax.plot(curve["fpr"], curve["tpr"], color=POSITIVE_COLOUR, label=f"AUC = {auc:.3f}" if auc is not None else "")
    ax.plot([0, 1], [0, 1], color="#aaaaaa", linestyle=":", linewidth=1, label="chance")
    for t, label, marker in _marked(facts):
        row = metrics.at_threshold(ev["is_positive"], ev["scores"], t)
        if row["false_positive_rate"] is not None and row["recall"] is not None:
            ax.plot(row["false_positive_rate"], row["recall"], marker=marker, color="#1a1a1a", linestyle="none",
                    label=label)  # fmt: skip
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate (recall)")
    ax.set_title("ROC, eval set" if facts.classes.is_pair else "ROC, animal vs background")
    _style(ax)
    ax.legend(frameon=False, loc="lower right")
    return canvas.png(fig)
