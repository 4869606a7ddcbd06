"""The facts of a finished run that the page, the TensorBoard summaries and the model card show.

Gathered once, after stage 5's numbers: crops per class and set, the files skipped or ignored on
the way with their reasons, the training history, and where the crops came from.
"""

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from meerkat.core.atomic import TEXT
from meerkat.embed import tfrecords
from meerkat.report.mistakes import Mistake
from meerkat.samples.classes import Classes, from_labels
from meerkat.samples.classfolder import DANGLING, reason_by_name

log = logging.getLogger(__name__)

# The rows of the counts table (the page's and the card's).
TRAINING, FITTED, VALIDATION, EVAL = "training (all)", "training: fitted on", "training: validation", "eval"
HISTORY = "report/history.csv"  # loss and accuracy per epoch, written by training before the report


@dataclass
class Facts:
    """Everything the page, the TensorBoard summaries and the model card show about a finished run."""

    output: Path
    names: list[str]
    uris: list[str]
    labels: np.ndarray  # eval, indices into names (the pair: 0 = positive)
    metrics: dict  # metrics.json's content
    evaluation: dict | None  # metrics.evaluate_thresholds; None for species without a background class
    counts: dict[str, dict[str, int]]  # set -> class -> crops
    run: dict  # what run.json holds, but the fingerprint and the report's state
    source: str  # the folder the crops came from
    training_source: str  # the folder the training crops came from
    image_size: int | None = None  # the backbone's square input
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (set, path, reason)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    history: pd.DataFrame | None = None  # HISTORY, None when it is not there
    mistakes: list[Mistake] = field(default_factory=list)  # picked, and their thumbnails written, by the page
    probabilities: np.ndarray | None = None  # eval softmax scores [N, classes]

    @property
    def best_epoch(self):
        return self.run.get("best_epoch")

    @property
    def classes(self) -> Classes:
        return from_labels(self.names)


def number(value, digits: int = 4) -> str:
    """A metric as the page, the summaries and the card show it: n/a for None, a float to `digits` decimals."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _counts(labels: np.ndarray, names: list[str]) -> dict[str, int]:
    return {name: int((np.asarray(labels) == i).sum()) for i, name in enumerate(names)}


def split_counts(run: dict, train_labels, eval_labels, names) -> dict[str, dict[str, int]]:
    """Crops per class: the training set, the parts training fitted on and validated with
    (run.json's train_counts and validation_counts), and the eval set."""
    counts = {TRAINING: _counts(train_labels, names)}
    for key, label in (("train_counts", FITTED), ("validation_counts", VALIDATION)):
        value = run.get(key)
        if isinstance(value, dict) and set(names) <= set(value) and all(isinstance(value[n], int) for n in names):
            counts[label] = {n: value[n] for n in names}
    counts[EVAL] = _counts(eval_labels, names)
    return counts


def _skipped(pattern: str, what: str) -> list[tuple[str, str, str]]:
    """The files the shards of `pattern` skipped, from the *.skipped.csv beside them: (what, path, reason)."""
    rows = []
    try:
        shards, _ = tfrecords.find_shards(pattern)
    except Exception:  # the pattern was readable a moment ago; a page without this list is still a page
        return rows
    for shard in shards:
        path = tfrecords.skipped_path(shard)
        if path.is_file():
            table = pd.read_csv(path, keep_default_na=False, dtype=str, encoding_errors=TEXT["errors"])
            rows += [(what, p, r) for p, r in zip(table["path"], table["reason"], strict=True)]
    return rows


def _ignored(manifest: dict) -> list[tuple[str, str]]:
    """docs/ignored.txt beside the CSV the training shards were made from: `path,reason` rows."""
    source = manifest.get("source_csv")
    path = Path(source).parent / "ignored.txt" if source else None
    if not path or not path.is_file():
        return []
    with open(path, newline="", **TEXT) as f:
        rows = [row for row in csv.reader(f) if row]
    # Earlier versions wrote the paths alone; their reasons follow from the names.
    return [(r[0], r[1] if len(r) > 1 else reason_by_name(Path(r[0]).name) or DANGLING) for r in rows]


def _history(output: Path) -> pd.DataFrame | None:
    csv = output / HISTORY
    if not csv.is_file():
        return None
    try:
        return pd.read_csv(csv)
    except (OSError, ValueError) as e:
        log.warning("warning: cannot read %s (%s); the page shows no training curves", csv, e)
        return None


def _common(paths: list[str]) -> str:
    try:
        return os.path.commonpath(paths) if paths else ""
    except ValueError:  # relative and absolute paths mixed
        return ""


def gather(cfg, run: dict, train_set, eval_set, evaluated: tuple[dict, dict | None], scores) -> Facts:
    """The facts about a run (cfg: its RecordsConfig; run: what run.json holds) from the numbers
    stage 5 computed: `evaluated`, metrics.evaluate's (metrics.json's content, evaluation), of `scores`."""
    metrics, evaluation = evaluated
    output, names = Path(cfg.output_dir), list(train_set.manifest["labels"])
    uris = list(eval_set.uris)
    return Facts(
        output=output,
        names=names,
        uris=uris,
        labels=np.asarray(eval_set.labels),
        metrics=metrics,
        evaluation=evaluation,
        counts=split_counts(run, train_set.labels, eval_set.labels, names),
        run=run,
        source=_common([*train_set.uris, *uris]),
        training_source=_common(train_set.uris),
        image_size=train_set.manifest.get("image_size"),
        skipped=_skipped(str(cfg.train_data), "training") + _skipped(str(cfg.eval_data), "eval"),
        ignored=_ignored(train_set.manifest),
        history=_history(output),
        probabilities=np.asarray(scores),
    )
