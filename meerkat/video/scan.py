"""A trained model applied to videos: keep the frames where it sees the animal.

Motion detection and crops are those of `clips`, so the model sees what it was trained on. Crops
go through the exported SavedModel in batches (several frames' boxes per call, never one call per
box). A frame is kept when any of its boxes has score_positive >= --threshold; for a model of other
classes, score_animal: 1 - the scores of its background classes (--background, else by name;
apply/scorer.py's keep_classes refuses a model with none).

For each video, its folder OUTPUT/<stem>/ (or `<stem>_<hash>` when another video has that stem:
video/folders.py) holds, in DeepMeerkat 3.x's layout (so its review window opens it):
annotations.csv with every box (label positive or negative, score = P(positive); for other
classes the top class and score_animal), parameters.csv
(model and its sha256, threshold, settings, frames with motion, kept frames, return rate,
minutes), and frames/<frame>.jpg of each kept frame with its boxes drawn.
OUTPUT/scan.csv has one row per video of this run, failures included, its last column the folder
that holds it; for a model of other classes than the pair, top_class before it: the top class of
the video's box with the highest score_animal. The same results in MegaDetector's format: each
folder's detections.json and OUTPUT/detections.json (video/detections_file.py).

Each video's folder appears whole once the video is done, and a rerun skips the videos finished
with the same model and settings, so a killed scan resumes video by video (video/walk.py walks
them, as for clips). Array tasks split the videos as preprocess splits a CSV
(--shard-index/--num-shards, or SLURM's array variables).
"""

import json
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from meerkat import __version__
from meerkat.apply.card import threshold_note
from meerkat.apply.scorer import keep_classes, label, strongest
from meerkat.core import atomic, codeversion, locks, nesting, temporaries
from meerkat.core.errors import MeerkatError
from meerkat.core.slurm import array_shard, check_shard
from meerkat.core.video_config import ScanConfig
from meerkat.megadetector import write
from meerkat.video import detections_file, folders, results
from meerkat.video.frames import VideoInfo, list_videos, stride_for
from meerkat.video.motion import cut
from meerkat.video.walk import VideoWalk, check_some_usable

log = logging.getLogger(__name__)

# Bytes of frames held while their boxes wait for a model call (with frames/ written): 43
# 1080p frames. Without frames/ only the crops wait, so every call gets --batch-size of them.
PENDING_BYTES = 256 * 2**20
POSITIVE, NEGATIVE = (0, 0, 255), (0, 200, 255)  # BGR: red, amber
COLUMNS = [
    "video", "status", "reason", "total_frames", "motion_frames", "kept_frames", "return_rate", "minutes", "folder",
]  # fmt: skip
TOP = {True: [], False: ["top_class"]}  # by whether the model is DeepMeerkat's pair: its scan.csv is as it was


def scan(cfg: ScanConfig) -> list[dict]:
    """Scan this task's share of cfg.videos; return one summary dict per video."""
    nesting.check_apart(cfg.output, [("VIDEO", v) for v in cfg.videos], "--output")
    index, count = array_shard(cfg.shard_index, cfg.num_shards)
    check_shard(index, count)
    every = list_videos(cfg.videos)
    base = detections_file.base(cfg.videos)  # every task's the same: it is of all the videos
    output = atomic.output_dir(cfg.output)
    if (output / "detections-parts").is_dir():  # scan --detections': both write detections.json and scan.csv
        raise MeerkatError(
            f"{output} holds a scan of MegaDetector's detections (detections-parts/); give this scan another --output"
        )
    temporaries.remove_stale(output)  # what killed scans left; live tasks' work is locked
    classes = keep_classes(cfg.model, cfg.background)  # before any work: a model with no background is refused
    chosen = folders.assign(every, output, cfg.path_map)  # of every task's videos, so that all tasks agree
    chosen.note_others(output, "scan.csv and detections.json list this run's videos only")
    videos = every[index::count]
    if note := threshold_note(cfg.model, cfg.threshold):  # the model card's advice, once
        log.info(note)
    if cfg.workers > 1 and len(videos) > 1:
        context = get_context("spawn")  # TensorFlow does not survive fork
        with ProcessPoolExecutor(min(cfg.workers, len(videos)), context, _start_worker, (cfg, chosen.names)) as pool:
            summaries = list(pool.map(_scan_in_worker, videos))
            classifier = pool.submit(_classifier_in_worker).result()
    else:
        scanner = VideoScanner(cfg, chosen.names)
        summaries = [scanner.walk(path) for path in videos]
        classifier = scanner.classifier
    entries = [detections_file.listed(s.pop("entry"), s["video"], base, s["folder"]) for s in summaries]
    parts = atomic.ensure_dir(output / "scan-parts")
    with locks.waiting_lock(parts / ".lock"):  # tasks finishing together would each miss the other's part
        _write_table(output, parts, summaries, index, count, COLUMNS[:-1] + TOP[classes.is_pair] + COLUMNS[-1:])
        detections_file.write_all(output, parts, entries, index, count, classifier)
    check_some_usable(summaries)
    return summaries


