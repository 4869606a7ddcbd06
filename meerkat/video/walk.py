"""The walk clips and scan share: video by video into its folder of OUTPUT, frame by frame within one.

Each video's folder is named by video/folders.py (`<stem>`, or `<stem>_<hash>` when another video
has that stem) and records the video in parameters.csv's `source_path`. A video is probed and its
--roi/--exclude checked; a folder finished with the same settings (its parameters.csv holds their
settings_key) is reused. Else the folder is written in a temporary that takes its place whole
(atomic.atomic_dir): frame 1 only starts the video, as in DeepMeerkat, and the boxes of each later
frame with motion go to the command's Video; then annotations.csv and parameters.csv,
DeepMeerkat's block with the command's own values. A video that decodes well short of the frames
its container states is truncated: its results stay, marked failed. A video that cannot be used
(BadVideo) is logged and listed as failed and leaves nothing, so a rerun tries it again; the
others go on.
"""

import logging
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Protocol

import numpy as np

from meerkat.core import atomic, faults
from meerkat.core.errors import MeerkatError
from meerkat.core.progress import Progress
from meerkat.core.video_config import MotionConfig
from meerkat.video import folders, results
from meerkat.video.frames import BadVideo, Frames, VideoInfo, probe, stride_for
from meerkat.video.motion import Box, MotionDetector, check_regions, parameters

log = logging.getLogger(__name__)


class Video(Protocol):
    """What clips or scan makes of one video's boxes."""

    def boxes(self, number: int, frame: np.ndarray, watched: np.ndarray, boxes: list[Box], full: list[Box]) -> bool:
        """Frame `number`'s boxes, in the pixels of `watched` (what crops are cut from) and of the
        frame (`full`); True stops the video after this frame."""

    def finish(self, frames: int) -> tuple[list[dict], dict]:
        """After the last of `frames` frames: the rows of annotations.csv and the video's own
        parameters.csv values."""


class VideoWalk(ABC):
    """Videos walked one at a time; a subclass says what becomes of their boxes (`start`).

    `stage` ("clips", "scan") prefixes the fault points; `what` names a video's results in messages
    ("the crops of", "the scan of"); `summary` maps each summary field to its parameters.csv key
    and type; `partial` ends a truncated video's reason.
    """

    stage: str
    what: str
    summary: dict[str, tuple[str, type]]
    partial = ""

    def __init__(self, output: Path, motion: MotionConfig, settings: dict, force: bool, names: dict[Path, str]):
        self.output, self.motion, self.settings, self.force = Path(output), motion, settings, force
        self.folder_names = names  # each video -> the name of its folder in OUTPUT (video/folders.py)

    @abstractmethod
    def start(self, tmp: Path, path: Path, info: VideoInfo, name: str) -> Video:
        """The Video that writes the results of `path` into the folder `tmp`, to be named `name`."""

    @abstractmethod
    def line(self, params: dict, seconds: float) -> str:
        """What the log says of a finished video, between its name and its folder."""

    def reusable(self, folder: Path) -> bool:
        """Whether a folder finished with these settings holds all a rerun takes from it."""
        return True

    def walk(self, path: Path) -> dict:
        """The summary of one video: reused, done, or failed with its reason."""
        try:
            return self._walk(path)
        except BadVideo as e:
            log.warning("warning: %s: %s; skipped", path, e)
            log.debug("why %s failed:", path, exc_info=e)
            return {**self._summary(path, {}), "status": "failed", "reason": str(e), "unusable": e.failed, "folder": ""}

    def _walk(self, path: Path) -> dict:
        info = probe(path)
        check_regions(self.motion, info.width, info.height)
        folder = self.output / self.folder_names[path]
        key = results.settings_key(path, self.settings)
        previous = results.read_parameters(folder / "parameters.csv")
        if not self.force and previous.get("settings_key") == key and self.reusable(folder):
            log.info("Reusing the finished %s of %s in %s", self.what, path.name, folder)
            return self._summary(path, previous, reused=True)
        with atomic.atomic_dir(folder, f"the {self.what} of {path}") as tmp:
            params, seconds = self._write(tmp, path, info, key)
        log.info("%s: %s -> %s", path.name, self.line(params, seconds), folder)
        if params["status"] == "failed":
            log.warning("warning: %s: %s", path, params["reason"])
        return self._summary(path, {k: str(v) for k, v in params.items()})

    def _write(self, tmp: Path, path: Path, info: VideoInfo, key: str) -> tuple[dict, float]:
        """The results of `path` in `tmp`; its parameters.csv values and the seconds it took."""
        start = time.perf_counter()
        video = self.start(tmp, path, info, self.folder_names[path])
        frames, motion_frames, stopped = _feed(video, path, info, self.motion, f"{self.stage}:{info.stem}")
        rows, own = video.finish(frames)
        results.write_annotations(tmp / "annotations.csv", rows)
        seconds = time.perf_counter() - start
        params = {
            **{k: v for k, v in self.settings.items() if v is not None},
            **parameters(self.motion),
            **own,
            "mode": "motion",
            "video_fps": info.fps,
            "total_frames": frames,
            "motion_events": motion_frames,  # DeepMeerkat's name for the frames with motion
            "minutes": round(seconds / 60, 4),
            "settings_key": key,
            folders.RECORD: folders.identity(path),  # which video the folder holds, whatever --path-map says
            **_completeness(info, frames, stopped, self.partial),
        }
        results.write_parameters(tmp / "parameters.csv", params)
        return params, seconds

    def _summary(self, path: Path, params: dict[str, str], reused: bool = False) -> dict:
        """`folder`: the name of the folder that holds the video's results."""
        status = params.get("status", "done")
        return {
            "video": str(path),
            "status": "reused" if reused and status == "done" else status,
            "reason": params.get("reason", ""),
            **{field: kind(params.get(name, 0)) for field, (name, kind) in self.summary.items()},
            "folder": self.folder_names[path],
        }


