"""Reading MegaDetector's results: formats 1.0 to 1.6, AddaxAI's files and DeepMeerkat 3.x's megadetector_results.json.

`load` returns every entry (image, video, or frame of a video) with the detections that the
categories and the detection threshold select, boxes clamped into the image. A season's file is
never held parsed (a million images would take gigabytes as Python objects): `Results` keeps the
file's bytes, its top level and where each entry lies in them (stream.py), and `Results.entries`
parses an entry each time it is asked for one. write.py streams meerkat's output from the same.

- Versions: `info.format_version` 1.0 to 1.6, a string or a number ("1.6", 1.3). 1.0, the old
  batch API's files, has every field that 1.1 has. A file without a version, or with another
  one, is refused: meerkat cannot know what its fields mean.
- Boxes: `[x_min, y_min, width, height]`, normalised to the image. Real files have corners a
  hair outside it (-5e-07; 1.0001 after MegaDetector rounds to 4 decimals): within
  BOX_TOLERANCE they are clamped. A selected detection whose box is further out, or is empty,
  or is not four numbers, is left out of `detections` and named in `Entry.problems`: one bad box
  never stops the file.
- AddaxAI: where its species classifier replaced a detection's `category` and `conf`,
  MegaDetector's own are in `prev_category`/`prev_conf`; those are the detection's here.
- Videos: an entry with `frame_rate` or `frames_processed`, or a video file name; each detection's
  `frame_number` is 0-based. MegaDetector's video tools also write frame-level entries named
  `video.mp4/frame000123.jpg`: frame 123 of video.mp4.
- DeepMeerkat's file is read by deepmeerkat.py, as far as its boxes can be read faithfully.
"""

import hashlib
import json
import math
import posixpath
import re
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from meerkat.core.errors import MeerkatError
from meerkat.megadetector import stream

# MegaDetector's categories, and the one meerkat classifies unless told otherwise.
MEGADETECTOR_CATEGORIES = {"1": "animal", "2": "person", "3": "vehicle"}
ANIMAL = "1"
# Without `detector_metadata.typical_detection_threshold`: MegaDetector v5's typical threshold.
DEFAULT_THRESHOLD = 0.2
# How far a box may reach outside the image and be clamped (MegaDetector's rounding, float noise):
# 0.1% of the image, 4 px of a 4000 px frame.
BOX_TOLERANCE = 1e-3
VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6")
# The extensions MegaDetector's tools take for videos (megadetector.detection.video_utils).
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mpeg", ".mpg", ".mov", ".mkv", ".flv"})
FRAME_NAME = re.compile(r"^frame(\d+)\.jpe?g$", re.IGNORECASE)
# Keys only AddaxAI writes.
ADDAXAI_KEYS = ("addaxai_metadata", "forbidden_classes", "detection_categories_original")


@dataclass(frozen=True, slots=True)
class Detection:
    index: int  # position in its entry's `detections` list (meerkat writes back by it)
    category: str  # MegaDetector's category id ("1"); AddaxAI's prev_category where it replaced it
    conf: float  # likewise prev_conf
    bbox: tuple[float, float, float, float]  # normalised x_min, y_min, width, height, clamped into [0, 1]
    frame_number: int | None  # 0-based frame of a video entry, else None


@dataclass(frozen=True, slots=True)
class Problem:
    """A selected detection that meerkat cannot crop; write.py records it on the detection."""

    detection: int  # position in the entry's `detections` list
    reason: str  # one line, e.g. "box [1.2, 0.1, 0.3, 0.2] lies outside the image"


