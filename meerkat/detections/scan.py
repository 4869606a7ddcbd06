"""scan --detections: a model applied to MegaDetector's boxes; MegaDetector's file comes back with meerkat's classes.

Each selected box is cut as clips --detections cuts it (detections/crops.py: the same bytes), so
its score is `predict`'s on that crop file. Images and video frames are decoded once for all
their boxes, on --workers threads ahead of the model, and the crops of several images go to the
model together (detections/parts.py plans the calls from the file alone).

OUTPUT/detections.json is the input file plus meerkat's classes (megadetector/write.py), and
OUTPUT/scan.csv has one row per image or video: file, status (done or failed), reason,
detections (all MegaDetector's boxes), classified (those meerkat scored), max_score_positive and
kept (a classified box reached --threshold). For a model of other classes than DeepMeerkat's pair,
max_score_animal (1 - the background classes' scores: apply/scorer.py's keep_classes) and
top_class (the top class of the box that has it) take max_score_positive's place. An image or
video that cannot be read is listed as failed there and in detections.json, and the others go on.

Array tasks split the work by parts (--shard-index/--num-shards, or SLURM's array variables);
each part is written on its own as it is done, so a killed task, run again, redoes only its
unfinished parts, and the task that finds every part done writes the two files: the same bytes
as one process.
"""

import logging
from pathlib import Path

from meerkat.apply import card, scorer
from meerkat.apply.scorer import strongest
from meerkat.core import atomic, faults, locks, temporaries
from meerkat.core.errors import MeerkatError
from meerkat.core.progress import Progress
from meerkat.core.slurm import array_shard, check_shard
from meerkat.core.video_config import ScanConfig
from meerkat.detections import clips, inputs, parts, sources
from meerkat.megadetector import merge, write

log = logging.getLogger(__name__)


def columns(classes) -> list[str]:
    """scan.csv's header: max_score_positive for the pair, else max_score_animal and top_class."""
    top = [] if classes.is_pair else ["top_class"]
    return ["file", "status", "reason", "detections", "classified", f"max_{classes.keep_name()}", *top, "kept"]


def scan(cfg: ScanConfig) -> dict | None:
    """Score this task's parts; write detections.json and scan.csv when every part is done (then
    return how many files failed and how many were kept)."""
    index, count = array_shard(cfg.shard_index, cfg.num_shards)
    check_shard(index, count)
    task = Task(cfg)
    mine = range(index, len(task.planned), count)
    todo = [k for k in mine if cfg.force or not task.finished(k)]
    if len(todo) < len(mine):
        log.info("Reusing %d finished parts of this task in %s", len(mine) - len(todo), task.output / parts.FOLDER)
    inputs.warn(task.score(todo), task.output / "scan.csv")
    faults.point("detections:merge")
    return task.merge()


