"""Each crop's guessed class, and how sure it is, from the best source there is:

1. `--model M`: the model scores every crop once; the scores are kept in SAMPLES/meerkat-sort/ by
   the model's hash and each crop's name, size and time, so a later session scores only new crops;
2. `clips --model`'s suggestions: suggested/scores.csv (in CROPS, or CROPS itself) gives each
   crop's scores and suggested class;
3. `clips --detections --by-class`: crops.csv gives each crop the label another classifier wrote
   (MegaDetector's species classifiers, SpeciesNet, AddaxAI) and its score;
4. else no guess, and the crops come in name order.

A guess names the class folder it would go to (the pair's Positives/Negatives). The margin between
the top two scores orders the page: the crops a model is least sure of first. With the top score
alone (a classifier's label), the margin is its lower bound, 2·score - 1.
"""

import csv
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from meerkat.core import atomic
from meerkat.samples.classes import PAIR, Classes, from_labels, printed
from meerkat.samples.imagefiles import Unreadable, for_model, read_bytes
from meerkat.sort.catalog import CLIPS_TABLE, SCORES, SUGGESTED, Crop

log = logging.getLogger(__name__)

BATCH = 64


def suggestions_table(crops: Path) -> Path | None:
    """clips --model's table: CROPS/suggested/scores.csv, or CROPS/scores.csv when CROPS is suggested/."""
    for table in (crops / SUGGESTED / SCORES, crops / SCORES):
        if table.is_file() and "suggested" in _header(table):
            return table
    return None


def _header(table: Path) -> list[str]:
    with open(table, newline="", **atomic.TEXT) as f:
        return next(csv.reader(f), [])


def _rows(table: Path) -> list[dict]:
    with open(table, newline="", **atomic.TEXT) as f:
        return list(csv.DictReader(f))


def _by_name(crops: list[Crop]) -> dict[str, Crop]:
    """Crops by file name, for the tables that name a crop by its name alone; a name two crops share
    guesses neither."""
    names = Counter(c.rel.rsplit("/", 1)[-1] for c in crops)
    return {c.rel.rsplit("/", 1)[-1]: c for c in crops if names[c.rel.rsplit("/", 1)[-1]] == 1}


def set_guess(crop: Crop, classes: Classes, probabilities) -> None:
    """The top class's folder, its score, and the margin to the second."""
    p = np.asarray(probabilities, dtype=np.float64)
    top = int(np.argmax(p))
    crop.guess, crop.score = classes.folder(classes.names[top]), float(p[top])
    crop.margin = float(p[top] - np.partition(p, -2)[-2]) if len(p) > 1 else None


def _set_top(crop: Crop, folder: str, score: float) -> None:
    crop.guess, crop.score, crop.margin = folder, score, max(0.0, 2 * score - 1)


def from_suggestions(table: Path, crops: list[Crop]) -> str:
    """Guesses from clips --model's scores.csv; what the page says their source is."""
    rows = _rows(table)
    columns = [c for c in _header(table) if c.startswith("score_")]
    classes = from_labels(c[len("score_") :] for c in columns) if len(columns) > 1 else None
    named = _by_name(crops)
    for row in rows:
        crop = named.get(row.get("crop", ""))
        if crop is None:
            continue
        try:
            scores = [float(row[c]) for c in columns]
        except (TypeError, ValueError):
            continue
        if classes is not None:
            set_guess(crop, classes, scores)
        else:  # the pair writes score_positive alone
            set_guess(crop, Classes.of(PAIR), [scores[0], 1 - scores[0]])
    return f"the suggestions in {table}"


def from_labels_table(crops_dir: Path, crops: list[Crop]) -> str | None:
    """Guesses from crops.csv's class and class_score (clips --detections --by-class), if it has them."""
    table = crops_dir / CLIPS_TABLE
    if not table.is_file() or not {"crop", "class", "class_score", "folder"} <= set(_header(table)):
        return None
    named = _by_name(crops)
    for row in _rows(table):
        crop = named.get(row["crop"])
        if crop is None or not row["class"]:
            continue
        try:
            score = float(row["class_score"])
        except ValueError:
            continue
        # the label's folder: the one --by-class made for it, unless the crop sits in unclassified/
        _set_top(crop, row["folder"] if row["folder"] != "unclassified" else row["class"], score)
    return f"the classifier's labels in {table}"


def from_model(model: Path, root: Path, crops: list[Crop], cache_dir: Path) -> tuple[str, list[tuple[str, str]]]:
    """Score the crops with `model`, each once: the scores of earlier sessions are read back from
    cache_dir. Returns the source's name and the crops that could not be scored, with why."""
    from meerkat.apply.scorer import Scorer, model_classes, model_sha256, score_each

    classes = model_classes(model)  # read without TensorFlow: a session whose crops are all scored starts at once
    table = cache_dir / f"scores-{model_sha256(model)[:16]}.csv"
    known = {}
    if table.is_file():
        for row in _rows(table):
            known[(row["crop"], row["size"], row["mtime_ns"])] = [float(row[n]) for n in classes.names]
    todo, rows, bad = [], [], []
    for crop in crops:
        scores = known.get((crop.rel, str(crop.size), str(crop.mtime_ns)))
        if scores is None:
            todo.append(crop)
        else:
            set_guess(crop, classes, scores)
            rows.append((crop.rel, crop.size, crop.mtime_ns, *(f"{s:.6f}" for s in scores)))
    if todo:
        from meerkat.embed.decode import decode_error

        scorer = Scorer(model)
        log.info("Scoring %d crop%s with %s (once: kept in %s)", len(todo), "s"[: len(todo) != 1], model, table)
    for i in range(0, len(todo), BATCH):
        batch = []
        for crop in todo[i : i + BATCH]:
            try:
                batch.append((crop, for_model(read_bytes(root / crop.rel))))
            except Unreadable as e:
                bad.append((crop.rel, str(e)))
        scored, failed = score_each(scorer, batch)
        bad += [(c.rel, decode_error(root / c.rel)) for c in failed]
        for crop, p in scored:
            p = printed(p)  # as the cache keeps them, so that a later session orders the crops alike
            set_guess(crop, classes, p)
            rows.append((crop.rel, crop.size, crop.mtime_ns, *(f"{s:.6f}" for s in p)))
    if len(rows) > len(crops) - len(todo):  # something new to keep
        with atomic.atomic_path(table) as tmp:
            atomic.write_csv(tmp, rows, ["crop", "size", "mtime_ns", *classes.names])
    return f"the model {model}", bad
