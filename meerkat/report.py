"""Stage 5: eval-set predictions -> report/metrics.json and report/predictions.csv."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from meerkat import fileio


def metrics(labels: np.ndarray, scores: np.ndarray, names: list[str]) -> dict:
    """Binary metrics with `names[0]` (positive) as the class of interest."""
    predicted = scores.argmax(1)
    pos = labels == 0
    tp = int(((predicted == 0) & pos).sum())
    fn = int(((predicted == 1) & pos).sum())
    fp = int(((predicted == 0) & ~pos).sum())
    tn = int(((predicted == 1) & ~pos).sum())

    def ratio(a, b):
        return a / b if b else None

    return {
        "accuracy": ratio(tp + tn, len(labels)),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "false_positive_rate": ratio(fp, fp + tn),
        "false_negative_rate": ratio(fn, fn + tp),
        "confusion_matrix": {
            "labels": names,
            "rows_are": "true label",
            "columns_are": "predicted label",
            "matrix": [[tp, fn], [fp, tn]],
        },
        "counts": {"total": int(len(labels)), names[0]: int(pos.sum()), names[1]: int((~pos).sum())},
    }


def write_report(report_dir, uris, labels, scores, names) -> dict:
    """metrics.json and predictions.csv: same inputs and seed, same bytes (timings go to run.json)."""
    report_dir = Path(report_dir)
    result = metrics(labels, scores, names)
    table = pd.DataFrame(
        {
            "image_uri": uris,
            "label": np.take(names, labels),
            "predicted": np.take(names, scores.argmax(1)),
            "score_positive": scores[:, 0],
        }
    )
    with fileio.atomic_open(report_dir / "predictions.csv", "w", newline="", encoding="utf-8") as f:
        table.to_csv(f, index=False, lineterminator="\n", float_format="%.6f")
    fileio.write_text(report_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
    return result