class Task:
    """One task of a scan: the file, the model, and the parts planned (detections/parts.py).
    TensorFlow and the model load only when there are parts to score, and after their frames
    have begun to decode: a task that only merges never imports it."""

    def __init__(self, cfg: ScanConfig):
        self.cfg = cfg
        inputs.check_apart(cfg.megadetector, cfg.output)
        self.results = inputs.load(cfg.megadetector)
        self.output = atomic.output_dir(cfg.output)
        if (self.output / "scan-parts").is_dir():  # a scan of videos: both write detections.json and scan.csv
            raise MeerkatError(
                f"{self.output} holds a scan of videos (scan-parts/); give scan --detections another --output"
            )
        temporaries.remove_stale(self.output)  # what killed tasks left; live tasks' work is locked
        self.model_sha256 = scorer.model_sha256(cfg.model)  # a wrong MODEL fails here, before any work
        self.classes = scorer.keep_classes(cfg.model, cfg.background)
        root = cfg.megadetector.image_root or self.results.path.parent
        prefixes = cfg.megadetector.prefixes()
        self.key = parts.key(self.results, root, prefixes, self.model_sha256, cfg.motion.padding, cfg.batch_size)
        entries = self.results.entries
        self.planned = parts.split(parts.batches(entries.boxes, entries.failed, cfg.batch_size))

    def path(self, k: int) -> Path:
        return parts.path(self.output, k, len(self.planned))

    def finished(self, k: int) -> bool:
        try:
            found, _ = merge.loads_part(self.path(k).read_bytes(), self.path(k))
        except (OSError, MeerkatError):
            return False  # missing, or cut short: done again (a file that is not meerkat's is refused when rewritten)
        return found == self.key

    def score(self, todo: list[int]) -> list:
        """Score the parts `todo`, each written as soon as it is done; return the images and boxes skipped."""
        if not todo:
            return []  # a task that only merges: no TensorFlow
        entries = self.results.entries
        count = sum(len(batch) for k in todo for batch in self.planned[k])
        wanted = (entries[i] for k in todo for b in self.planned[k] for i in b)
        skipped = []
        with sources.Cuts(wanted, self.cfg.motion.padding, self.cfg.workers) as cuts:
            model = scorer.Scorer(self.cfg.model)  # while the first frames decode
            if note := card.threshold_note(self.cfg.model, self.cfg.threshold):  # the model card's advice, once
                log.info(note)
            with Progress("scanning", count, "files") as progress:
                for k in todo:
                    found: dict[str, dict] = {"classifications": {}, "failures": {}, "frame_rates": {}}
                    for batch in self.planned[k]:
                        crops = []
                        for _ in batch:
                            cut = next(cuts)
                            entry = cut.entry
                            progress.update(progress.done + 1)
                            if whole := inputs.failed(entry, cut.failure):
                                skipped.append(whole)
                            skipped += inputs.problems(entry)
                            if cut.failure:
                                found["failures"][entry.index] = cut.failure
                            if cut.frame_rate:
                                found["frame_rates"][entry.index] = cut.frame_rate
                            crops += [((entry.index, d.index), data) for d, data in cut.crops]
                        self._classify(model, crops, found["classifications"])
                    with atomic.writing(self.path(k)), atomic.atomic_open(self.path(k), "wb") as f:
                        f.write(merge.dumps_part(write.Scores(**found), self.key))
                    faults.point(f"detections:part:{k}")
        return skipped

    def _classify(self, model, crops: list, into: dict) -> None:
        """The model's probabilities of each crop, in calls of --batch-size."""
        size = self.cfg.batch_size
        for i in range(0, len(crops), size):
            chunk = crops[i : i + size]
            for (at, _), p in zip(chunk, model.probabilities([c for _, c in chunk]), strict=True):
                into[at] = tuple(float(v) for v in p)

    def merge(self) -> dict | None:
        """detections.json and scan.csv from every part, by whichever task finds them all done."""
        folder = atomic.ensure_dir(self.output / parts.FOLDER)
        with locks.waiting_lock(folder / ".lock"):  # tasks finishing together would each miss the other's part
            found = []
            for k in range(len(self.planned)):
                try:
                    part_key, scores = merge.loads_part(self.path(k).read_bytes(), self.path(k))
                except FileNotFoundError:
                    continue
                if part_key == self.key:
                    found.append(scores)
            if len(found) < len(self.planned):
                log.info(
                    "%d of %d parts done in %s; the task that finishes the last writes detections.json and scan.csv",
                    len(found),
                    len(self.planned),
                    folder,
                )
                return None
            scores = merge.combine(found)
            counts = self._write(scores)
        log.info(
            "scan.csv: %d files (%d failed), %d kept at %s >= %g; %d boxes classified -> %s",
            len(self.results.entries),
            counts["failed"],
            counts["kept"],
            self.classes.keep_name(),
            self.cfg.threshold,
            len(scores.classifications),
            self.output / "detections.json",
        )
        entries = self.results.entries
        usable = [i for i, n in enumerate(entries.boxes) if n and not entries.failed[i]]
        unread = [inputs.Skipped(entries[i].file, None, scores.failures[i]) for i in usable if i in scores.failures]
        inputs.check_some_usable(len(usable), unread, self.results)
        return counts

    def _write(self, scores: write.Scores) -> dict:
        """detections.json and scan.csv of the merged scores, an entry at a time; the counts of
        failed and kept files."""
        recommended = card.recommended(self.cfg.model)
        classifier = write.Classifier(
            labels=scorer.labels(self.cfg.model),
            threshold=float(recommended["threshold"]) if recommended else self.cfg.threshold,
            metadata={"model_sha256": self.model_sha256},
        )
        target = self.output / "detections.json"
        with atomic.writing(target), atomic.atomic_open(target, "wb") as f:
            write.write(self.results, scores, classifier, f)
        counts = {"failed": 0, "kept": 0}
        header = columns(self.classes)

        def rows():
            for entry in self.results.entries:
                row = _row(entry, scores, self.cfg.threshold, self.classes)
                counts["failed"] += row["status"] == "failed"
                counts["kept"] += row["kept"] == "True"
                yield [row[c] for c in header]

        clips.write_table(self.output / "scan.csv", header, rows())
        return counts


def _row(entry, scores: write.Scores, threshold: float, classes) -> dict:
    """scan.csv's row of one entry: its highest keep score (the pair's P(positive)) and that box's top class."""
    found = [
        scores.classifications[entry.index, d.index]
        for d in entry.detections
        if (entry.index, d.index) in scores.classifications
    ]
    failure = scores.failures.get(entry.index) or (f"MegaDetector: {entry.failure}" if entry.failure else "")
    problems = "; ".join(f"box {p.detection}: {p.reason}" for p in entry.problems)
    best, top = strongest(classes, found) if found else (None, "")
    shown = "" if best is None else f"{best:.6f}"
    return {
        "file": entry.file,
        "status": "failed" if failure else "done",
        "reason": failure or problems,
        "detections": entry.listed,
        "classified": len(found),
        f"max_{classes.keep_name()}": shown,
        "top_class": top,
        "kept": str(best is not None and best >= threshold),
    }
