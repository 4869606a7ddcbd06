"""The crops of each entry of a MegaDetector file: every image and video frame decoded once for all its boxes.

An image is decoded with OpenCV (cv2.imdecode) and turned by its EXIF orientation as MegaDetector's
loader turns it (`decode`), so the boxes fall where MegaDetector drew them. A
video's frames are read in order, grab() for the frames no box needs and retrieve() for those
that one does (MegaDetector counts frames from 0). A frame-level entry, `video.mp4/frame000123.jpg`,
is that JPEG where it exists, else frame 123 of video.mp4; consecutive ones of one video share a
single pass through it.

Images are decoded and cut on --workers threads, entries ahead of the caller, so decoding overlaps
loading the model and the model's calls (OpenCV releases the GIL). Crops come back in the file's order whatever the
threads do. An image that is missing or does not decode, or a video that cannot be read as far as
its boxes go, gives its entry a failure (the reason) and no crops; the others go on. A video
without boxes to cut is only opened for its frame rate, where the file gives none.
"""

import io
import itertools
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from meerkat.detections.crops import crop
from meerkat.samples.imagefiles import Unreadable, read_bytes
from meerkat.video.frames import BadVideo, probe


@dataclass
class Cut:
    """One entry's crops, in the order of its selected detections; or why none could be cut."""

    entry: object  # megadetector.read.Entry
    crops: list[tuple[object, bytes]] = field(default_factory=list)  # (Detection, JPEG bytes)
    failure: str | None = None  # what meerkat found wrong with the image or video
    frame_rate: float | None = None  # a video entry's, as OpenCV reads it


# Jobs in flight or done ahead of the caller, per thread. A job done holds only its crops (a few
# tens of kB), one in progress its frame: so the threads can decode through a whole model call
# (64 crops of the default backbone take about a second on a CPU) instead of waiting for it.
AHEAD = 32


class Cuts:
    """A Cut for every entry, in order, decoded on `workers` threads from the moment it is made:
    scan starts it before it loads TensorFlow and the model, so the frames decode meanwhile.
    Entries that failed in MegaDetector, or that have no selected detection, are not decoded:
    their Cut is empty (`rates`: but for a video's frame rate, where the file gives none).
    Use it in a `with` block, which stops the threads."""

    def __init__(self, entries: Iterable, padding: str, workers: int = 1, rates: bool = True):
        self._jobs = _jobs(entries)
        self._padding, self._rates = padding, rates
        self._limit = AHEAD * max(1, workers)
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="decode")
        self._pending: deque = deque()
        self._ready: deque = deque()
        self._fill()

    def _fill(self) -> None:
        while len(self._pending) < self._limit:
            job = next(self._jobs, None)
            if job is None:
                return
            self._pending.append(self._pool.submit(_cut, job, self._padding, self._rates))

    def __iter__(self) -> Iterator[Cut]:
        return self

    def __next__(self) -> Cut:
        while not self._ready:
            if not self._pending:
                raise StopIteration
            self._ready.extend(self._pending.popleft().result())
            self._fill()
        return self._ready.popleft()

    def __enter__(self) -> "Cuts":
        return self

    def __exit__(self, *exc) -> None:
        for future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True)


def _needs_decoding(entry) -> bool:
    return entry.failure is None and bool(entry.detections)


def _video_of(entry) -> Path | None:
    """The video a frame-level entry's frame is read from: its JPEG is missing."""
    if entry.frame is None or not _needs_decoding(entry) or entry.path.exists():
        return None
    return entry.path.parent


def _jobs(entries: Iterable) -> Iterator[list]:
    """Entries in groups decoded together: consecutive frame-level entries of one video, else one."""
    for video, group in itertools.groupby(entries, key=lambda e: _video_of(e) or object()):
        if isinstance(video, Path):
            yield list(group)
        else:
            yield from ([e] for e in group)


def _cut(job: list, padding: str, rates: bool) -> list[Cut]:
    first = job[0]
    if not _needs_decoding(first):
        return [_rate_only(first) if rates else Cut(first)]
    if unnamed := unnameable(first.path):
        return [Cut(e, failure=unnamed) for e in job]
    if first.video:
        return _from_video(first.path, job, padding)
    if first.frame is not None and not first.path.exists():
        return _from_video(first.path.parent, job, padding)
    try:
        image = decode(first.path)
    except Unreadable as e:
        return [Cut(first, failure=str(e))]
    return [Cut(first, [(d, crop(image, d.bbox, padding)) for d in first.detections])]