def _feed(video: Video, path: Path, info: VideoInfo, cfg: MotionConfig, fault: str) -> tuple[int, int, bool]:
    """Give `video` the boxes of each frame with motion; (frames read, frames with motion, stopped)."""
    detector = MotionDetector(cfg, info.width, info.height)
    frames = Frames(path, stride_for(cfg.stride, cfg.fps, info.fps), detector.shrink)
    motion_frames = 0
    with Progress(path.name, info.frames) as progress:
        if not info.frames:
            log.warning("warning: %s does not say how many frames it holds; they are counted as it is read", path)
        for number, frame, small in frames:
            progress.update(number)
            faults.point(f"{fault}:{number}")
            if number == 1:
                continue  # DeepMeerkat discards frame 1: it never reaches the subtractor
            if boxes := detector.boxes(small):
                motion_frames += 1
                full = [b.shifted(*detector.offset) for b in boxes]
                if video.boxes(number, frame, detector.watched(frame), boxes, full):
                    # The frames read are those processed: the decoding thread may be ahead.
                    return number, motion_frames, True
    return frames.count, motion_frames, False


def _completeness(info: VideoInfo, frames: int, stopped: bool, partial: str) -> dict:
    """A video that ends well before the frame count its container states is truncated: failed."""
    if stopped or not info.frames or frames >= info.frames - max(2, info.frames // 100):
        return {"status": "done", "reason": ""}
    return {"status": "failed", "reason": f"truncated: decoded {frames} of the {info.frames} frames it states{partial}"}


def check_some_usable(summaries: list[dict]) -> None:
    """One error when every video failed before giving a result, naming the first and its reason.

    A failed video's summary holds `unusable`: its BadVideo's `failed`.
    """
    failed = [s for s in summaries if s.get("unusable")]
    if summaries and len(failed) == len(summaries):
        what = "read" if all(s["unusable"] == "read" for s in failed) else "used"
        raise MeerkatError(f"no video could be {what}; the first, {failed[0]['video']}: {failed[0]['reason']}")
