"""Motion detection as DeepMeerkat does it: boxes around what moves in each frame.

MOG2 background subtraction (no shadows, variance threshold 20, background ratio 0.95, learning
rate 0.1, OpenCV's default history) on the colour frame, a 9x9 elliptical opening, the external
contours over 50 px², their bounding boxes merged while less than 75 px apart, and the merged
boxes that cover at least --min-area of the frame (1 %). `../shared/notes/deepmeerkat-motion.md`
has the reference; tests/test_deepmeerkat.py compares with DeepMeerkat 3.1.4 itself. video/walk.py
feeds the detector a video's frames.

Where meerkat differs, it says so: the subtractor's first frame (DeepMeerkat's frame 2) sees
everything as foreground and yields one full-frame box, which is dropped unless asked for; with
--motion-scale the subtractor (and its opening) run on a smaller copy of the frame and the boxes are
scaled back.

--roi and --exclude are in the pixels of the full frame. A --roi must lie wholly inside a video's
frame: it is what crops are cut from and what --min-area is a fraction of, so a region cut short
by a smaller frame would change both. An --exclude may reach past the watched region (its part
inside counts) but not lie wholly outside it, where it would exclude nothing. A region that does
not fit one video fails that video (RegionMisfit); the others go on.
"""

import math
from dataclasses import dataclass

import cv2
import numpy as np

from meerkat.core.video_config import MotionConfig
from meerkat.video.frames import BadVideo

# MOG2 as DeepMeerkat sets it up; parameters.csv records them (parameters() below).
VARIANCE = 20  # varThreshold
BACKGROUND_RATIO = 0.95
LEARNING_RATE = 0.1
MERGE_DISTANCE = 75.0  # px, in the full-resolution frame
MIN_CONTOUR_AREA = 50.0  # px², in the full-resolution frame
KERNEL_SIDE = 9  # px, the elliptical opening's size in the full-resolution frame


def parameters(cfg: MotionConfig) -> dict:
    """The detector's settings under the names DeepMeerkat's parameters.csv gives them."""
    return {
        "mog_learning_rate": LEARNING_RATE,
        "mog_variance": VARIANCE,
        "min_area_fraction": cfg.min_area,
        "use_knn": False,
    }


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    def shifted(self, dx: int, dy: int) -> "Box":
        return Box(self.x + dx, self.y + dy, self.w, self.h)


def gap(a: Box, b: Box) -> float:
    """Distance between two boxes' edges; 0 when they touch or overlap."""
    dx = max(a.x - (b.x + b.w), b.x - (a.x + a.w), 0)
    dy = max(a.y - (b.y + b.h), b.y - (a.y + a.h), 0)
    return math.hypot(dx, dy)


def union(a: Box, b: Box) -> Box:
    x, y = min(a.x, b.x), min(a.y, b.y)
    return Box(x, y, max(a.x + a.w, b.x + b.w) - x, max(a.y + a.h, b.y + b.h) - y)


def merge(boxes: list[Box], distance: float = MERGE_DISTANCE) -> list[Box]:
    """DeepMeerkat's merge: in order, each unused box absorbs every later unused box closer than
    `distance` to its growing union; passes repeat until one merges nothing."""
    while True:
        used = [False] * len(boxes)
        out = []
        for i, box in enumerate(boxes):
            if used[i]:
                continue
            for j in range(i + 1, len(boxes)):
                if not used[j] and gap(box, boxes[j]) < distance:
                    box = union(box, boxes[j])
                    used[j] = True
            out.append(box)
        if len(out) == len(boxes):
            return out
        boxes = out


class RegionMisfit(BadVideo):
    """A --roi or --exclude that does not fit this video's frame."""

    failed = "used"


def _text(region) -> str:
    return ",".join(map(str, region))


def check_regions(cfg: MotionConfig, width: int, height: int) -> None:
    """Raise RegionMisfit unless --roi lies inside the width x height frame and each --exclude
    overlaps the watched region (see the module's docstring)."""
    if cfg.roi:
        x, y, w, h = cfg.roi
        if x + w > width or y + h > height:
            raise RegionMisfit(
                f"--roi {_text(cfg.roi)} does not fit its {width}x{height} frame; "
                f"give x,y,w,h with x+w <= {width} and y+h <= {height}"
            )
    x, y, w, h = cfg.roi or (0, 0, width, height)
    watched = f"--roi {_text(cfg.roi)}" if cfg.roi else f"its {width}x{height} frame"
    for ex, ey, ew, eh in cfg.exclude:
        if ex >= x + w or ey >= y + h or ex + ew <= x or ey + eh <= y:
            raise RegionMisfit(
                f"--exclude {_text((ex, ey, ew, eh))} lies outside {watched}, so it would exclude nothing; "
                "give it in the pixels of the full frame"
            )