def unnameable(path: Path) -> str | None:
    """Why the path an entry gives can name no file here, if it cannot: the rest of the file goes on."""
    text = str(path)
    if "\0" in text:
        return "its name holds a NUL character, which no file name can hold"
    try:
        os.fsencode(text)
    except UnicodeError:  # a lone surrogate escaped in the JSON: no bytes on disk are that name
        return "its name holds characters that no file name here can hold"
    return None


def _rate_only(entry) -> Cut:
    """An entry with nothing to cut. A video's frame rate, which MegaDetector's format wants on
    every video and old files lack, is read from its container; one that cannot be opened fails."""
    if not entry.video or entry.frame_rate is not None or entry.failure is not None:
        return Cut(entry)
    if unnamed := unnameable(entry.path):
        return Cut(entry, failure=unnamed)
    try:
        return Cut(entry, frame_rate=probe(entry.path).rate)
    except BadVideo as e:
        return Cut(entry, failure=str(e))


def decode(path: Path) -> np.ndarray:
    """The image at `path`, BGR, turned as MegaDetector's loader turns it; raises Unreadable with
    the reason it cannot be used."""
    data = read_bytes(path)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as e:  # e.g. more pixels than OpenCV's limit
        raise Unreadable(f"OpenCV cannot decode it: {' '.join(str(e).split())}") from None
    if image is None:
        raise Unreadable("OpenCV cannot decode it: not an image, or a damaged one")
    turn = ROTATIONS.get(_orientation(data))
    return image if turn is None else cv2.rotate(image, turn)


# MegaDetector's loader (visualization_utils.open_image) turns an image by its EXIF orientation
# only for these three; it leaves the mirrored ones (2, 4, 5, 7) as stored, where OpenCV would
# mirror them, and so it draws its boxes on those pixels.
ROTATIONS = {3: cv2.ROTATE_180, 6: cv2.ROTATE_90_CLOCKWISE, 8: cv2.ROTATE_90_COUNTERCLOCKWISE}


def _orientation(data: bytes) -> int | None:
    """The EXIF orientation as MegaDetector's loader reads it: PIL's `_getexif`, which only the
    formats that carry EXIF that way have (JPEG, MPO, WebP); anything unreadable is no rotation."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image._getexif().get(0x0112)
    except Exception:  # as MegaDetector's loader: no EXIF, a damaged one, a format without it
        return None


def _frame_of(entry, detection) -> int:
    return entry.frame if entry.frame is not None else detection.frame_number


def _from_video(path: Path, job: list, padding: str) -> list[Cut]:
    """The Cuts of `job`'s entries, all from the video at `path`, read once up to the last frame
    needed. An entry whose frames were not all read fails; those read before the video failed stand."""
    out = {e.index: Cut(e) for e in job}
    wanted: dict[int, list] = {}
    for e in job:
        for d in e.detections:
            wanted.setdefault(_frame_of(e, d), []).append((e, d))
    if None in wanted:
        return [Cut(e, failure="a detection of this video has no frame_number") for e in job]
    read = set()
    try:
        with opened(path) as cap:
            rate = cap.get(cv2.CAP_PROP_FPS) or None
            for number, image in frames(cap, sorted(wanted)):
                for e, d in wanted[number]:
                    out[e.index].crops.append((d, crop(image, d.bbox, padding)))
                read.add(number)
    except BadVideo as failed:
        for e in job:
            if any(_frame_of(e, d) not in read for d in e.detections):
                out[e.index] = Cut(e, failure=str(failed))
    else:
        for e in job:
            out[e.index].frame_rate = rate if e.video else None
    for cut in out.values():  # each entry's crops in the order of its detections
        order = {d.index: i for i, d in enumerate(cut.entry.detections)}
        cut.crops.sort(key=lambda c: order[c[0].index])
    return list(out.values())


@contextmanager
def opened(path: Path) -> Iterator[cv2.VideoCapture]:
    """The video at `path`, open; raises BadVideo with frames.py's reasons when OpenCV cannot use it."""
    probe(path)
    cap = cv2.VideoCapture(str(path))
    try:
        yield cap
    finally:
        cap.release()


def frames(cap: cv2.VideoCapture, wanted: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number from 0, BGR image) of each of `wanted` (sorted), read from the start of
    `cap`; raises BadVideo when the video ends before the last of them."""
    if wanted and wanted[0] < 0:
        raise BadVideo(f"a detection names frame {wanted[0]}; frames count from 0")
    number = -1
    for want in wanted:
        while number < want:
            if not cap.grab():
                raise BadVideo(f"it ends after frame {number}, before frame {want} that a detection names")
            number += 1
        ok, image = cap.retrieve()
        if not ok:
            raise BadVideo(f"frame {want} does not decode")
        yield want, image
