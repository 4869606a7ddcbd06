"""Videos -> training crops, as DeepMeerkat's training mode makes them.

For each video, OUTPUT/<stem>/ holds the crops `<stem>_<frame>_<i>.jpg` (299x299 JPEG, frames
counted from 1, `i` the box's index in its frame), annotations.csv (one row a crop) and
parameters.csv, in DeepMeerkat 3.x's layout. With --model, an earlier model scores every crop
and OUTPUT/suggested/{Positives,Negatives} get a copy of each, with suggested/scores.csv, so a
second round of labelling means reviewing suggestions rather than sorting from scratch.

Each video's folder appears whole when the video is done; a rerun skips the videos it finished
with the same settings. A video that cannot be opened, fails to decode part way or does not fit
--roi/--exclude is skipped, logged and listed as failed; the others go on.
"""

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

from meerkat import __version__
from meerkat.core import atomic, codeversion, temporaries
from meerkat.core.config import ClipsConfig
from meerkat.video import results
from meerkat.video.frames import BadVideo, Frames, check_some_usable, clock, list_videos, probe
from meerkat.video.motion import VideoMotion, check_regions, cut

log = logging.getLogger(__name__)

SCORE_BATCH = 64


def clips(cfg: ClipsConfig) -> list[dict]:
    """Crop every video of cfg.videos into cfg.output; one summary dict per video."""
    videos = list_videos(cfg.videos)
    output = atomic.output_dir(cfg.output)
    temporaries.remove_stale(output)  # what killed runs left; a live writer's are locked
    scorer = None
    if cfg.model:
        from meerkat.apply.card import threshold_note
        from meerkat.apply.scorer import Scorer

        scorer = Scorer(cfg.model)
        if note := threshold_note(cfg.model, cfg.threshold):
            log.info(note)
    summaries = [_clip_or_skip(path, output, cfg, scorer) for path in videos]
    if scorer is not None:
        _suggest(output, [s for s in summaries if s["status"] != "failed"], cfg.threshold)
    failed = [s for s in summaries if s["status"] == "failed"]
    crops = sum(s.get("crops", 0) for s in summaries)
    log.info("%d crops from %d videos in %s (%d failed)", crops, len(videos) - len(failed), output, len(failed))
    check_some_usable(summaries)
    return summaries


def _settings(cfg: ClipsConfig, scorer) -> dict:
    return {
        **asdict(cfg.motion),
        "max_crops_per_video": cfg.max_crops_per_video,
        "model_sha256": scorer.sha256 if scorer else None,
        "threshold": cfg.threshold if scorer else None,
        "meerkat_version": __version__,
        "code_key": codeversion.key("clips"),  # an upgrade that changed how crops are cut redoes them
    }


def _clip_or_skip(path: Path, output: Path, cfg: ClipsConfig, scorer) -> dict:
    try:
        return _clip_video(path, output, cfg, scorer)
    except BadVideo as e:  # a decoding error part way leaves nothing behind: a rerun tries it again
        log.warning("warning: %s: %s; skipped", path, e)
        log.debug("why %s failed:", path, exc_info=e)
        return {"video": str(path), "status": "failed", "reason": str(e), "unusable": e.failed}


