"""Videos -> training crops, as DeepMeerkat's training mode makes them.

For each video, its folder OUTPUT/<stem>/ holds the crops `<stem>_<frame>_<i>.jpg` (299x299 JPEG,
frames counted from 1, `i` the box's index in its frame), annotations.csv (one row a crop) and
parameters.csv, in DeepMeerkat 3.x's layout. A video whose stem another video has gets the folder
`<stem>_<hash>` instead (video/folders.py), and its crops are named after it, so that no two crops
of a run share a name. With --model, an earlier model scores every crop
and OUTPUT/suggested/<class>/ (the pair's {Positives,Negatives}) get a copy of each, with
suggested/scores.csv, so a second round of labelling means reviewing suggestions rather than
sorting from scratch (apply/suggest.py). annotations.csv then gives each crop its suggested class
and a score: P(positive) for the pair, else the top class's.

Each video's folder appears whole when the video is done; a rerun skips the videos it finished
with the same settings. A video that cannot be opened, fails to decode part way or does not fit
--roi/--exclude is skipped, logged and listed as failed; the others go on. video/walk.py walks the
videos, for scan too; this module says what becomes of their boxes.
"""

import csv
import logging
from dataclasses import asdict
from pathlib import Path

from meerkat import __version__
from meerkat.apply import suggest
from meerkat.core import atomic, codeversion, nesting, temporaries
from meerkat.core.video_config import ClipsConfig
from meerkat.video import folders, results
from meerkat.video.frames import VideoInfo, list_videos
from meerkat.video.motion import cut
from meerkat.video.walk import VideoWalk, check_some_usable

log = logging.getLogger(__name__)


def clips(cfg: ClipsConfig) -> list[dict]:
    """Crop every video of cfg.videos into cfg.output; one summary dict per video."""
    nesting.check_apart(cfg.output, [("VIDEO", v) for v in cfg.videos], "--output")
    videos = list_videos(cfg.videos)
    output = atomic.output_dir(cfg.output)
    temporaries.remove_stale(output)  # what killed runs left; a live writer's are locked
    chosen = folders.assign(videos, output)
    chosen.note_others(output, f"the counts below{' and suggested/' if cfg.model else ''} cover this run's videos only")
    scorer = suggest.load_scorer(cfg.model, cfg.threshold)
    clipper = VideoClipper(cfg, scorer, chosen.names)
    summaries = [clipper.walk(path) for path in videos]
    if scorer is not None:
        _suggest(output, [s for s in summaries if s["status"] != "failed"], scorer.classes, cfg.threshold)
    failed = [s for s in summaries if s["status"] == "failed"]
    crops = sum(s["crops"] for s in summaries)
    log.info("%d crops from %d videos in %s (%d failed)", crops, len(videos) - len(failed), output, len(failed))
    check_some_usable(summaries)
    return summaries


class VideoClipper(VideoWalk):
    """Videos walked into crops, scored by `scorer` when there is one."""

    stage, what, partial = "clips", "crops", "; crops cover those"
    summary = {"frames": ("total_frames", int), "crops": ("crops", int)}

    def __init__(self, cfg: ClipsConfig, scorer, names: dict[Path, str]):
        settings = {
            **asdict(cfg.motion),
            "max_crops_per_video": cfg.max_crops_per_video,
            "model_sha256": scorer.sha256 if scorer else None,
            "threshold": cfg.threshold if scorer else None,
            "meerkat_version": __version__,
            "code_key": codeversion.key("clips"),  # an upgrade that changed how crops are cut redoes them
        }
        super().__init__(cfg.output, cfg.motion, settings, cfg.force, names)
        self.cfg, self.scorer = cfg, scorer

    def start(self, tmp: Path, path: Path, info: VideoInfo, name: str) -> "VideoCrops":
        return VideoCrops(tmp, path, info, name, self.cfg, self.scorer)

    def line(self, params: dict, seconds: float) -> str:
        rate = params["total_frames"] / seconds if seconds else 0
        return (
            f"{params['total_frames']} frames, {params['motion_events']} with motion, {params['crops']} crops, "
            f"{rate:.0f} frames/s"
        )


class VideoCrops:
    """One video's crops, up to --max-crops-per-video, with a row of annotations.csv each; named
    after the video's folder `name` (DeepMeerkat's `<stem>_<frame>_<i>.jpg` where that is the stem)."""

    def __init__(self, tmp: Path, path: Path, info: VideoInfo, name: str, cfg: ClipsConfig, scorer):
        self.tmp, self.path, self.info, self.name, self.cfg, self.scorer = tmp, path, info, name, cfg, scorer
        self.rows: list[dict] = []

    def boxes(self, number, frame, watched, boxes, full) -> bool:
        limit = self.cfg.max_crops_per_video
        room = limit - len(self.rows) if limit else None
        for i, (box, at) in enumerate(zip(boxes[:room], full[:room], strict=True)):
            name = f"{self.name}_{number}_{i}.jpg"
            atomic.write_file(self.tmp / name, atomic.jpeg(cut(watched, box, self.cfg.motion.padding)))
            self.rows.append({**results.annotation(number, self.info.fps, at, "motion", 1.0), "crop": name})
        if limit and len(self.rows) >= limit:
            log.info("%s: stopped at --max-crops-per-video %d (frame %d)", self.path.name, limit, number)
            return True
        return False

    def finish(self, frames: int) -> tuple[list[dict], dict]:
        if self.scorer is not None:
            _score(self.tmp, self.rows, self.scorer, self.cfg.threshold)
        own = {"training_mode": True, "source_video": str(self.path.resolve()), "crops": len(self.rows)}
        return self.rows, own


def _score(folder: Path, rows: list[dict], scorer, threshold: float) -> None:
    """Label each crop with the model: annotations get its class and score, scores.csv the suggestion."""
    found = suggest.scored(scorer, [(folder / r["crop"]).read_bytes() for r in rows], threshold)
    for row, (scores, label) in zip(rows, found, strict=True):
        # The pair: P(positive), the one column; else the top class's score.
        column = 0 if scorer.classes.is_pair else scorer.classes.index(label)
        row["score"], row["label"] = float(scores[column]), label
    table = [(r["crop"], *scores, label) for r, (scores, label) in zip(rows, found, strict=True)]
    atomic.write_csv(folder / "scores.csv", table, ["crop", *scorer.classes.score_columns(), "suggested"])


def _suggest(output: Path, done: list[dict], classes, threshold: float) -> None:
    """OUTPUT/suggested/ from the scores.csv of each video done."""
    crops, columns = [], classes.score_columns()
    for summary in done:
        folder = output / summary["folder"]
        with open(folder / "scores.csv", newline="", **atomic.TEXT) as f:
            for row in csv.DictReader(f):
                scores = tuple(row[c] for c in columns)
                crops.append(suggest.Suggestion(summary["video"], folder / row["crop"], scores, row["suggested"]))
    suggest.suggest(output, crops, classes, threshold, "video")
