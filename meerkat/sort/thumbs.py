"""Thumbnails: each crop's made once, kept in SAMPLES/meerkat-sort/thumbs/, named by the crop's path,
size and time, so a changed crop gets a new one and a later session makes none again.

A crop that is already about a thumbnail's size, in a format the browser shows (a 299 px crop of
`meerkat clips`), is its own thumbnail: only its header is read. Making a thumbnail of it would cost
a decode, a resize and an encode to save a few kB on a loopback connection. A larger crop (a
MegaDetector box of a 12 MP image) is decoded at a reduced size (OpenCV's IMREAD_REDUCED_*, which
decodes a JPEG at 1/2, 1/4 or 1/8 for little more than the cost of reading it), on several threads
(OpenCV lets go of the GIL while it decodes).
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
AS_IS_SIDE, AS_IS_BYTES = 2 * SIDE, 256 * 1024  # at most this large, a crop is shown as it is
# The formats Chromium, Firefox and Safari all show, and their types (served with nosniff).
SHOWN = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
HEADER_BYTES = 64 * 1024  # enough for a JPEG's size behind its EXIF
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def key(crop: Crop) -> str:
    text = f"{crop.rel}\0{crop.size}\0{crop.mtime_ns}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:24]


def path_of(folder: Path, crop: Crop) -> Path:
    k = key(crop)
    return folder / k[:2] / f"{k}.jpg"


def as_is(path: Path) -> str | None:
    """The type to serve `path` as its own thumbnail with, or None when it needs one made."""
    try:
        if os.stat(path).st_size > AS_IS_BYTES:
            return None
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
        image = Image.open(io.BytesIO(head))
    except Exception:  # unreadable, or no header PIL knows: render() says whether OpenCV can
        return None
    return SHOWN.get(image.format) if max(image.size) <= AS_IS_SIDE else None


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
        # As stored, as the model reads it (EXIF orientation not applied: samples/imagefiles.py)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), _flag(data) | cv2.IMREAD_IGNORE_ORIENTATION)
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


def make(folder: Path, root: Path, crop: Crop) -> tuple[Path, str] | None:
    """The crop's thumbnail and its type: the crop itself when small, else made now unless it is there
    already; None when the crop cannot be read."""
    target = path_of(folder, crop)
    if target.is_file():
        return target, "image/jpeg"
    if kind := as_is(root / crop.rel):
        return root / crop.rel, kind
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
    return target, "image/jpeg"


def make_all(folder: Path, root: Path, crops: list[Crop], workers: int | None = None) -> int:
    """Make the missing thumbnails of `crops`, in their order; the number that could not be made."""
    workers = workers or min(8, os.cpu_count() or 1)
    # Those made already are known from one listing, not from a task each: checking 20,000 in the pool
    # took 0.6 s of the server's start, and slowed the page's first requests.
    made = {n for sub in os.scandir(folder) if sub.is_dir() for n in os.listdir(sub)} if folder.is_dir() else set()
    crops = [c for c in crops if f"{key(c)}.jpg" not in made]
    with ThreadPoolExecutor(workers) as pool:
        return sum(t is None for t in pool.map(lambda c: make(folder, root, c), crops))
