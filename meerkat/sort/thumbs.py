"""Thumbnails: each crop's made once, kept in SAMPLES/meerkat-sort/thumbs/, named by the crop's path,
size and time, so a changed crop gets a new one and a later session makes none again.

A crop is decoded at a reduced size where it is much larger than a thumbnail (OpenCV's
IMREAD_REDUCED_*, which decodes a JPEG at 1/2, 1/4 or 1/8 for little more than the cost of reading
it), and the crops are shared among threads (OpenCV lets go of the GIL while it decodes).
"""

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from meerkat.core import temporaries
from meerkat.sort.catalog import Crop

SIDE = 192  # px, the longer side: sharp at the page's 160 px cards on a 1.2x screen
QUALITY = 85
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def key(crop: Crop) -> str:
    text = f"{crop.rel}\0{crop.size}\0{crop.mtime_ns}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:24]


def path_of(folder: Path, crop: Crop) -> Path:
    k = key(crop)
    return folder / k[:2] / f"{k}.jpg"


def _flag(data: bytes) -> int:
    """The largest reduction that still leaves the longer side at least SIDE (headers only)."""
    try:
        width, height = Image.open(io.BytesIO(data)).size
    except Exception:  # not an image PIL knows: let OpenCV try it whole
        return cv2.IMREAD_COLOR
    return next((flag for factor, flag in _REDUCED if max(width, height) // factor >= SIDE), cv2.IMREAD_COLOR)


def render(data: bytes) -> bytes | None:
    """A JPEG thumbnail of an encoded crop, at most SIDE px a side; None when it cannot be decoded."""
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), _flag(data))
    except cv2.error:  # an empty file: OpenCV asserts rather than return None
        return None
    if image is None:
        return None
    h, w = image.shape[:2]
    scale = SIDE / max(h, w)
    if scale < 1:
        # Down to half size, bilinear still reads every pixel and costs a sixth of INTER_AREA, which on
        # a 299 px crop took longer than decoding it.
        how = cv2.INTER_LINEAR if scale >= 0.5 else cv2.INTER_AREA
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=how)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    return encoded.tobytes() if ok else None


def make(folder: Path, root: Path, crop: Crop) -> Path | None:
    """The crop's thumbnail, made now if it is not there yet; None when the crop cannot be read."""
    target = path_of(folder, crop)
    if target.is_file():
        return target
    try:
        data = (root / crop.rel).read_bytes()
    except OSError:
        return None
    thumb = render(data)
    if thumb is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(temporaries.temp_name(target.name))
    try:
        tmp.write_bytes(thumb)
        os.replace(tmp, target)  # meerkat's own cache: two makers of one thumbnail write the same bytes
    finally:
        tmp.unlink(missing_ok=True)
    return target


def make_all(folder: Path, root: Path, crops: list[Crop], workers: int | None = None) -> int:
    """Make the missing thumbnails of `crops`, in their order; the number that could not be made."""
    workers = workers or min(8, os.cpu_count() or 1)
    # Those made already are known from one listing, not from a task each: checking 20,000 in the pool
    # took 0.6 s of the server's start, and slowed the page's first requests.
    made = {n for sub in os.scandir(folder) if sub.is_dir() for n in os.listdir(sub)} if folder.is_dir() else set()
    crops = [c for c in crops if f"{key(c)}.jpg" not in made]
    with ThreadPoolExecutor(workers) as pool:
        return sum(t is None for t in pool.map(lambda c: make(folder, root, c), crops))
