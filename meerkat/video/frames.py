"""Videos: finding them, opening one, and its frames, numbered from 1 as DeepMeerkat numbers them.

Frames are decoded on a second thread (OpenCV releases the GIL while it decodes), so decoding
overlaps motion detection on the other core. A file OpenCV cannot use, or one whose decoding
fails part way, is a BadVideo with a reason a user can act on.
"""

import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from meerkat.core.errors import MeerkatError

# DeepMeerkat 3.x's list, plus what camera traps and phones write.
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".tlv", ".mts", ".wmv", ".mpg", ".mpeg"})


class BadVideo(Exception):
    """A video that cannot be used; the message is the reason listed for it."""

    failed = "read"  # when every video fails so, the error says "no video could be read"


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    fps: int  # DeepMeerkat's: round(CAP_PROP_FPS), or 30 when the file does not say
    width: int
    height: int
    frames: int  # as the container says; 0 when it does not
    stem: str
    rate: float  # frames a second as the container says (29.97...), or 30.0 as for `fps`: MegaDetector's frame_rate


def list_videos(paths) -> list[Path]:
    """Video files among `paths`: files as given, folders searched recursively by extension."""
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
        elif p.exists():
            found.append(p)
        else:
            raise MeerkatError(f"not found: {p}; pass video files or folders of them")
    if not found:
        raise MeerkatError(
            f"no videos in {', '.join(map(str, paths))} (looked for {', '.join(sorted(VIDEO_SUFFIXES))})"
        )
    return found  # videos of one stem get folders of their own: video/folders.py


def _capture(path: Path) -> cv2.VideoCapture:
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are no UTF-8, such as a Latin-1 name: OpenCV would crash on them
        raise BadVideo("its name is not UTF-8, which OpenCV cannot open; rename it") from None
    return cv2.VideoCapture(name)


def probe(path: Path) -> VideoInfo:
    """Open `path` and read what its container says; raise BadVideo if OpenCV cannot use it."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise BadVideo(f"cannot read: {e.strerror}") from None
    if size == 0:
        raise BadVideo("empty file (0 bytes)")
    cap = _capture(path)
    try:
        if not cap.isOpened():
            raise BadVideo("OpenCV cannot open it: not a video, or a codec this OpenCV build lacks")
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        ok, _ = cap.read()
        if not ok or width <= 0 or height <= 0:
            raise BadVideo("OpenCV opens it but decodes no frame: truncated, or a codec this OpenCV build lacks")
        rate = float(cap.get(cv2.CAP_PROP_FPS) or 0)
        fps = round(rate) or 30
        frames = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
    finally:
        cap.release()
    return VideoInfo(Path(path), fps, width, height, frames, Path(path).stem, rate if round(rate) else 30.0)


class Frames:
    """Iterate (frame number from 1, BGR image, prepare(image)) over frames 1, 1 + stride, ...

    Skipped frames are grabbed, not decoded into images, which costs little. `prepare` runs on
    the decoding thread too (the motion detector's downscaling). After the loop, `count` is the
    number of frames the video held (as far as it could be read). An error on the decoding thread
    ends the loop as a BadVideo naming the frame and the error, never as a video that ends early.
    """

    def __init__(self, path: Path, stride: int = 1, prepare: Callable = lambda image: None, ahead: int = 8):
        self.path, self.stride, self.prepare, self.ahead = Path(path), stride, prepare, ahead
        self.count = 0
        self.error: tuple[int, Exception] | None = None  # (frame, what the decoding thread raised)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, Any]]:
        cap = _capture(self.path)
        if not cap.isOpened():
            raise BadVideo("OpenCV cannot open it")
        out: queue.Queue = queue.Queue(maxsize=self.ahead)
        stop = threading.Event()

        def read():
            try:
                while not stop.is_set():
                    number = self.count + 1
                    skip = self.count % self.stride
                    ok = cap.grab() if skip else None
                    if not skip:
                        ok, image = cap.read()
                    if not ok:
                        break
                    self.count = number
                    if not skip:
                        out.put((number, image, self.prepare(image)))
            except Exception as e:  # the consumer raises it, after the frames before it
                self.error = number, e
            finally:
                out.put(None)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            while (item := out.get()) is not None:
                yield item
            if self.error:
                number, e = self.error
                what = " ".join(str(e).split())  # on one line: OpenCV's messages span several
                reason = f"{type(e).__name__}: {what}" if what else type(e).__name__
                raise BadVideo(f"decoding failed at frame {number}: {reason}") from e
        finally:
            stop.set()
            while reader.is_alive():  # unblock a reader waiting on a full queue
                try:
                    out.get(timeout=0.1)
                except queue.Empty:
                    pass
            cap.release()


def stride_for(stride: int, fps_wanted: float | None, video_fps: int) -> int:
    """--fps F -> every round(video fps / F)th frame; else --stride."""
    if fps_wanted:
        return max(1, round(video_fps / fps_wanted))
    return stride
