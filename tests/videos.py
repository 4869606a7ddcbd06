"""Small, deterministic test videos written with OpenCV, and the boxes motion detection must find.

A square moves over a noisy grey background. Its shade changes every frame, cycling through seven
shades far apart from each other and from the grey: each frame, every pixel under the square takes
a value the MOG2 subtractor has not seen there recently (it keeps 5 modes per pixel), so the whole
square is foreground, while the pixels it leaves go back to the grey the subtractor knows well.
A square that first appears at frame 3 or later (the default) is therefore found as exactly the
rectangle drawn, from its first frame on: `boxes[frame] == (x, y, w, h)`. (A square of one
constant shade would not be: after a frame or two MOG2 takes its shade for background too, and
only its leading edge, a strip narrower than the 9x9 opening, stays foreground.)

The default codec is FFV1 in .avi: lossless, so the frames decoded are the frames drawn and the
boxes are exact. MJPG in .avi and mp4v in .mp4 are written and read as well, but their ringing
around the square's edges now and then makes a box 1 px taller (tests/test_clips.py checks all of
them); this OpenCV cannot write avc1/H.264.
"""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# Far apart (>= 30 per channel) from one another and from the background's 128 +- noise; seven, a
# prime, so that every stride (but multiples of 7) still shows the subtractor a new shade each time.
SHADES = (0, 170, 30, 205, 60, 240, 90)
BACKGROUND = 128


@dataclass(frozen=True)
class Square:
    """A w x h square at `start` in frame `first`, moving by `speed` px a frame until `last`."""

    size: tuple[int, int] = (40, 40)
    start: tuple[int, int] = (20, 60)
    speed: tuple[int, int] = (4, 0)
    first: int = 3
    last: int | None = None

    def at(self, frame: int) -> tuple[int, int, int, int] | None:
        """(x, y, w, h) in frame `frame` (numbered from 1), or None when it is not drawn."""
        if frame < self.first or (self.last is not None and frame > self.last):
            return None
        k = frame - self.first
        return self.start[0] + k * self.speed[0], self.start[1] + k * self.speed[1], *self.size


@dataclass(frozen=True)
class Recording:
    """What a test video is, apart from its squares: `frames` of `size` (w, h) at `fps`, noise of
    +-`noise` on every pixel (seeded), encoded with `fourcc`."""

    frames: int = 40
    size: tuple[int, int] = (240, 160)
    noise: int = 6
    seed: int = 0
    fourcc: str = "FFV1"
    fps: int = 25


def moving_squares(path, squares, **recording) -> tuple[Path, list[dict[int, tuple[int, int, int, int]]]]:
    """Write a video (`recording`: the fields of Recording) with `squares` drawn; return the path
    and, for each square, {frame: (x, y, w, h)} of the frames it is drawn in."""
    rec = Recording(**recording)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = rec.size
    rng = np.random.default_rng(rec.seed)
    boxes: list[dict[int, tuple[int, int, int, int]]] = [{} for _ in squares]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*rec.fourcc), rec.fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"this OpenCV cannot write {rec.fourcc} into {path.suffix}")
    try:
        for frame in range(1, rec.frames + 1):
            image = np.full((height, width, 3), BACKGROUND, np.int16)
            for i, square in enumerate(squares):
                box = square.at(frame)
                if box is None:
                    continue
                x, y, w, h = box
                if x < 0 or y < 0 or x + w > width or y + h > height:
                    raise ValueError(f"square {i} leaves the {width}x{height} frame at frame {frame}: {box}")
                image[y : y + h, x : x + w] = SHADES[(frame + 2 * i) % len(SHADES)]
                boxes[i][frame] = box
            if rec.noise:
                image += rng.integers(-rec.noise, rec.noise + 1, image.shape, dtype=np.int16)
            writer.write(np.clip(image, 0, 255).astype(np.uint8))
    finally:
        writer.release()
    return path, boxes


def moving_square(
    path, box=(40, 40), speed=(4, 0), start=(20, 60), first=3, **recording
) -> tuple[Path, dict[int, tuple[int, int, int, int]]]:
    """One `box` (w, h) square at `start` in frame `first`, moving by `speed` px a frame (see the
    module's docstring); `recording`: frames, size, noise, seed, fourcc, fps (Recording). Returns
    the path and {frame: (x, y, w, h)}, which is also what motion detection finds."""
    square = Square(size=box, start=start, speed=speed, first=first)
    path, (boxes,) = moving_squares(path, [square], **recording)
    return path, boxes


def truncated_copy(source, target, fraction: float = 0.5) -> Path:
    """The first `fraction` of `source`'s bytes: a video cut short (a copy interrupted)."""
    data = Path(source).read_bytes()
    Path(target).write_bytes(data[: int(len(data) * fraction)])
    return Path(target)


def bad_videos(folder) -> dict[str, Path]:
    """Files with a video's name that are no video: a zero-byte .mp4, HTML saved as .mp4, and
    random bytes as .avi (a truncated one needs a real video: see truncated_copy)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    text = folder / "page.mp4"
    text.write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>\n", encoding="utf-8")
    garbage = folder / "garbage.avi"
    garbage.write_bytes(np.random.default_rng(7).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    return {"empty": empty, "text": text, "garbage": garbage}
