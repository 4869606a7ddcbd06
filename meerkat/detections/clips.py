"""clips --detections: one 299x299 training crop per selected MegaDetector box.

OUTPUT/crops/ holds the crops, named so that they stay apart in one Samples folder
(detections/crops.py), and OUTPUT/crops.csv maps each to its file, frame, detection index,
category, conf and box. OUTPUT/crops.skipped.csv lists the images, videos and boxes that could not
be used, with the reason. With --model, an earlier model scores every crop (crops.csv gets
score_positive and suggested) and OUTPUT/suggested/{Positives,Negatives} gets a copy of each, as
for videos (apply/suggest.py).

crops/ appears whole when every crop is cut; a rerun cuts them again and replaces only meerkat's
own files (core/atomic.py).
"""

import csv
import json
import logging

from meerkat.apply import suggest
from meerkat.core import atomic, temporaries
from meerkat.core.config import ClipsConfig
from meerkat.core.progress import Progress
from meerkat.detections import crops, inputs, sources

log = logging.getLogger(__name__)

COLUMNS = ["crop", "file", "frame_number", "detection", "category", "conf", "bbox"]


def clips(cfg: ClipsConfig) -> list[dict]:
    """Cut the crops of cfg.megadetector's boxes into cfg.output; one row of crops.csv per crop."""
    results = inputs.load(cfg.megadetector)
    output = atomic.output_dir(cfg.output)
    temporaries.remove_stale(output)  # what killed runs left; a live writer's are locked
    scorer = suggest.load_scorer(cfg.model, cfg.threshold)
    names = crops.bases(results.entries)
    rows, waiting, skipped, failed = [], [], [], []
    with atomic.atomic_dir(output / "crops", "the crops") as tmp:
        entries = results.entries
        with Progress("cropping", len(entries), "files") as progress:
            for done, cut in enumerate(sources.cuts(entries, cfg.motion.padding, cfg.workers), 1):
                progress.update(done)
                skipped += inputs.problems(cut.entry)
                if cut.failure:
                    failed.append(inputs.Skipped(cut.entry.file, None, cut.failure))
                for detection, data in cut.crops:
                    row = _row(crops.crop_name(names[cut.entry.index], detection), cut.entry.file, detection)
                    atomic.write_file(tmp / row["crop"], data)
                    rows.append(row)
                    if scorer is not None:
                        waiting.append((row, data))
                        if len(waiting) >= suggest.SCORE_BATCH:
                            _score(waiting, scorer, cfg.threshold)
        if waiting:
            _score(waiting, scorer, cfg.threshold)
    columns = COLUMNS + (["score_positive", "suggested"] if scorer is not None else [])
    write_table(output / "crops.csv", columns, ([r[c] for c in columns] for r in rows))
    skipped = failed + skipped
    _write_skipped(output / "crops.skipped.csv", skipped)
    if scorer is not None:
        listed = [
            suggest.Suggestion(r["file"], output / "crops" / r["crop"], r["score_positive"], r["suggested"])
            for r in rows
        ]
        suggest.suggest(output, listed, cfg.threshold, "file")
    used = len(results.entries) - len(failed)
    log.info("%d crops from %d files in %s (%d failed)", len(rows), used, output / "crops", len(failed))
    inputs.warn(skipped, output / "crops.skipped.csv")
    entries = results.entries
    usable = sum(bool(n) and not failed for n, failed in zip(entries.boxes, entries.failed, strict=True))
    inputs.check_some_usable(usable, failed, results)
    return rows


def _row(name: str, file: str, detection) -> dict:
    return {
        "crop": name,
        "file": file,
        "frame_number": "" if detection.frame_number is None else detection.frame_number,
        "detection": detection.index,
        "category": detection.category,
        "conf": detection.conf,
        "bbox": json.dumps(list(detection.bbox)),
    }


def _score(waiting: list, scorer, threshold: float) -> None:
    """Score the crops waiting, in model calls of SCORE_BATCH; their rows get the score and the label."""
    for (row, _), score in zip(waiting, suggest.scores(scorer, [data for _, data in waiting]), strict=True):
        row["score_positive"], row["suggested"] = f"{score:.6f}", suggest.label(score, threshold)
    waiting.clear()


def _write_skipped(path, skipped: list) -> None:
    """Always written, so that a rerun never leaves an older run's list beside the new crops."""
    rows = [(s.file, "" if s.detection is None else s.detection, s.reason) for s in skipped]
    write_table(path, ["file", "detection", "reason"], rows)


def write_table(path, header: list[str], rows) -> None:
    """A CSV that appears whole, in place of meerkat's earlier one; a failed write names `path`."""
    with atomic.writing(path), atomic.atomic_open(path, "w", newline="", **atomic.TEXT) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
