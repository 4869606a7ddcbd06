"""Crops pre-sorted by an earlier model (clips --model): their scores, and OUTPUT/suggested/.

clips cuts crops from videos (video/clips.py) or from MegaDetector's boxes (detections/clips.py);
either way an earlier model scores them in batches, and OUTPUT/suggested/{Positives,Negatives}
gets a copy of each (a hard link where the file system allows), with suggested/scores.csv, so a
second round of labelling means reviewing suggestions rather than sorting from scratch. The
folders are flat and scores.csv names a crop by its file name, so two crops of one name (in any
case) are an error, never one overwriting the other.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from meerkat.core import atomic
from meerkat.core.errors import MeerkatError
from meerkat.core.names import folded

log = logging.getLogger(__name__)

SCORE_BATCH = 64


def load_scorer(model, threshold: float):
    """The earlier model that scores the crops, or None without --model; logs its card's note on `threshold`."""
    if not model:
        return None
    from meerkat.apply.card import threshold_note
    from meerkat.apply.scorer import Scorer

    loaded = Scorer(model)
    if note := threshold_note(model, threshold):
        log.info(note)
    return loaded


def scores(scorer, crops: list[bytes]) -> list[float]:
    """P(positive) of each encoded crop, in model calls of SCORE_BATCH, rounded as the CSVs show it."""
    return [round(float(s), 6) for i in range(0, len(crops), SCORE_BATCH) for s in scorer(crops[i : i + SCORE_BATCH])]


def label(score: float, threshold: float) -> str:
    return "positive" if score >= threshold else "negative"


@dataclass(frozen=True)
class Suggestion:
    source: str  # the video or image file the crop comes from
    path: Path  # the crop file
    score: str  # score_positive as the CSVs write it ("%.6f")
    label: str  # "positive" or "negative"


def suggest(output: Path, crops: list[Suggestion], threshold: float, source: str) -> None:
    """OUTPUT/suggested/{Positives,Negatives} with a copy of every crop, and scores.csv: `source`
    (the first column's name), crop, score_positive, suggested."""
    crops = _distinct(crops)
    with atomic.atomic_dir(output / "suggested", "the suggested crops") as tmp:
        for cls in ("Positives", "Negatives"):
            (tmp / cls).mkdir()
        for crop in crops:
            target = tmp / ("Positives" if crop.label == "positive" else "Negatives") / crop.path.name
            try:
                os.link(crop.path, target)
            except OSError:  # no hard links here; "x": a name taken (in a way _distinct missed) stays an error
                with atomic.writing(target), open(target, "xb") as f:
                    f.write(crop.path.read_bytes())
        rows = [(c.source, c.path.name, c.score, c.label) for c in crops]
        atomic.write_csv(tmp / "scores.csv", rows, [source, "crop", "score_positive", "suggested"])
    positives = sum(c.label == "positive" for c in crops)
    log.info(
        "Suggested (score_positive >= %g): %d Positives, %d Negatives in %s; move them into your Samples once checked",
        threshold,
        positives,
        len(crops) - positives,
        output / "suggested",
    )


def _distinct(crops: list[Suggestion]) -> list[Suggestion]:
    """Each crop once (a video listed twice lists its crops twice); two crops of one name are an error."""
    seen: dict[str, Path] = {}
    out = []
    for crop in crops:
        key = folded(crop.path.name)
        if key not in seen:
            seen[key] = crop.path
            out.append(crop)
        elif seen[key] != crop.path:
            raise MeerkatError(
                f"{seen[key]} and {crop.path} would both be suggested/.../{crop.path.name}; rename one of them "
                "(meerkat never writes one crop over another)"
            )
    return out
