"""clips --detections: one 299x299 training crop per selected MegaDetector box.

OUTPUT/crops/ holds the crops, named so that they stay apart in one Samples folder
(detections/crops.py), and OUTPUT/crops.csv maps each to its file, frame, detection index,
category, conf and box. OUTPUT/crops.skipped.csv lists, in the file's order, the images and
videos that could not be used (MegaDetector's own failures too) and the boxes that are not boxes
in their image, with the reason. With --model, an earlier model scores every crop (crops.csv
gets its score columns, score_positive for the pair, and suggested) and OUTPUT/suggested/<class>/
(the pair's {Positives,Negatives}) gets a copy of each, as for videos (apply/suggest.py).

The work is cut into parts as scan --detections cuts it (detections/parts.py: planned from the
file alone, so the model's calls, and so its scores, are scan's). Each part's crops and rows
appear whole in OUTPUT/clips-parts/ as soon as the part is done, so a killed run, run again, cuts
only the parts it had not finished. Once every part is done, crops/ is made from them (hard links:
no second copy where the file system has them) and takes the place of the earlier crops/ whole,
with crops.csv and crops.skipped.csv; only meerkat's own files are ever replaced (core/atomic.py).

With --by-class, each crop goes to crops/<class>/ by the label another classifier wrote in the
file (detections/labels.py), and crops.csv says its class, class_score and folder.
"""

import csv
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from meerkat import __version__
from meerkat.apply import suggest
from meerkat.apply.scorer import model_classes
from meerkat.apply.scorer import model_sha256 as scorer_sha256
from meerkat.core import atomic, codeversion, faults, ownership, temporaries
from meerkat.core.errors import MeerkatError
from meerkat.core.progress import Progress
from meerkat.core.video_config import ClipsConfig
from meerkat.detections import crops, inputs, labels, parts, sources

log = logging.getLogger(__name__)

COLUMNS = ["crop", "file", "frame_number", "detection", "category", "conf", "bbox"]
FOLDER = "clips-parts"
PART = "meerkat clips part 1"


def clips(cfg: ClipsConfig) -> int:
    """Cut the crops of cfg.megadetector's boxes into cfg.output; the number of crops."""
    inputs.check_apart(cfg.megadetector, cfg.output)
    results = inputs.load(cfg.megadetector)
    sort = labels.of_file(results, cfg.class_threshold) if cfg.by_class else None
    output = atomic.output_dir(cfg.output)
    temporaries.remove_stale(output)  # what killed runs left; a live writer's are locked
    temporaries.remove_stale(output / FOLDER)
    entries = results.entries
    planned = parts.split(parts.batches(entries.boxes, entries.failed, suggest.SCORE_BATCH))
    model_sha256 = scorer_sha256(cfg.model) if cfg.model else None
    work = Parts(output, len(planned), _key(cfg, results, model_sha256))
    todo = [k for k in range(len(planned)) if cfg.force or not work.finished(k)]
    if len(todo) < len(planned):
        log.info("Reusing %d finished parts in %s", len(planned) - len(todo), output / FOLDER)
    if todo:
        names = crops.Names(entries)  # one pass over the whole file: a name clashes with any part's
        wanted = (entries[i] for k in todo for batch in planned[k] for i in batch)
        with sources.Cuts(wanted, cfg.motion.padding, cfg.workers, rates=False) as cuts:
            scorer = suggest.load_scorer(cfg.model, cfg.threshold)  # while the first images decode
            with Progress("cropping", sum(len(b) for k in todo for b in planned[k]), "files") as progress:
                for k in todo:
                    batches = [[_cut(next(cuts), names, progress, sort) for _ in batch] for batch in planned[k]]
                    work.write(k, batches, scorer, cfg.threshold)
                    faults.point(f"detections:clips-part:{k}")
    return _finish(cfg, results, work, model_sha256 is not None)