@dataclass(frozen=True, slots=True)
class Entry:
    index: int  # position in images[]
    file: str  # as written in the JSON
    root: Path  # the folder its path is below (--image-root, else the JSON's folder; or --path-prefix's)
    video: bool  # a video entry: frame_number on its detections
    frame: int | None  # frame-level entries `video.mp4/frame000123.jpg`: 123 (the video is path.parent)
    failure: str | None  # the input's own failure, carried through
    detections: tuple[Detection, ...]  # only the selected ones (categories, threshold), in file order
    problems: tuple[Problem, ...] = ()  # selected detections left out of `detections`, and why
    listed: int = 0  # detections in the input, selected or not
    frame_rate: float | None = None  # a video entry's, as the input gives it
    local: str | None = None  # its path below `root`, "/"-separated; None: `file` is

    @property
    def path(self) -> Path:
        """Where the file is here; for a frame-level entry, see `frame`."""
        return self.root / (self.file.replace("\\", "/") if self.local is None else self.local)


_ABSOLUTE = re.compile(r"^([A-Za-z]:)?/|^//")  # C:/..., /..., //server/share/... once \\ became /


class Prefixes:
    """Where an entry's file is: below the image root, or, where its path starts with a PREFIX of
    --path-prefix (the folder MegaDetector ran on, on the machine it ran on), below that FOLDER.
    Separators compare as one (`\\` or `/`), the longest PREFIX wins, and a Windows path's case
    does not count, as Windows does not count it."""

    def __init__(self, root: Path, prefixes=()):
        self.root = root
        found = []
        for prefix, folder in prefixes:
            text = str(prefix).replace("\\", "/").rstrip("/")
            windows = bool(re.match(r"^[A-Za-z]:|^//", text))
            found.append((text.casefold() if windows else text, windows, Path(folder)))
        self._prefixes = sorted(found, key=lambda p: -len(p[0]))

    def locate(self, local: str) -> tuple[Path, str | None]:
        """(the folder, the path below it) of a "/"-separated path from the file."""
        for prefix, windows, folder in self._prefixes:
            key = local.casefold() if windows else local
            if key == prefix or key.startswith(prefix + "/"):
                return folder, local[len(prefix) :].lstrip("/")
        return self.root, None


def is_absolute(file: str) -> bool:
    """A path written absolute on whatever machine MegaDetector ran on: /..., C:\\..., \\\\server\\..."""
    return bool(_ABSOLUTE.match(file.replace("\\", "/")))


class Entries(Sequence):
    """The file's entries, each parsed from the file's bytes when asked for: `len`, indexing,
    slices and iteration as a tuple's. `boxes[i]` is entry i's count of selected detections and
    `failed[i]` whether the input says MegaDetector failed on it, so that work can be planned
    without parsing anything again."""

    def __init__(self, raw: bytes, spans: array, make):
        self._raw, self._spans, self._make = raw, spans, make
        self.boxes = array("l")
        self.failed = bytearray()
        for i in range(len(self)):
            entry = self[i]
            self.boxes.append(len(entry.detections))
            self.failed.append(entry.failure is not None)

    def __len__(self) -> int:
        return len(self._spans) // 2

    def raw(self, i: int) -> dict:
        """Entry i as the file holds it (a new dict each time: the caller may change it)."""
        return json.loads(self._raw[self._spans[2 * i] : self._spans[2 * i + 1]])

    def entry(self, i: int, raw: dict) -> Entry:
        """Entry i from `raw`, its dict as `raw(i)` gave it."""
        return self._make(i, raw)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._make(i, self.raw(i))

    def __iter__(self) -> Iterator[Entry]:
        return (self[i] for i in range(len(self)))


@dataclass(frozen=True)
class Results:
    path: Path  # the JSON read
    header: dict  # the top level as read, in its order, but "images", whose value here is None
    version: str  # as found ("1.0".."1.6"; "1.6" for DeepMeerkat's, as converted)
    kind: str  # "megadetector" | "addaxai" | "deepmeerkat"
    detection_categories: dict[str, str]
    categories: frozenset[str]  # the selected category ids
    threshold: float  # the detection threshold used
    entries: Entries  # the file's entries, for DeepMeerkat's its MegaDetector 1.6 equivalent's
    sha256: str  # of the JSON's bytes (for settings keys)