def _clip_video(path: Path, output: Path, cfg: ClipsConfig, scorer) -> dict:
    info = probe(path)
    check_regions(cfg.motion, info.width, info.height)
    folder = output / info.stem
    settings = _settings(cfg, scorer)
    key = results.settings_key(path, settings)
    previous = results.read_parameters(folder / "parameters.csv")
    if not cfg.force and previous.get("settings_key") == key:
        log.info("Reusing the finished crops of %s in %s", path.name, folder)
        return _summary(path, previous, "reused")

    start = time.perf_counter()
    motion = VideoMotion(path, info, cfg.motion, "clips")
    rows, motion_frames, limit, stopped_at = [], 0, cfg.max_crops_per_video, None
    with atomic.atomic_dir(folder, f"the crops of {path}") as tmp:
        for number, _, watched, boxes in motion:
            motion_frames += bool(boxes)
            for i, box in enumerate(boxes[: limit - len(rows)] if limit else boxes):
                name = f"{info.stem}_{number}_{i}.jpg"
                atomic.write_file(tmp / name, atomic.jpeg(cut(watched, box, cfg.motion.padding)))
                full = box.shifted(*motion.detector.offset)
                row = {"frame": number, "clock": clock(number, info.fps), "x": full.x, "y": full.y}
                rows.append({**row, "h": full.h, "w": full.w, "label": "motion", "score": 1.0, "crop": name})
            if limit and len(rows) >= limit:
                log.info("%s: stopped at --max-crops-per-video %d (frame %d)", path.name, limit, number)
                stopped_at = number
                break
        # Stopped early, the frames read are those processed (the reader thread may be ahead).
        read = stopped_at or motion.frames.count
        status, reason = _completeness(info, motion.frames, stopped_at is not None)
        if scorer is not None:
            _score(tmp, rows, scorer, cfg.threshold)
        results.write_annotations(tmp / "annotations.csv", rows)
        minutes = (time.perf_counter() - start) / 60
        params = {
            **{k: v for k, v in settings.items() if v is not None},
            "mode": "motion",
            "training_mode": True,
            "source_video": str(path.resolve()),
            "video_fps": info.fps,
            "total_frames": read,
            "motion_events": motion_frames,
            "crops": len(rows),
            "minutes": round(minutes, 4),
            "mog_learning_rate": 0.1,
            "mog_variance": 20,
            "min_area_fraction": cfg.motion.min_area,
            "use_knn": False,
            "settings_key": key,
            "status": status,
            "reason": reason,
        }
        results.write_parameters(tmp / "parameters.csv", params)
    rate = read / (minutes * 60) if minutes else 0
    log.info(
        "%s: %d frames, %d with motion, %d crops, %.0f frames/s -> %s",
        path.name,
        read,
        motion_frames,
        len(rows),
        rate,
        folder,
    )
    if status == "failed":
        log.warning("warning: %s: %s", path, reason)
    return _summary(path, {k: str(v) for k, v in params.items()}, status)


def _completeness(info, frames: Frames, stopped: bool) -> tuple[str, str]:
    """A video that ends well before the frame count its container states is truncated."""
    if stopped or not info.frames or frames.count >= info.frames - max(2, info.frames // 100):
        return "done", ""
    return "failed", f"truncated: decoded {frames.count} of the {info.frames} frames it states; crops cover those"


def _score(folder: Path, rows: list[dict], scorer, threshold: float) -> None:
    """Label each crop with the model: annotations get its score, scores.csv the suggestion."""
    for i in range(0, len(rows), SCORE_BATCH):
        batch = rows[i : i + SCORE_BATCH]
        for row, score in zip(batch, scorer([(folder / r["crop"]).read_bytes() for r in batch]), strict=True):
            row["score"] = round(float(score), 6)
            row["label"] = "positive" if row["score"] >= threshold else "negative"
    table = [(r["crop"], f"{r['score']:.6f}", r["label"]) for r in rows]
    atomic.write_csv(folder / "scores.csv", table, ["crop", "score_positive", "suggested"])


def _summary(path: Path, params: dict, status: str) -> dict:
    return {
        "video": str(path),
        "status": params.get("status") if status == "reused" and params.get("status") == "failed" else status,
        "reason": params.get("reason", ""),
        "frames": int(params.get("total_frames", 0)),
        "crops": int(params.get("crops", 0)),
    }


def _suggest(output: Path, done: list[dict], threshold: float) -> None:
    """OUTPUT/suggested/{Positives,Negatives}: a copy of every crop (hard links where possible)."""
    import pandas as pd

    tables = []
    with atomic.atomic_dir(output / "suggested", "the suggested crops") as tmp:
        for cls in ("Positives", "Negatives"):
            (tmp / cls).mkdir()
        for summary in done:
            folder = output / Path(summary["video"]).stem
            table = pd.read_csv(folder / "scores.csv", dtype={"crop": str, "suggested": str}, keep_default_na=False)
            for crop, label in zip(table["crop"], table["suggested"], strict=True):
                target = tmp / ("Positives" if label == "positive" else "Negatives") / crop
                try:
                    os.link(folder / crop, target)
                except OSError:
                    atomic.write_file(target, (folder / crop).read_bytes())
            tables.append(table.assign(video=summary["video"]))
        if tables:
            scores = pd.concat(tables)[["video", "crop", "score_positive", "suggested"]]
            with atomic.writing(tmp / "scores.csv"):
                scores.to_csv(tmp / "scores.csv", index=False, lineterminator="\n", float_format="%.6f")
    positives = sum(int((t["suggested"] == "positive").sum()) for t in tables)
    log.info(
        "Suggested (score_positive >= %g): %d Positives, %d Negatives in %s; move them into your Samples once checked",
        threshold,
        positives,
        sum(map(len, tables)) - positives,
        output / "suggested",
    )
