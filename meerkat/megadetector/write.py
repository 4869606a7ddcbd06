"""Writing MegaDetector's format: the input file plus meerkat's classes, and motion scans' own files.

`write` streams the file from `Results` (the input's top level and entries), changing nothing but
what meerkat adds:
- `classification_categories`: the model's dict.txt labels, ids "0", "1", ... in its output
  order; a name that equals a detection category's (Timelapse refuses such a file) gets
  " (meerkat)" appended.
- on each classified detection, `classifications`: `[[id, p], ...]`, p rounded to 6 decimals,
  highest first (ties by id).
- another classifier's results move aside, as AddaxAI moves MegaDetector's `category`/`conf` to
  `prev_category`/`prev_conf`: each detection's `classifications` to `prev_classifications`, the
  file's `classification_categories` (and `..._descriptions`) to `prev_classification_categories`
  (and `prev_classification_category_descriptions`), info's `classifier`,
  `classification_completion_time` and `classifier_metadata` to `prev_...`. Ids in one
  `classifications` list must name one classifier's categories: mixing two would make its
  "highest first" and every tool's maximum meaningless. A file meerkat wrote (info.classifier
  "meerkat ...") has meerkat's old classes replaced, its prev_... kept.
- failures meerkat finds go under `classification_failure` (a string): on the entry (an image or
  video it could not read) or on the detection (a box it could not crop). MegaDetector's own
  `failure` means the detector failed and requires `detections` to be null, which would lose the
  detector's boxes; the detector did not fail here. The one exception is a video that an old file
  gives no frame rate for and that meerkat cannot open: 1.6 requires a rate, and allows -1 only
  with `failure`, so it is written as MegaDetector writes a failed video, its boxes in
  `prev_detections`.
- `info`: `format_version` "1.6", `classifier` "meerkat <version>", `classification_completion_time`
  (UTC, from $SOURCE_DATE_EPOCH when set), `classifier_metadata` with
  `typical_classification_threshold` and meerkat's provenance. What 1.6 requires of an older
  input is added: a string version, non-blank category names, string category ids and float
  confs, and on video entries `frame_rate` and `frames_processed`.
Keys keep the input's order; new ones follow. `dumps` gives the bytes: the same input and scores
give the same bytes, however the entries were split between tasks (merge.py).
"""

import copy
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from meerkat import __version__
from meerkat.core.errors import MeerkatError
from meerkat.megadetector.read import VIDEO_EXTENSIONS, Results

FORMAT_VERSION = "1.6"
CLASSIFIER = f"meerkat {__version__}"
FAILURE = "classification_failure"
CLASH = " (meerkat)"
DIGITS = 6
# Motion scans: meerkat's own boxes, a detection category of their own. Not MegaDetector's 1-3
# (animal, person, vehicle): tools would count moving grass as animals; not "0", which the
# format reserves informally for "empty".
MOTION_CATEGORY = "4"
MOTION = "motion"
PREV = {
    "classifications": "prev_classifications",
    "classification_categories": "prev_classification_categories",
    "classification_category_descriptions": "prev_classification_category_descriptions",
    "classifier": "prev_classifier",
    "classification_completion_time": "prev_classification_completion_time",
    "classifier_metadata": "prev_classifier_metadata",
}


@dataclass(frozen=True)
class Classifier:
    labels: tuple[str, ...]  # dict.txt, in the model's output order: ids "0", "1", ...
    threshold: float  # typical_classification_threshold: the card's recommended, else --threshold
    metadata: Mapping = field(default_factory=dict)  # more of classifier_metadata, e.g. {"model_sha256": ...}


@dataclass(frozen=True)
class Scores:
    """What meerkat found for some or all entries of one Results: a task's part, or their merge."""

    # (entry index, detection index) -> probabilities in the model's output order (dict.txt's)
    classifications: Mapping[tuple[int, int], Sequence[float]] = field(default_factory=dict)
    failures: Mapping[int, str] = field(default_factory=dict)  # entry -> why it could not be read
    detection_failures: Mapping[tuple[int, int], str] = field(default_factory=dict)  # why not cropped
    frame_rates: Mapping[int, float] = field(default_factory=dict)  # video entries the input gave none