def load(path, image_root=None, categories=None, threshold=None, prefixes=()) -> Results:
    """Read a results file. `categories`: ids or names (case-insensitive), as a list or one
    comma-separated string; default the animal category "1". `threshold`: the lowest `conf`
    selected; default the file's typical detection threshold, else 0.2. `prefixes`: (PREFIX,
    FOLDER) pairs: a file whose path starts with PREFIX lies in FOLDER (`Prefixes`)."""
    path = Path(path)
    raw = _read_bytes(path)
    sha256 = hashlib.sha256(raw).hexdigest()
    seen = Seen(path)
    header, spans = _parse(path, raw, seen)
    root = Path(image_root) if image_root is not None else path.parent
    kind = None
    if "info" not in header and "video" in header:
        from meerkat.megadetector import deepmeerkat

        # One video's frames: small. Its MegaDetector equivalent is read as any file is.
        raw = json.dumps(deepmeerkat.convert(path, json.loads(raw.decode("utf-8-sig")), root)).encode("ascii")
        seen = Seen(path)
        header, spans = _parse(path, raw, seen)
        kind = "deepmeerkat"
    version = _version(path, header)
    detection_categories = _detection_categories(path, header)
    if seen.bad is not None:
        _check_entry(path, *seen.bad)  # raises: after the version and categories, whose errors say more
    addaxai = seen.addaxai or any(k in header for k in ADDAXAI_KEYS)
    kind = kind or ("addaxai" if addaxai else "megadetector")
    names = [(k, v) for k, v in detection_categories.items()]
    if kind == "addaxai":
        # AddaxAI renames "animal" ("unidentified animal"); MegaDetector's ids stay in prev_category.
        original = header.get("detection_categories_original")
        aliases = original if isinstance(original, dict) else MEGADETECTOR_CATEGORIES
        names += [(str(k), str(v)) for k, v in aliases.items()]
    selected = _categories(path, categories, names)
    threshold = _threshold(path, header, threshold)

    places = Prefixes(root, prefixes)

    def make(i: int, im: dict) -> Entry:
        return _entry(places, i, im, selected, threshold)

    return Results(
        path=path,
        header=header,
        version=version,
        kind=kind,
        detection_categories=detection_categories,
        categories=selected,
        threshold=threshold,
        entries=Entries(raw, spans, make),
        sha256=sha256,
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise MeerkatError(f"{path} does not exist; pass MegaDetector's results file (.json)") from None
    except IsADirectoryError:
        raise MeerkatError(f"{path} is a folder; pass MegaDetector's results file (.json) in it") from None
    except OSError as e:
        raise MeerkatError(f"cannot read {path}: {e.strerror or e}") from None


class Seen:
    """What the first look at each entry finds: the first that is not an entry, and AddaxAI's mark."""

    def __init__(self, path: Path):
        self.path, self.bad, self.addaxai = path, None, False

    def __call__(self, i: int, im) -> None:
        if self.bad is None and not _is_entry(im):
            self.bad = (i, im)
        elif not self.addaxai and isinstance(im, dict):
            self.addaxai = _has_prev_category(im)


def _parse(path: Path, raw: bytes, seen: Seen) -> tuple[dict, array]:
    """The top level (keys in order, "images" None) and the entries' spans."""
    fix = "pass the .json file that MegaDetector (or AddaxAI) wrote"
    try:
        items, spans = stream.scan(raw, seen)
    except UnicodeDecodeError:
        raise MeerkatError(f"{path} is not text (not UTF-8 JSON); {fix}") from None
    except stream.NotJSON as e:
        raise MeerkatError(f"{path} is not JSON ({e.message} at line {e.line}); {fix}") from None
    except stream.NotResults:
        raise MeerkatError(f'{path} is not MegaDetector results (no "images" list); {fix}') from None
    return dict(items), spans


def _version(path: Path, data: dict) -> str:
    info = data.get("info")
    found = info.get("format_version") if isinstance(info, dict) else None
    if found is None:
        raise MeerkatError(
            f"{path} has no info.format_version, so meerkat cannot tell which MegaDetector format it is; "
            'add "info": {"format_version": "1.1"} (or the version that wrote it) if it is MegaDetector results'
        )
    version = None
    if isinstance(found, str) and re.fullmatch(r"\d+\.\d+", found.strip()):
        version = f"{float(found):.1f}"
    elif isinstance(found, int | float) and not isinstance(found, bool) and math.isfinite(found):
        version = f"{float(found):.1f}" if round(found * 10) == found * 10 else None
    if version not in VERSIONS:
        raise MeerkatError(
            f"{path}: format_version {json.dumps(found)} is not one meerkat reads ({VERSIONS[0]} to {VERSIONS[-1]}); "
            "convert it with MegaDetector's tools, or update meerkat"
        )
    return version


def _detection_categories(path: Path, data: dict) -> dict[str, str]:
    cats = data.get("detection_categories")
    if not isinstance(cats, dict):
        raise MeerkatError(f'{path} has no "detection_categories"; it is not MegaDetector results')
    return {str(k): str(v) for k, v in cats.items()}


def _has_prev_category(im: dict) -> bool:
    """AddaxAI's mark on an entry: a detection whose category its classifier replaced."""
    dets = im.get("detections")
    return isinstance(dets, list) and any(isinstance(d, dict) and "prev_category" in d for d in dets)


def _categories(path: Path, spec, names: list[tuple[str, str]]) -> frozenset[str]:
    """The ids `spec` names: ids, or names (case-insensitive) of `names` ((id, name) pairs)."""
    if spec is None:
        spec = [ANIMAL]
    elif isinstance(spec, str):
        spec = spec.split(",")
    wanted = [str(s).strip() for s in spec if str(s).strip()]
    by_name: dict[str, set[str]] = {}
    for k, v in names:
        by_name.setdefault(v.strip().casefold(), set()).add(k)
    ids: set[str] = set()
    for w in wanted:
        if w in {k for k, _ in names}:
            ids.add(w)
        elif w.casefold() in by_name:
            ids.update(by_name[w.casefold()])
        else:
            first: dict[str, str] = {}
            for k, v in names:
                first.setdefault(k, v)
            have = ", ".join(f"{k} ({v})" for k, v in first.items()) or "none"
            raise MeerkatError(f"{path} has no detection category {w!r}; pass --categories with some of: {have}")
    if not ids:
        raise MeerkatError(f"no category given for {path}; pass --categories, e.g. --categories animal")
    return frozenset(ids)


def _threshold(path: Path, data: dict, threshold) -> float:
    if threshold is None:
        meta = data.get("info", {}).get("detector_metadata")
        typical = meta.get("typical_detection_threshold") if isinstance(meta, dict) else None
        ok = isinstance(typical, int | float) and not isinstance(typical, bool) and 0 <= typical <= 1
        return float(typical) if ok else DEFAULT_THRESHOLD
    threshold = float(threshold)
    if not 0 <= threshold <= 1:
        raise MeerkatError(f"--detection-threshold {threshold:g} for {path} is outside 0..1; pass a confidence")
    return threshold


def _is_entry(im) -> bool:
    return (
        isinstance(im, dict)
        and isinstance(im.get("file"), str)
        and bool(im["file"])
        and isinstance(im.get("detections"), list | None)
    )


def _check_entry(path: Path, index: int, im) -> None:
    where = f"{path}: images[{index}]"
    if not isinstance(im, dict) or not isinstance(im.get("file"), str) or not im["file"]:
        raise MeerkatError(f'{where} has no "file"; it is not MegaDetector results')
    if not isinstance(im.get("detections"), list | None):
        raise MeerkatError(f'{where} ({im["file"]}): "detections" is not a list; it is not MegaDetector results')


def _entry(places: "Prefixes", index: int, im: dict, selected: frozenset[str], threshold: float) -> Entry:
    file = im["file"]
    failure = im.get("failure")
    failure = None if failure is None else str(failure)
    dets = im.get("detections") or []  # null: a failure's, or nothing detected
    local = file.replace("\\", "/")
    root, below = places.locate(local)
    folder, _, name = local.rpartition("/")
    frame = None
    match = FRAME_NAME.match(name)
    if match and posixpath.splitext(folder)[1].lower() in VIDEO_EXTENSIONS:
        frame = int(match[1])
    video = frame is None and (
        "frame_rate" in im
        or "frames_processed" in im
        or posixpath.splitext(name)[1].lower() in VIDEO_EXTENSIONS
        or any(isinstance(d, dict) and "frame_number" in d for d in dets)
    )
    chosen, problems = [], []
    for j, det in enumerate(dets):
        picked = _detection(j, det, video, selected, threshold)
        if isinstance(picked, Detection):
            chosen.append(picked)
        elif picked is not None:
            problems.append(Problem(j, picked))
    rate = _number(im.get("frame_rate"))
    return Entry(
        index=index,
        file=file,
        root=root,
        local=below,
        video=video,
        frame=frame,
        failure=failure,
        detections=tuple(chosen),
        problems=tuple(problems),
        listed=len(dets),
        frame_rate=rate if video and rate is not None and rate > 0 else None,
    )


def _number(x) -> float | None:
    kind = type(x)
    if (kind is float or kind is int) and math.isfinite(x):  # not bool, whose type is bool
        return float(x)
    return None


def _detection(j: int, det, video: bool, selected: frozenset[str], threshold: float) -> Detection | str | None:
    """The detection if selected and sound; a reason if selected but unusable; None if not selected."""
    if not isinstance(det, dict) or "category" not in det:
        return "not a detection (no category)"
    category = str(det.get("prev_category", det["category"]))
    if category not in selected and str(det["category"]) not in selected:
        return None
    conf = _number(det.get("prev_conf", det.get("conf")))
    if conf is None:
        return f"conf {json.dumps(det.get('conf'))} is not a number"
    if conf < threshold:
        return None
    bbox = clamp_box(det.get("bbox"))
    if isinstance(bbox, str):
        return bbox
    frame_number = None
    if video:
        frame_number = det.get("frame_number")
        if type(frame_number) is not int or frame_number < 0:
            return f"frame_number {json.dumps(frame_number)} is not a frame (0, 1, 2, ...)"
    return Detection(index=j, category=category, conf=conf, bbox=bbox, frame_number=frame_number)


def clamp_box(bbox) -> tuple[float, float, float, float] | str:
    """A box clamped into [0, 1] (x_min, y_min, width, height), or why it is not a box in the image."""
    values = list(map(_number, bbox)) if isinstance(bbox, list | tuple) and len(bbox) == 4 else None
    if values is None or None in values:
        return f"bbox {json.dumps(bbox)} is not four numbers [x_min, y_min, width, height]"
    x, y, w, h = values
    if w <= 0 or h <= 0:
        return f"bbox {json.dumps(bbox)} is empty (width or height not above 0)"
    if min(x, y) < -BOX_TOLERANCE or max(x + w, y + h) > 1 + BOX_TOLERANCE:
        return f"bbox {json.dumps(bbox)} lies outside the image (normalised boxes lie within 0..1)"
    x, w = _clamp(x, w)
    y, h = _clamp(y, h)
    if w <= 0 or h <= 0:
        return f"bbox {json.dumps(bbox)} is empty once clamped into the image"
    return (x, y, w, h)


def _clamp(a: float, w: float) -> tuple[float, float]:
    """One axis of a box (start, length) moved inside [0, 1]; as it was when it lies there."""
    if a >= 0 and a + w <= 1:
        return a, w
    start, end = min(max(a, 0.0), 1.0), min(a + w, 1.0)
    return start, _width(start, end)


def _width(a: float, b: float) -> float:
    """b - a, lowered by the float rounding that would put a + width past b."""
    w = max(b - a, 0.0)
    while w > 0 and a + w > b:
        w = math.nextafter(w, 0.0)
    return w
