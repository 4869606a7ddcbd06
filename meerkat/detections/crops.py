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
(`_0`). Crops that would still share a name (`Names`) each get 8 hex digits of their entry.
"""

import hashlib
import math
from collections.abc import Iterable

import numpy as np

from meerkat.core import atomic
from meerkat.core.names import folded
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


def _size(name: str) -> int:
    return len(name.encode("utf-8", "surrogatepass"))  # a byte of a non-UTF-8 name counts 3: on the safe side


def _short(name: str, file: str) -> str:
    if _size(name) <= MAX_NAME_BYTES:
        return name
    while _size(name) > MAX_NAME_BYTES - 9:
        name = name[1:]  # the end says most: the file's own name
    return f"{_digest(file)}_{name}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _frame(detection) -> str:
    return f"_frame{detection.frame_number:06d}" if detection.frame_number is not None else ""


def _plain(entry, detection) -> str:
    return f"{_short(_base(entry), entry.file)}{_frame(detection)}_{detection.index}.jpg"


def _hash(name: str) -> int:
    """64 bits of a name as a case-ignoring file system sees it: the clash check holds 8 bytes a crop."""
    return int.from_bytes(hashlib.blake2b(folded(name).encode("utf-8", "surrogatepass"), digest_size=8).digest())


class Names:
    """The crop names of a file's entries, unique in one folder ignoring case.

    A crop is named after its image, frame and detection (`_plain`). Where two crops would take one
    name (the same image listed twice, as concatenated shards and checkpoints list it; a
    frame-level entry beside its video's; paths that join to one name, or differ in case only),
    each of them takes 8 hex digits of its entry's place and path after the image's part."""

    def __init__(self, entries: Iterable):
        hashes = np.fromiter((_hash(_plain(e, d)) for e in entries for d in e.detections), np.uint64)
        values, counts = np.unique(hashes, return_counts=True)
        self._clashing = frozenset(values[counts > 1].tolist())

    def __call__(self, entry, detection) -> str:
        name = _plain(entry, detection)
        if _hash(name) not in self._clashing:
            return name
        mark = _digest(f"{entry.index}\n{entry.file}")
        return f"{_short(_base(entry), entry.file)}_{mark}{_frame(detection)}_{detection.index}.jpg"