class Parts:
    """OUTPUT/clips-parts/part-K-of-N/: a part's crops and part.json (its key, rows and skipped)."""

    def __init__(self, output: Path, count: int, key: str):
        self.output, self.count, self.key = output, count, key

    def folder(self, k: int) -> Path:
        return self.output / FOLDER / f"part-{k:05d}-of-{self.count:05d}"

    def read(self, k: int) -> dict | None:
        try:
            found = json.loads((self.folder(k) / "part.json").read_bytes())
        except (OSError, ValueError):
            return None
        ok = isinstance(found, dict) and found.get("format") == PART and found.get("key") == self.key
        return found if ok else None

    def finished(self, k: int) -> bool:
        return self.read(k) is not None

    def write(self, k: int, batches: list[list["Cut"]], scorer, threshold: float) -> None:
        """Part k from its batches' entries, each batch's crops scored together when there is a
        model (the calls scan makes, so the scores scan gives)."""
        cut = [c for batch in batches for c in batch]
        rows = [row for c in cut for row in c.rows]
        data = [d for c in cut for d in c.data]
        if scorer is not None:
            found = [s for b in batches for s in suggest.scored(scorer, [d for c in b for d in c.data], threshold)]
            for row, (scores, label) in zip(rows, found, strict=True):
                row += [*scores, label]
        atomic.ensure_dir(self.output / FOLDER)
        with atomic.atomic_dir(self.folder(k), "a part of the crops") as tmp:
            for row, crop in zip(rows, data, strict=True):
                atomic.write_file(tmp / row[0], crop)
            payload = {
                "format": PART,
                "key": self.key,
                "rows": rows,
                "skipped": [s for c in cut for s in c.skipped],
                "unread": [[c.file, c.failure] for c in cut if c.failure],
            }
            atomic.write_file(tmp / "part.json", json.dumps(payload).encode("ascii"))


@dataclass
class Cut:
    """One entry's share of a part: crops.csv rows, the crops' bytes, crops.skipped.csv rows, and
    why meerkat could not read it (MegaDetector's own failures aside)."""

    file: str
    rows: list[list]
    data: list[bytes]
    skipped: list[list]
    failure: str | None


def _cut(cut: sources.Cut, names: crops.Names, progress: Progress, sort: labels.Labels | None) -> Cut:
    progress.update(progress.done + 1)
    entry = cut.entry
    whole = inputs.failed(entry, cut.failure)
    skipped = [] if whole is None else [[entry.file, "", whole.reason]]
    skipped += [[s.file, s.detection, s.reason] for s in inputs.problems(entry)]
    rows = [_row(names(entry, d), entry.file, d) for d, _ in cut.crops]
    if sort is not None:
        for row, found in zip(rows, sort(entry, [d for d, _ in cut.crops]), strict=True):
            row += found
    return Cut(entry.file, rows, [data for _, data in cut.crops], skipped, cut.failure)


def _row(name: str, file: str, detection) -> list:
    frame = "" if detection.frame_number is None else detection.frame_number
    bbox = json.dumps(list(detection.bbox))
    return [name, file, frame, detection.index, detection.category, detection.conf, bbox]


