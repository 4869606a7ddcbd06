"""A trained model applied to videos: keep the frames where it sees the animal.

Motion detection and crops are those of `clips`, so the model sees what it was trained on. Crops
go through the exported SavedModel in batches (several frames' boxes per call, never one call per
box). A frame is kept when any of its boxes has score_positive >= --threshold.

For each video, OUTPUT/<stem>/ holds, in DeepMeerkat 3.x's layout (so its review window opens
it): annotations.csv with every box (label positive or negative, score = P(positive)),
parameters.csv (model and its sha256, threshold, settings, frames with motion, kept frames,
return rate, minutes), and frames/<frame>.jpg of each kept frame with its boxes drawn.
OUTPUT/scan.csv has one row per video, failures included.

Each video's folder appears whole once the video is done, and a rerun skips the videos finished
with the same model and settings, so a killed scan resumes video by video. Array tasks split the
videos as preprocess splits a CSV (--shard-index/--num-shards, or SLURM's array variables).
"""

import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import cv2

from meerkat import __version__
from meerkat.apply.card import threshold_note
from meerkat.core import atomic, codeversion, locks, temporaries
from meerkat.core.config import ScanConfig
from meerkat.core.errors import MeerkatError
from meerkat.core.slurm import array_shard, check_shard
from meerkat.video import results
from meerkat.video.frames import BadVideo, check_some_usable, clock, list_videos, probe
from meerkat.video.motion import VideoMotion, check_regions, cut

log = logging.getLogger(__name__)

# Bytes of frames held while their boxes wait for a model call (with frames/ written): 42
# 1080p frames. Without frames/ only the crops wait, so every call gets --batch-size of them.
PENDING_BYTES = 256 * 2**20
POSITIVE, NEGATIVE = (0, 0, 255), (0, 200, 255)  # BGR: red, amber


def scan(cfg: ScanConfig) -> list[dict]:
    """Scan this task's share of cfg.videos; return one summary dict per video."""
    index, count = array_shard(cfg.shard_index, cfg.num_shards)
    check_shard(index, count)
    videos = list_videos(cfg.videos)[index::count]
    output = atomic.output_dir(cfg.output)
    temporaries.remove_stale(output)  # what killed scans left; live tasks' work is locked
    if note := threshold_note(cfg.model, cfg.threshold):  # the model card's advice, once
        log.info(note)
    if cfg.workers > 1 and len(videos) > 1:
        context = get_context("spawn")  # TensorFlow does not survive fork
        with ProcessPoolExecutor(min(cfg.workers, len(videos)), context, _start_worker, (cfg,)) as pool:
            summaries = list(pool.map(_scan_in_worker, videos))
    else:
        scanner = VideoScanner(cfg)
        summaries = [scanner.scan(path) for path in videos]
    _write_table(output, summaries, index, count)
    check_some_usable(summaries)
    return summaries


_worker = {}


def _start_worker(cfg: ScanConfig) -> None:
    from meerkat.cli import _configure_logging
    from meerkat.core.quiet import hush

    hush()  # a spawned worker imports TensorFlow afresh
    _configure_logging(debug=False)
    _worker["scanner"] = VideoScanner(cfg)


def _scan_in_worker(path: Path) -> dict:
    return _worker["scanner"].scan(path)


