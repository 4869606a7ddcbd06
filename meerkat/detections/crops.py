"""A MegaDetector box -> the 299x299 JPEG crop: the very bytes clips writes and scan scores.

A box is normalised [x_min, y_min, width, height]. Its pixel box takes the floor of its left and
top and the ceiling of its right and bottom, clipped to the image and at least one pixel wide and
high: it covers every pixel the box touches by more than a millionth of a pixel. The crop is then
cut as motion crops are (video.motion.cut: the --padding margin, resized to 299x299) and encoded
as core.atomic.jpeg encodes them, so that `predict` on the file clips writes gives the score scan
gives the box.

Crop names are unique in one folder whatever folders the images come from: the image's path with
its folders joined by "_" (`site1/cam2/IMG_0001.JPG` -> `site1_cam2_IMG_0001`), then the frame of a
video (`_frame000123`, 0-based as MegaDetector counts) and the detection's index in its entry
(`_0`). Paths that would still give one name (`a_b/c.jpg` and `a/b_c.jpg`, or names that differ in
case only, which clash on macOS and Windows) each get 8 hex digits of their path's sha256.
"""

import hashlib
import math
from collections import defaultdict

import numpy as np

from meerkat.core import atomic
from meerkat.video.motion import Box, cut

# Float noise, in pixels: (0.2 + 0.4) * 100 is 60.00000000000001, whose ceiling would add a row.
NOISE = 1e-6
MAX_NAME_BYTES = 200  # below NAME_MAX (255) with room for the frame, the index and a temporary's mark


def pixel_box(bbox, width: int, height: int) -> Box:
    """The pixels of a `width` x `height` image that a normalised [x, y, w, h] box touches."""
    x, y, w, h = bbox
    x0 = min(max(math.floor(x * width + NOISE), 0), width - 1)
    y0 = min(max(math.floor(y * height + NOISE), 0), height - 1)
    x1 = max(min(math.ceil((x + w) * width - NOISE), width), x0 + 1)
    y1 = max(min(math.ceil((y + h) * height - NOISE), height), y0 + 1)
    return Box(x0, y0, x1 - x0, y1 - y0)


def crop(image: np.ndarray, bbox, padding: str) -> bytes:
    """The JPEG bytes of the crop of `bbox` from `image` (BGR), with the --padding margin."""
    height, width = image.shape[:2]
    return atomic.jpeg(cut(image, pixel_box(bbox, width, height), padding))


def _base(entry) -> str:
    """`site1/cam2/IMG_0001.JPG` -> `site1_cam2_IMG_0001`; a frame-level `v.mp4/frame000123.jpg`
    -> `v_frame000123`."""
    parts = [p for p in entry.file.replace("\\", "/").split("/") if p not in ("", ".")]
    last = len(parts) - 2 if entry.frame is not None and len(parts) > 1 else len(parts) - 1
    parts = [_stem(p) if i >= last else p for i, p in enumerate(parts)]
    return "_".join(parts).lstrip(".") or "image"  # a leading dot would hide the crop from createdocs


def _stem(name: str) -> str:
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


def _short(name: str, file: str) -> str:
    if len(name.encode("utf-8", "surrogateescape")) <= MAX_NAME_BYTES:
        return name
    while len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES - 9:
        name = name[1:]  # the end says most: the file's own name
    return f"{_digest(file)}_{name}"


def _digest(file: str) -> str:
    return hashlib.sha256(file.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def bases(entries) -> dict[int, str]:
    """{entry index: the start of its crops' names}, unique ignoring case."""
    found = {e.index: _short(_base(e), e.file) for e in entries}
    groups = defaultdict(list)
    for e in entries:
        groups[found[e.index].casefold()].append(e)
    for group in groups.values():
        if len(group) > 1:
            for e in group:
                found[e.index] = _short(f"{_base(e)}_{_digest(e.file)}", e.file)
    return found


def crop_name(base: str, detection) -> str:
    """The crop's file name: base, the frame of a video's detection, the detection's index."""
    frame = f"_frame{detection.frame_number:06d}" if detection.frame_number is not None else ""
    return f"{base}{frame}_{detection.index}.jpg"