def _key(cfg: ClipsConfig, results, model_sha256: str | None) -> str:
    """What a part depends on; a part with another key is cut again."""
    settings = {
        "detections_sha256": results.sha256,
        "image_root": str(Path(cfg.megadetector.image_root or results.path.parent).resolve()),
        "path_prefix": [[prefix, str(folder.resolve())] for prefix, folder in cfg.megadetector.prefixes()],
        "categories": sorted(results.categories),
        "detection_threshold": results.threshold,
        "padding": cfg.motion.padding,
        "model_sha256": model_sha256,
        "threshold": cfg.threshold if model_sha256 else None,
        "meerkat_version": __version__,
        "code_key": codeversion.key("detection-clips"),  # an upgrade that changed how crops are cut redoes them
    }
    if cfg.by_class:  # the rows say each crop's folder
        settings["class_threshold"] = labels.of_file(results, cfg.class_threshold).threshold
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _finish(cfg: ClipsConfig, results, work: Parts, scored: bool) -> int:
    """crops/, crops.csv, crops.skipped.csv (and suggested/) from every part; the number of crops."""
    output = work.output
    found = [work.read(k) for k in range(work.count)]
    if any(part is None for part in found):  # another process changed them under us
        raise MeerkatError(f"a part in {output / FOLDER} changed while clips ran; run clips again")
    with atomic.atomic_dir(output / "crops", "the crops") as tmp:
        for k, part in enumerate(found):
            for row in part["rows"]:
                target = tmp / _place(row, cfg.by_class)
                target.parent.mkdir(exist_ok=True)
                _link(work.folder(k) / row[0], target)
    classes = model_classes(cfg.model) if scored else None
    columns = _columns(cfg) + ([*classes.score_columns(), "suggested"] if scored else [])
    write_table(output / "crops.csv", columns, (row for part in found for row in part["rows"]))
    skipped = [row for part in found for row in part["skipped"]]
    write_table(output / "crops.skipped.csv", ["file", "detection", "reason"], skipped)
    _remove_others(output / FOLDER, {work.folder(k).name for k in range(work.count)})
    count = sum(len(part["rows"]) for part in found)
    if scored:
        first = len(_columns(cfg))
        rows = [r for p in found for r in p["rows"]]
        listed = [
            suggest.Suggestion(r[1], output / "crops" / _place(r, cfg.by_class), tuple(r[first:-1]), r[-1])
            for r in rows
        ]
        suggest.suggest(output, listed, classes, cfg.threshold, "file")
    whole = [s for s in skipped if s[1] == ""]
    used = len({row[1] for part in found for row in part["rows"]})
    log.info("%d crops from %d files in %s (%d failed)", count, used, output / "crops", len(whole))
    inputs.warn(
        [inputs.Skipped(file, None if box == "" else box, why) for file, box, why in skipped],
        output / "crops.skipped.csv",
    )
    _check_some_usable(results, found)
    return count


def _columns(cfg: ClipsConfig) -> list[str]:
    """crops.csv's columns before a model's."""
    return COLUMNS + (labels.COLUMNS if cfg.by_class else [])


def _place(row: list, by_class: bool) -> str:
    """A crop's path under crops/: in its class folder with --by-class."""
    return f"{row[len(COLUMNS) + 2]}/{row[0]}" if by_class else row[0]


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links: a copy
        with atomic.writing(target):
            shutil.copyfile(source, target)


def _remove_others(folder: Path, keep: set[str]) -> None:
    """The parts of earlier runs planned otherwise: meerkat's, and of no use now."""
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        if path.is_dir() and path.name not in keep and path.name.startswith("part-"):
            ownership.remove(path, "an earlier run's part of the crops")


def _check_some_usable(results, found: list[dict]) -> None:
    """One error when every image or video with a selected box could not be read."""
    entries = results.entries
    needed = sum(bool(n) and not failed for n, failed in zip(entries.boxes, entries.failed, strict=True))
    unread = [inputs.Skipped(file, None, reason) for part in found for file, reason in part["unread"]]
    inputs.check_some_usable(needed, unread, results)


def write_table(path, header: list[str], rows) -> None:
    """A CSV that appears whole, in place of meerkat's earlier one; a failed write names `path`."""
    with atomic.writing(path), atomic.atomic_open(path, "w", newline="", **atomic.TEXT) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(map(_cells, rows))


def _cells(row: list) -> list:
    """A name that stands for no bytes (a lone surrogate escaped in the JSON) as its escape, `\\ud800`;
    any other name as its own bytes, which read back as the name."""
    out = []
    for value in row:
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode(**atomic.TEXT)
            except UnicodeEncodeError:
                value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        out.append(value)
    return out
