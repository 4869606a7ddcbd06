"""Crops pre-sorted by an earlier model (clips --model): their scores, and OUTPUT/suggested/.

clips cuts crops from videos (video/clips.py) or from MegaDetector's boxes (detections/clips.py);
either way an earlier model scores them in batches, and OUTPUT/suggested/<class>/ gets a copy of
each (a hard link where the file system allows), with suggested/scores.csv, so a second round of
labelling means reviewing suggestions rather than sorting from scratch. DeepMeerkat's pair:
suggested/{Positives,Negatives}, positive when score_positive >= --threshold; a model of other
classes: a folder a class, each crop in its top class's (apply/scorer.py's label). The
folders are flat and scores.csv names a crop by its file name, so two crops of one name (in any
case) are an error, never one overwriting the other.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from meerkat.apply.scorer import label, shown
from meerkat.core import atomic
from meerkat.core.errors import MeerkatError
from meerkat.core.names import folded
from meerkat.samples.classes import Classes

log = logging.getLogger(__name__)

SCORE_BATCH = 64


def load_scorer(model, threshold: float):
    """The earlier model that scores the crops, or None without --model; logs its card's note on `threshold`."""
    if not model:
        return None
    from meerkat.apply.card import threshold_note
    from meerkat.apply.scorer import Scorer

    loaded = Scorer(model)
    if loaded.classes.is_pair and (note := threshold_note(model, threshold)):  # other models suggest the top class
        log.info(note)
    return loaded


def scored(scorer, crops: list[bytes], threshold: float) -> list[tuple[list[str], str]]:
    """Each encoded crop's score columns as the CSVs write them ("%.6f") and its suggested class,
    in model calls of SCORE_BATCH."""
    out = []
    for i in range(0, len(crops), SCORE_BATCH):
        for p in scorer.probabilities(crops[i : i + SCORE_BATCH]):
            out.append(([f"{s:.6f}" for s in shown(scorer.classes, p)], label(scorer.classes, p, threshold)))
    return out


@dataclass(frozen=True)
class Suggestion:
    source: str  # the video or image file the crop comes from
    path: Path  # the crop file
    scores: tuple[str, ...]  # its score columns as the CSVs write them ("%.6f")
    label: str  # the class suggested


def suggest(output: Path, crops: list[Suggestion], classes: Classes, threshold: float, source: str) -> None:
    """OUTPUT/suggested/<class folder>/ with a copy of every crop, and scores.csv: `source` (the
    first column's name), crop, the score columns, suggested."""
    crops = _distinct(crops)
    for name in classes.names:
        if name in (".", "..") or "/" in name or "\\" in name:  # a hand-written dict.txt: no folder of that name
            raise MeerkatError(f"class {name!r} of the model's dict.txt cannot name a folder of suggested/; rename it")
    with atomic.atomic_dir(output / "suggested", "the suggested crops") as tmp:
        for name in classes.names:
            (tmp / classes.folder(name)).mkdir()
        for crop in crops:
            target = tmp / classes.folder(crop.label) / crop.path.name
            try:
                os.link(crop.path, target)
            except OSError:  # no hard links here; "x": a name taken (in a way _distinct missed) stays an error
                with atomic.writing(target), open(target, "xb") as f:
                    f.write(crop.path.read_bytes())
        rows = [(c.source, c.path.name, *c.scores, c.label) for c in crops]
        atomic.write_csv(tmp / "scores.csv", rows, [source, "crop", *classes.score_columns(), "suggested"])
    counts = ", ".join(f"{sum(c.label == n for c in crops)} {classes.folder(n)}" for n in classes.names)
    rule = f"{classes.score_columns()[0]} >= {threshold:g}" if classes.is_pair else "the top class"
    log.info("Suggested (%s): %s in %s; move them into your Samples once checked", rule, counts, output / "suggested")


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