_worker = {}


def _start_worker(cfg: ScanConfig, names: dict[Path, str]) -> None:
    from meerkat.core.logs import configure_logging
    from meerkat.core.quiet import hush

    hush()  # a spawned worker imports TensorFlow afresh
    configure_logging(debug=False)
    _worker["scanner"] = VideoScanner(cfg, names)


def _scan_in_worker(path: Path) -> dict:
    return _worker["scanner"].walk(path)


def _classifier_in_worker():
    return _worker["scanner"].classifier


class VideoScanner(VideoWalk):
    """The model loaded once, then any number of videos scanned with it."""

    stage, what = "scan", "scan"
    summary = {
        "total_frames": ("total_frames", int),
        "motion_frames": ("motion_events", int),
        "kept_frames": ("kept_frames", int),
        "return_rate": ("return_rate", float),
        "minutes": ("minutes", float),
    }

    def __init__(self, cfg: ScanConfig, names: dict[Path, str]):
        from meerkat.apply.scorer import Scorer

        self.cfg = cfg
        self.scorer = Scorer(cfg.model)
        self.classes = keep_classes(cfg.model, cfg.background)
        # The pair's settings are as they were, so that its finished folders are reused.
        background = {} if self.classes.is_pair else {"background": json.dumps(sorted(self.classes.background))}
        settings = {
            **asdict(cfg.motion),
            "model": str(self.scorer.path),
            "model_sha256": self.scorer.sha256,
            "threshold": cfg.threshold,
            **background,
            "frames_written": cfg.frames,
            "meerkat_version": __version__,
            "code_key": codeversion.key("scan"),  # an upgrade that changed how videos are scanned redoes them
        }
        super().__init__(cfg.output, cfg.motion, settings, cfg.force, names)
        self.classifier = detections_file.classifier(cfg.model, self.scorer.labels, self.scorer.sha256, cfg.threshold)

    def start(self, tmp: Path, path: Path, info: VideoInfo, name: str) -> "ScannedVideo":
        return ScannedVideo(tmp, path, info, self)

    def reusable(self, folder: Path) -> bool:
        return detections_file.read_video(folder) is not None

    def walk(self, path: Path) -> dict:
        """The video's summary, with its `entry` in detections.json (`file` is the caller's to set)."""
        summary = super().walk(path)
        if summary.get("unusable"):  # no folder; one from an earlier run is not this video's
            summary["entry"] = detections_file.failed_video(path.name, summary["reason"])
        else:
            summary["entry"] = detections_file.read_video(self.output / summary["folder"])
            if summary["status"] == "failed":  # truncated: the boxes found stay
                summary["entry"][write.FAILURE] = summary["reason"]
        if not self.classes.is_pair:
            summary["top_class"] = _top_class(self.classes, summary["entry"])
        return summary

    def line(self, params: dict, seconds: float) -> str:
        return (
            f"{params['total_frames']} frames, {params['motion_events']} with motion, {params['kept_frames']} kept "
            f"(return rate {params['return_rate']}), {params['minutes']} min"
        )