def completion_time() -> str:
    """Now (UTC), or $SOURCE_DATE_EPOCH when set: then reruns and merged shards give the same bytes."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    seconds = int(epoch) if epoch.isdigit() else time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def dumps(data: dict) -> bytes:
    """The file's bytes. A name that is not UTF-8 on disk (Python holds its bytes as lone surrogates)
    is written as JSON's escape `\\udce9`, which Python's json, and so MegaDetector's tools, read
    back as the name on disk."""
    return (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")


def classifications(probabilities: Sequence[float]) -> list[list]:
    """[[id, p], ...], highest first; ids are positions in dict.txt."""
    pairs = [[str(i), round(float(p), DIGITS)] for i, p in enumerate(probabilities)]
    return sorted(pairs, key=lambda c: (-c[1], int(c[0])))


def write(results: Results, scores: Scores, classifier: Classifier, out: BinaryIO, when: str | None = None) -> None:
    """The input file with meerkat's classes (see the module's docstring), written to `out` entry
    by entry: the bytes `dumps` gives of the whole, without ever holding the whole."""
    header = copy.deepcopy(results.header)
    ours = _is_meerkats(header)
    if not ours:
        taken = [k for k in PREV.values() if k in header or k in header["info"]]
        if taken:
            raise MeerkatError(
                f"{results.path} already holds {taken[0]}: two classifiers' results set aside before meerkat's; "
                "pass the file as the first classifier wrote it"
            )
    names = {k: v if str(v).strip() else f"category {k}" for k, v in header["detection_categories"].items()}
    header["detection_categories"] = names
    categories = _classification_categories(classifier.labels, names.values())
    if ours:
        header.pop("classification_category_descriptions", None)
    else:
        for key in ("classification_categories", "classification_category_descriptions"):
            _rename(header, key)
    header = _insert_after(header, "detection_categories", "classification_categories", categories)
    _info(header["info"], classifier, ours, when)
    out.write(b"{\n")
    for n, (key, value) in enumerate(header.items()):
        out.write(f" {json.dumps(key, ensure_ascii=False)}: ".encode("utf-8", "backslashreplace"))
        if key == "images":
            _images(results, scores, ours, out)
        else:
            out.write(_text(value, 1))
        out.write(b",\n" if n < len(header) - 1 else b"\n")
    out.write(b"}\n")


def _images(results: Results, scores: Scores, ours: bool, out: BinaryIO) -> None:
    """The "images" list, an entry at a time, indented as json.dumps indents it in the whole."""
    entries = results.entries
    if not len(entries):
        out.write(b"[]")
        return
    chunk = []
    for i in range(len(entries)):
        im = entries.raw(i)
        entry = entries.entry(i, im)
        _entry(i, im, {p.detection: p.reason for p in entry.problems}, scores, ours)
        chunk.append(b"  " + _text(im, 2))
        if len(chunk) >= 1000 or i == len(entries) - 1:  # a few hundred kB a write
            out.write((b"[\n" if i < 1000 else b",\n") + b",\n".join(chunk))
            chunk = []
    out.write(b"\n ]")


def _text(value, level: int) -> bytes:
    """`value` as json.dumps writes it `level` deep in a file indented by one space a level."""
    text = json.dumps(value, indent=1, ensure_ascii=False)
    if level:
        text = text.replace("\n", "\n" + " " * level)  # strings hold no raw newline: JSON escapes it
    return text.encode("utf-8", "backslashreplace")


def _entry(i: int, im: dict, problems: dict[int, str], scores: Scores, ours: bool) -> None:
    """Entry `i` of the input (`im`, changed in place) with meerkat's classes and failures."""
    dets = im.get("detections") if isinstance(im.get("detections"), list) else []
    for j, det in enumerate(dets):
        if not isinstance(det, dict):
            continue
        if ours:
            det.pop("classifications", None)
            det.pop(FAILURE, None)
        elif "classifications" in det:
            _rename(det, "classifications")
        _upgrade_detection(det)
        if (i, j) in scores.classifications:
            det["classifications"] = classifications(scores.classifications[i, j])
        failure = scores.detection_failures.get((i, j), problems.get(j))
        if failure is not None:
            det[FAILURE] = failure
    if ours:
        im.pop(FAILURE, None)
    if i in scores.failures:
        im[FAILURE] = scores.failures[i]
    _upgrade_video(im, dets, scores.frame_rates.get(i))