class MotionDetector:
    """Feed it every frame that is processed, in order; it returns that frame's boxes.

    Boxes are in the coordinates of the region the detector watches (the --roi, else the whole
    frame) at full resolution; `offset` turns them into frame coordinates.
    """

    def __init__(self, cfg: MotionConfig, width: int, height: int):
        check_regions(cfg, width, height)
        x, y, w, h = self.region = cfg.roi or (0, 0, width, height)
        self.offset = (x, y)
        self.scale = cfg.motion_scale
        # The opening shrinks with the frame; an unscaled 9x9 would erase what is half as large.
        side = KERNEL_SIDE if self.scale == 1.0 else max(3, round(KERNEL_SIDE * self.scale) | 1)
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
        self.min_area = cfg.min_area
        self.keep_first = cfg.keep_first_frame
        self.first = True
        self.subtractor = cv2.createBackgroundSubtractorMOG2(detectShadows=False, varThreshold=VARIANCE)
        self.subtractor.setBackgroundRatio(BACKGROUND_RATIO)
        rw, rh = self.region[2:]
        self.small = (max(1, round(rw * self.scale)), max(1, round(rh * self.scale)))
        self.keep = None  # mask of the watched pixels, where parts are --exclude'd
        if cfg.exclude:
            keep = np.full((self.small[1], self.small[0]), 255, np.uint8)
            for ex, ey, ew, eh in cfg.exclude:
                # Its part inside the region: OpenCV's points are int32, an --exclude need not be.
                x0, y0 = max(ex, x), max(ey, y)
                ew, eh = min(ex + ew, x + w) - x0, min(ey + eh, y + h) - y0
                sx, sy = (x0 - x) * self.scale, (y0 - y) * self.scale
                p0 = (math.floor(sx), math.floor(sy))
                p1 = (math.ceil(sx + ew * self.scale) - 1, math.ceil(sy + eh * self.scale) - 1)
                cv2.rectangle(keep, p0, p1, 0, -1)
            self.keep = keep

    def watched(self, frame: np.ndarray) -> np.ndarray:
        """The part of `frame` the detector watches, at full resolution: crops are cut from it."""
        x, y, w, h = self.region
        return frame[y : y + h, x : x + w]

    def shrink(self, frame: np.ndarray) -> np.ndarray:
        """What the subtractor sees of `frame`: the watched region, scaled by --motion-scale."""
        image = self.watched(frame)
        return image if self.scale == 1.0 else cv2.resize(image, self.small, interpolation=cv2.INTER_AREA)

    def boxes(self, small: np.ndarray) -> list[Box]:
        """The boxes of the frame whose shrink() is `small`."""
        mask = self.subtractor.apply(small, learningRate=LEARNING_RATE)
        if self.keep is not None:
            mask = cv2.bitwise_and(mask, self.keep)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self.kernel)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        first, self.first = self.first, False
        if first and not self.keep_first:
            return []  # everything is foreground to a subtractor that has seen nothing yet
        s = self.scale
        rects = [cv2.boundingRect(c) for c in contours if cv2.contourArea(c) > MIN_CONTOUR_AREA * s * s]
        if s == 1.0:
            boxes = [Box(*r) for r in rects]
        else:
            rw, rh = self.region[2:]
            boxes = []
            for bx, by, bw, bh in rects:
                x0, y0 = math.floor(bx / s), math.floor(by / s)
                boxes.append(
                    Box(x0, y0, min(rw, math.ceil((bx + bw) / s)) - x0, min(rh, math.ceil((by + bh) / s)) - y0)
                )
        area = self.region[2] * self.region[3]
        return [b for b in merge(boxes) if b.w * b.h >= self.min_area * area]


SIDE = 299  # DeepMeerkat's crop size (InceptionV3's input)
MARGIN = (math.sqrt(2) - 1) / 2


def cut(image: np.ndarray, box: Box, padding: str = "deepmeerkat") -> np.ndarray:
    """The 299x299 crop of `box` from `image` (the watched region), padded as DeepMeerkat pads.

    DeepMeerkat's margin is a fraction of each edge's coordinate, not of the box: a box near the
    right or bottom edge gets far more context than one near the top-left corner. "box" makes
    the margin the same fraction of the box's own width and height instead.
    """
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box.x, box.y, box.x + box.w, box.y + box.h
    if padding == "box":
        top, bottom = int(y0 - box.h * MARGIN), int(y1 + box.h * MARGIN)
        left, right = int(x0 - box.w * MARGIN), int(x1 + box.w * MARGIN)
    else:
        top, bottom = int(y0 - y0 * MARGIN), int(y1 + y1 * MARGIN)
        left, right = int(x0 - x0 * MARGIN), int(x1 + x1 * MARGIN)
    top, bottom = min(max(top, 0), height), min(max(bottom, 0), height)
    left, right = min(max(left, 0), width), min(max(right, 0), width)
    return cv2.resize(image[top:bottom, left:right], (SIDE, SIDE))