class ScannedVideo:
    """One video's boxes scored in model calls of --batch-size, several frames' at a time; the
    frames kept are drawn into frames/; every box, with the model's probabilities, goes to
    detections.json."""

    def __init__(self, tmp: Path, path: Path, info: VideoInfo, scanner: VideoScanner):
        self.tmp, self.path, self.fps, self.cfg, self.scorer = tmp, path, info.fps, scanner.cfg, scanner.scorer
        self.info, self.classes, self.classifier = info, scanner.classes, scanner.classifier
        cfg = self.cfg
        self.found: list[tuple] = []  # (0-based frame number, (x, y, w, h), probabilities) of each box
        if cfg.frames:
            (tmp / "frames").mkdir()
        self.held = PENDING_BYTES // (info.width * info.height * 3) if cfg.frames else None
        self.rows: list[dict] = []
        self.pending: list[tuple] = []  # (frame number, frame to draw or None, boxes, crops)
        self.waiting = self.kept = 0  # crops pending; frames kept

    def boxes(self, number, frame, watched, boxes, full) -> bool:
        crops = [atomic.jpeg(cut(watched, b, self.cfg.motion.padding)) for b in boxes]
        self.pending.append((number, frame if self.cfg.frames else None, full, crops))
        self.waiting += len(crops)
        if self.waiting >= self.cfg.batch_size or (self.held is not None and len(self.pending) >= max(1, self.held)):
            self._classify()
        return False

    def finish(self, frames: int) -> tuple[list[dict], dict]:
        self._classify()
        own = {
            "training_mode": False,
            "source_video": results.host_path(self.path, self.cfg.path_map),
            "kept_frames": self.kept,
            "return_rate": round(self.kept / frames, 4) if frames else 0,
        }
        # Frames 1 + stride, 1 + 2 * stride, ... up to `frames` were looked at (frame 1 only starts the video).
        stride = stride_for(self.cfg.motion.stride, self.cfg.motion.fps, self.fps)
        entry = write.motion_entry(
            self.path.name,
            frame_rate=self.info.rate,
            frames_processed=range(stride, frames, stride),
            size=(self.info.width, self.info.height),
            boxes=self.found,
        )
        detections_file.write_video(self.tmp, entry, self.classifier)
        return self.rows, own

    def _classify(self) -> None:
        """Score the boxes of the pending frames in model calls of --batch-size; keep and draw the
        frames with a box that reaches --threshold."""
        pending, self.pending, self.waiting = self.pending, [], 0
        if not pending:
            return
        crops = [c for _, _, _, frame_crops in pending for c in frame_crops]
        size, threshold = self.cfg.batch_size, self.cfg.threshold
        probabilities = [p for i in range(0, len(crops), size) for p in self.scorer.probabilities(crops[i : i + size])]
        # Rounded as annotations.csv shows them, so that a label, its frame and its colour agree.
        scores = [round(float(k), 6) for k in self.classes.keep_scores(np.asarray(probabilities))]
        for number, frame, boxes, _ in pending:
            mine, scores = scores[: len(boxes)], scores[len(boxes) :]
            theirs, probabilities = probabilities[: len(boxes)], probabilities[len(boxes) :]
            for box, score, p in zip(boxes, mine, theirs, strict=True):
                named = label(self.classes, p, threshold)
                self.rows.append(results.annotation(number, self.fps, box, named, f"{score:.6f}"))
                self.found.append((number - 1, (box.x, box.y, box.w, box.h), tuple(map(float, p))))
            if max(mine) < threshold:
                continue
            self.kept += 1
            if frame is not None:
                for box, score in zip(boxes, mine, strict=True):
                    colour = POSITIVE if score >= threshold else NEGATIVE
                    cv2.rectangle(frame, (box.x, box.y), (box.x + box.w, box.y + box.h), colour, 2)
                    cv2.putText(frame, f"{score:.2f}", (box.x, max(12, box.y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                                colour, 1, cv2.LINE_AA)  # fmt: skip
                atomic.write_file(self.tmp / "frames" / f"{number}.jpg", atomic.jpeg(frame))


def _top_class(classes, entry: dict) -> str:
    """scan.csv's top_class of a video: of its detections.json entry, the top class of the box with
    the highest score_animal; "" when it has none."""
    found = [dict(d["classifications"]) for d in entry.get("detections") or () if "classifications" in d]
    if not found:
        return ""
    return strongest(classes, [[f[str(i)] for i in range(len(classes))] for f in found])[1]


def _write_table(output: Path, parts: Path, summaries: list[dict], index: int, count: int, columns: list) -> None:
    """OUTPUT/scan.csv: every task's rows (scan-parts/), rebuilt by whichever task finishes last.
    The caller holds the parts folder's lock."""
    import pandas as pd

    mine = pd.DataFrame(summaries, columns=columns)
    part = parts / f"{index:05d}-of-{count:05d}.csv"
    with atomic.writing(part), atomic.atomic_open(part, "w", newline="", **atomic.TEXT) as f:
        mine.to_csv(f, index=False, lineterminator="\n")
    tables = [_read_part(p, columns) for p in sorted(parts.glob(f"*-of-{count:05d}.csv"))]
    table = pd.concat(tables).sort_values("video")
    with atomic.writing(output / "scan.csv"):
        with atomic.atomic_open(output / "scan.csv", "w", newline="", **atomic.TEXT) as f:
            table.to_csv(f, index=False, lineterminator="\n")
    done = table[table.status != "failed"]
    log.info(
        "scan.csv: %d videos (%d failed, %d of %d tasks reported), %d of %d frames kept -> %s",
        len(table),
        len(table) - len(done),
        len(tables),
        count,
        done.kept_frames.sum(),
        done.total_frames.sum(),
        output / "scan.csv",
    )


def _read_part(path: Path, columns: list[str]):
    """One task's rows of scan.csv, as _write_table wrote them."""
    import pandas as pd

    try:
        part = pd.read_csv(path, keep_default_na=False, encoding_errors=atomic.TEXT["errors"])
        if list(part.columns) != columns:
            raise ValueError(f"its columns are {', '.join(map(str, part.columns))}")
    except (OSError, ValueError) as e:  # pandas' parse errors are ValueErrors
        raise MeerkatError(
            f"{path} is not a list of scanned videos as meerkat writes it ({e}); "
            "delete it and rerun the task that wrote it"
        ) from None
    return part
