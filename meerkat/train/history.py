"""The training history, one row an epoch, and the choices made from it: the exported epoch and
when to stop early. Written as report/history.csv."""

import csv
import io
from pathlib import Path

from meerkat.core import atomic

COLUMNS = ("epoch", "step", "train_loss", "train_accuracy", "validation_loss", "validation_accuracy")


def row(epoch: int, step: int, figures: dict) -> dict:
    """An epoch's row from its (loss, accuracy) per part; the validation cells None without validation."""
    validation = figures.get("validation", (None, None))
    return dict(zip(COLUMNS, (epoch, step, *figures["train"], *validation), strict=True))


def best_epoch(history: list[dict]) -> int:
    """The epoch of the lowest validation loss (the earliest of equals); the last one without validation."""
    if history[-1]["validation_loss"] is None:
        return history[-1]["epoch"]
    return min(history, key=lambda r: (r["validation_loss"], r["epoch"]))["epoch"]


def patience_ran_out(history: list[dict], patience: int) -> bool:
    if not history or not patience or history[-1]["validation_loss"] is None:
        return False
    return history[-1]["epoch"] - best_epoch(history) >= patience


def write(path: Path, history: list[dict]) -> None:
    """report/history.csv: one row an epoch, figures to 6 decimals; validation cells empty without it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)

    def cell(column, value):
        if value is None:
            return ""
        return value if column in ("epoch", "step") else f"{value:.6f}"

    for r in history:
        writer.writerow([cell(c, r[c]) for c in COLUMNS])
    atomic.write_text(path, out.getvalue())