def motion_entry(
    file: str,
    *,
    frame_rate: float,
    frames_processed: Iterable[int],
    size: tuple[int, int] | None,
    boxes: Iterable[tuple[int, tuple[int, int, int, int], Sequence[float] | None]],
    failure: str | None = None,
) -> dict:
    """One video of a motion scan. `boxes`: (0-based frame number, (x, y, w, h) in pixels of a
    frame of `size` (width, height), the model's probabilities or None); video/frames.py counts
    frames from 1, so pass frame - 1. A video that could not be read: `failure`, as MegaDetector
    writes a failed video (frame_rate -1, no frames, detections null)."""
    if failure is not None:
        return {"file": file, "frame_rate": -1.0, "frames_processed": [], "failure": failure, "detections": None}
    width, height = size
    detections = []
    for frame_number, (x, y, w, h), probabilities in sorted(boxes, key=lambda b: (b[0], b[1])):
        bbox = [round(v / scale, DIGITS) for v, scale in ((x, width), (y, height), (w, width), (h, height))]
        det = {"category": MOTION_CATEGORY, "conf": 1.0, "bbox": bbox, "frame_number": frame_number}
        if probabilities is not None:
            det["classifications"] = classifications(probabilities)
        detections.append(det)
    return {
        "file": file,
        "frame_rate": frame_rate,
        "frames_processed": sorted(set(frames_processed)),
        "detections": detections,
    }


def motion_output(entries: Iterable[dict], classifier: Classifier, when: str | None = None) -> dict:
    """A motion scan's file: one entry per video (motion_entry), sorted by file."""
    when = when or completion_time()
    info = {"format_version": FORMAT_VERSION, "detector": f"{CLASSIFIER} (motion)", "detection_completion_time": when}
    detection_categories = {MOTION_CATEGORY: MOTION}
    data = {
        "info": info,
        "detection_categories": detection_categories,
        "classification_categories": _classification_categories(classifier.labels, detection_categories.values()),
        "images": sorted(entries, key=lambda e: e["file"]),
    }
    _info(info, classifier, True, when)
    return data


def _is_meerkats(data: dict) -> bool:
    return str(data["info"].get("classifier", "")).startswith("meerkat ")


def _rename(d: dict, key: str) -> None:
    """Rename `key` to its prev_ name where it stands, keeping the order of the keys."""
    if key in d:
        items = [(PREV[key] if k == key else k, v) for k, v in d.items()]
        d.clear()
        d.update(items)


def _insert_after(d: dict, anchor: str, key: str, value) -> dict:
    """`d` with `key` set: in its own place if there, else right after `anchor`."""
    if key in d:
        d[key] = value
        return d
    out = {}
    for k, v in d.items():
        out[k] = v
        if k == anchor:
            out[key] = value
    return out


def _classification_categories(labels: Sequence[str], taken: Iterable[str]) -> dict[str, str]:
    taken = {str(t).strip().casefold() for t in taken}
    out = {}
    for i, label in enumerate(labels):
        name = str(label)
        while name.strip().casefold() in taken:
            name += CLASH
        out[str(i)] = name
    return out


def _upgrade_detection(det: dict) -> None:
    """String category ids and float confs, which the 1.6 validator requires (old files have ints)."""
    if isinstance(det.get("category"), int) and not isinstance(det["category"], bool):
        det["category"] = str(det["category"])
    if isinstance(det.get("conf"), int) and not isinstance(det["conf"], bool):
        det["conf"] = float(det["conf"])


def _upgrade_video(im: dict, dets: list, frame_rate: float | None) -> None:
    """frame_rate and frames_processed on a video entry of an older file (required from 1.4 and 1.5).
    A video with no frame rate in the file that meerkat could not open either is written as
    MegaDetector writes a video it could not process (frame rate -1, `failure`, no detections: 1.6
    allows no other way), the detector's boxes kept as `prev_detections`."""
    file = str(im.get("file", ""))
    if os.path.splitext(file)[1].lower() not in VIDEO_EXTENSIONS:
        return
    if "frame_rate" not in im:
        if frame_rate is not None:
            im["frame_rate"] = float(frame_rate)
        elif im.get("failure") is not None:
            im["frame_rate"] = -1.0  # MegaDetector's value for a failed video
        elif im.get(FAILURE) is not None:
            im["failure"] = f"meerkat could not read the video: {im.pop(FAILURE)}"
            im["frame_rate"] = -1.0
            if im.get("detections") is not None:
                im["prev_detections"] = im["detections"]
            im["detections"] = None
    if "frames_processed" not in im:
        # Which frames the detector looked at is lost; those it reported boxes in, it looked at.
        numbers = {d.get("frame_number") for d in dets if isinstance(d, dict)}
        im["frames_processed"] = sorted(n for n in numbers if isinstance(n, int))


def _info(info: dict, classifier: Classifier, ours: bool, when: str | None) -> None:
    if not ours:
        for key in ("classifier", "classification_completion_time", "classifier_metadata"):
            _rename(info, key)
    info["format_version"] = FORMAT_VERSION
    info["classifier"] = CLASSIFIER
    info["classification_completion_time"] = when or completion_time()
    info["classifier_metadata"] = {
        "typical_classification_threshold": round(float(classifier.threshold), DIGITS),
        **classifier.metadata,
    }
