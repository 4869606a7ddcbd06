"""Image files: finding them in folders, reading one for the model, or saying in a few words why
it cannot be used.

The checks run in Python before TensorFlow sees the bytes. A file is sniffed by its content, not
its name, so a PNG called `.jpg` is fine. Pillow reads only the header, which gives the format and
the size without decoding. Formats that TensorFlow's decoder lacks (TIFF, PPM) are converted
losslessly to PNG with OpenCV, and the model's own decode (embed.decode) then sees the same
pixels.

EXIF orientation is not applied, here or in the exported model: crops are used as stored, which is
also how DeepMeerkat hands frames to the model.
"""

import csv
import io
import logging
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from meerkat.core import atomic
from meerkat.core.errors import describe_os_error
from meerkat.core.ownership import is_bookkeeping
from meerkat.core.settings import IMAGE_EXTENSIONS, MAX_PIXELS

log = logging.getLogger(__name__)

# What tf.io.decode_image reads (MPO is a camera JPEG with extra frames).
TF_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP"})
Image.MAX_IMAGE_PIXELS = None  # the limit below is ours, with our message


class Unreadable(Exception):
    """A file preprocess skips; the message is the reason listed in the skipped-files CSV."""


def _looks_like(data: bytes) -> str:
    head = data[:24]
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"text starting {head.decode('ascii').strip()[:20]!r}"
    return f"unknown bytes {head[:8].hex(' ')}"


def read_bytes(path) -> bytes:
    """The file's bytes; raises Unreadable for a missing, unreadable or empty file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise Unreadable("file not found") from None
    except IsADirectoryError:
        raise Unreadable("a folder, not a file") from None
    except OSError as e:
        raise Unreadable(f"cannot read: {describe_os_error(e)}") from None
    if not data:
        raise Unreadable("empty file (0 bytes)")
    return data


def for_model(data: bytes) -> bytes:
    """Bytes that tf.io.decode_image can decode, from an image file's bytes; raises Unreadable otherwise."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format, image.size
    except (UnidentifiedImageError, OSError, ValueError):
        raise Unreadable(f"not an image ({_looks_like(data)})") from None
    # One frame's pixels: of an animated GIF only the first frame is decoded (embed.decode), and
    # Pillow's size covers that frame even where it overflows the GIF's logical screen.
    if width * height > MAX_PIXELS:
        raise Unreadable(
            f"{width}x{height} pixels is over the limit of {MAX_PIXELS // 1_000_000} megapixels; "
            "crops are resized to about 224x224, so downscale it first"
        )
    if kind in TF_FORMATS:
        return data
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if pixels is None:
        raise Unreadable(f"cannot decode this {kind} file")
    ok, png = cv2.imencode(".png", pixels)
    if not ok:
        raise Unreadable(f"cannot convert this {kind} file for the model")
    return png.tobytes()


def read_for_model(path) -> bytes:
    return for_model(read_bytes(path))


def list_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """Image files under `folder` (recursively, following links), and the other files found."""
    images, ignored, seen = [], [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a symlink loop
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if is_bookkeeping(name):
                continue  # not a crop, nor a file of the user's (a demo-samples folder has meerkat's lists)
            path = Path(root) / name
            # macOS leaves .DS_Store and ._name resource forks next to real crops.
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                ignored.append(path)
            elif path.is_file():
                images.append(path)
            else:
                ignored.append(path)  # a dangling link
    return images, ignored


def write_skipped(path, skipped: list[tuple[str, str]]) -> None:
    """The `path,reason` list of files that could not be used, written atomically."""
    with atomic.atomic_open(path, "w", newline="", **atomic.TEXT) as f:
        csv.writer(f, lineterminator="\n").writerows([("path", "reason"), *skipped])


def warn_skipped(skipped: list[tuple[str, str]], listed_in=None) -> None:
    """Name the first ten skipped files and their reasons in the log; the list has them all."""
    if not skipped:
        return
    where = f" (listed in {listed_in})" if listed_in else ""
    log.warning("warning: skipped %d unusable files%s:", len(skipped), where)
    for path, reason in skipped[:10]:
        log.warning("  %s: %s", path, reason)
    if len(skipped) > 10:
        log.warning("  ... and %d more", len(skipped) - 10)