class VideoScanner:
    """The model loaded once, then any number of videos scanned with it."""

    def __init__(self, cfg: ScanConfig):
        from meerkat.apply.scorer import Scorer

        self.cfg = cfg
        self.scorer = Scorer(cfg.model)
        self.output = Path(cfg.output)
        self.settings = {
            **asdict(cfg.motion),
            "model": str(self.scorer.path),
            "model_sha256": self.scorer.sha256,
            "threshold": cfg.threshold,
            "frames_written": cfg.frames,
            "meerkat_version": __version__,
            "code_key": codeversion.key("scan"),  # an upgrade that changed how videos are scanned redoes them
        }

    def scan(self, path: Path) -> dict:
        """Scan one video; one that cannot be opened, fails to decode part way or does not fit
        --roi/--exclude is listed as failed (a decoding error leaves nothing: a rerun tries again)."""
        try:
            return self._scan(path)
        except BadVideo as e:
            log.warning("warning: %s: %s; skipped", path, e)
            log.debug("why %s failed:", path, exc_info=e)
            return {**_summary(path, {}), "status": "failed", "reason": str(e), "unusable": e.failed}

    def _scan(self, path: Path) -> dict:
        info = probe(path)
        check_regions(self.cfg.motion, info.width, info.height)
        folder = self.output / info.stem
        key = results.settings_key(path, self.settings)
        previous = results.read_parameters(folder / "parameters.csv")
        if not self.cfg.force and previous.get("settings_key") == key:
            log.info("Reusing the finished scan of %s in %s", path.name, folder)
            return _summary(path, previous, reused=True)
        with atomic.atomic_dir(folder, f"the scan of {path}") as tmp:
            params = self._scan_into(tmp, path, info)
            params["settings_key"] = key
            results.write_parameters(tmp / "parameters.csv", params)
        log.info(
            "%s: %s frames, %s with motion, %s kept (return rate %s), %s min -> %s",
            path.name,
            params["total_frames"],
            params["motion_events"],
            params["kept_frames"],
            params["return_rate"],
            params["minutes"],
            folder,
        )
        if params["status"] == "failed":
            log.warning("warning: %s: %s", path, params["reason"])
        return _summary(path, {k: str(v) for k, v in params.items()})

    def _scan_into(self, tmp: Path, path: Path, info) -> dict:
        cfg = self.cfg
        start = time.perf_counter()
        if cfg.frames:
            (tmp / "frames").mkdir()
        motion = VideoMotion(path, info, cfg.motion, "scan")
        rows, pending, waiting, motion_frames, kept = [], [], 0, 0, 0
        held = PENDING_BYTES // (info.width * info.height * 3) if cfg.frames else None
        for number, frame, watched, boxes in motion:
            if not boxes:
                continue
            motion_frames += 1
            crops = [atomic.jpeg(cut(watched, b, cfg.motion.padding)) for b in boxes]
            full = [b.shifted(*motion.detector.offset) for b in boxes]
            pending.append((number, frame if cfg.frames else None, full, crops))
            waiting += len(crops)
            if waiting >= cfg.batch_size or (held is not None and len(pending) >= max(1, held)):
                kept += self._classify(pending, rows, tmp, info.fps)
                pending, waiting = [], 0
        kept += self._classify(pending, rows, tmp, info.fps)
        results.write_annotations(tmp / "annotations.csv", rows)
        status, reason = "done", ""
        if info.frames and motion.frames.count < info.frames - max(2, info.frames // 100):
            status, reason = "failed", f"truncated: decoded {motion.frames.count} of the {info.frames} frames it states"
        return {
            **{k: v for k, v in self.settings.items() if v is not None},
            "mode": "motion",
            "training_mode": False,
            "source_video": results.host_path(path, cfg.path_map),
            "video_fps": info.fps,
            "total_frames": motion.frames.count,
            "motion_events": motion_frames,  # DeepMeerkat's name for the frames with motion
            "kept_frames": kept,
            "return_rate": round(kept / motion.frames.count, 4) if motion.frames.count else 0,
            "minutes": round((time.perf_counter() - start) / 60, 4),
            "mog_learning_rate": 0.1,
            "mog_variance": 20,
            "min_area_fraction": cfg.motion.min_area,
            "use_knn": False,
            "status": status,
            "reason": reason,
        }

    def _classify(self, pending: list, rows: list, tmp: Path, fps: int) -> int:
        """Score the boxes of `pending` frames in model calls of --batch-size; return frames kept."""
        if not pending:
            return 0
        crops = [c for _, _, _, frame_crops in pending for c in frame_crops]
        size = self.cfg.batch_size
        # Rounded as annotations.csv shows them, so that a label, its frame and its colour agree.
        scores = [round(float(s), 6) for i in range(0, len(crops), size) for s in self.scorer(crops[i : i + size])]
        kept = 0
        for number, frame, boxes, _ in pending:
            mine, scores = scores[: len(boxes)], scores[len(boxes) :]
            for box, score in zip(boxes, mine, strict=True):
                label = "positive" if score >= self.cfg.threshold else "negative"
                rows.append({"frame": number, "clock": clock(number, fps), "x": box.x, "y": box.y, "h": box.h,
                             "w": box.w, "label": label, "score": f"{score:.6f}"})  # fmt: skip
            if max(mine) < self.cfg.threshold:
                continue
            kept += 1
            if frame is not None:
                for box, score in zip(boxes, mine, strict=True):
                    colour = POSITIVE if score >= self.cfg.threshold else NEGATIVE
                    cv2.rectangle(frame, (box.x, box.y), (box.x + box.w, box.y + box.h), colour, 2)
                    cv2.putText(frame, f"{score:.2f}", (box.x, max(12, box.y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                                colour, 1, cv2.LINE_AA)  # fmt: skip
                atomic.write_file(tmp / "frames" / f"{number}.jpg", atomic.jpeg(frame))
        return kept


def _summary(path: Path, params: dict, reused: bool = False) -> dict:
    status = params.get("status", "done")
    return {
        "video": str(path),
        "status": "reused" if reused and status == "done" else status,
        "reason": params.get("reason", ""),
        "total_frames": int(params.get("total_frames", 0)),
        "motion_frames": int(params.get("motion_events", 0)),
        "kept_frames": int(params.get("kept_frames", 0)),
        "return_rate": float(params.get("return_rate", 0)),
        "minutes": float(params.get("minutes", 0)),
    }


def _write_table(output: Path, summaries: list[dict], index: int, count: int) -> None:
    """OUTPUT/scan.csv: every task's rows (scan-parts/), rebuilt by whichever task finishes last."""
    import pandas as pd

    parts = atomic.ensure_dir(output / "scan-parts")
    columns = ["video", "status", "reason", "total_frames", "motion_frames", "kept_frames", "return_rate", "minutes"]
    mine = pd.DataFrame(summaries, columns=columns)
    with locks.waiting_lock(parts / ".lock"):  # tasks finishing together would each miss the other's part
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
