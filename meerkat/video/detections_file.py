"""A motion scan in MegaDetector's format: each video's detections.json, and OUTPUT/detections.json of them all.

MegaDetector's tools, Timelapse and AddaxAI open a motion scan as they open MegaDetector's results
(megadetector/write.py writes it): format 1.6, one entry per video with `frame_rate` (as the
container says), `frames_processed` (the frames motion detection looked at: frame 1 only starts
the subtractor, then every --stride'th) and the motion boxes as detections of their own category,
"motion" (conf 1.0), each with meerkat's `classifications`. Frame numbers are 0-based, as
MegaDetector counts them: frame N of annotations.csv (DeepMeerkat counts from 1) is frame_number N - 1.

- detections.json in each video's folder: that video alone, `file` its name (relative to the folder
  the video is in). It is written with the folder, so a rerun that reuses the folder has it too.
- OUTPUT/detections.json: every video of the run, `file` relative to the common folder of the
  VIDEO arguments (a folder itself, a file's parent): a scan of one folder is relative to that
  folder, as MegaDetector's paths are relative to the folder it ran on. `meerkat_folder` names
  the video's folder in OUTPUT (absent when the video left none). A video that could not be read has
  MegaDetector's `failure` (and `detections: null`); a truncated one keeps the boxes found, with
  `classification_failure` saying why. Each array task writes its videos' entries to
  scan-parts/<task>-of-<tasks>.json, and the task that writes scan.csv writes this file from
  every part: the same bytes as one process (the time in it too, with $SOURCE_DATE_EPOCH set).
"""

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from meerkat.apply import card
from meerkat.core import atomic
from meerkat.core.errors import MeerkatError
from meerkat.megadetector import write

log = logging.getLogger(__name__)

NAME = "detections.json"
PART = "meerkat motion scan part 1"


def classifier(model: Path, labels: tuple[str, ...], sha256: str, threshold: float) -> write.Classifier:
    """meerkat as the file's classifier: its threshold is the card's recommended one, else --threshold."""
    recommended = card.recommended(model)
    return write.Classifier(
        labels=labels,
        threshold=float(recommended["threshold"]) if recommended else threshold,
        metadata={"model_sha256": sha256},
    )


def write_video(folder: Path, entry: dict, clf: write.Classifier) -> None:
    """FOLDER/detections.json: one video's file."""
    target = folder / NAME
    with atomic.writing(target), atomic.atomic_open(target, "wb") as f:
        f.write(write.dumps(write.motion_output([entry], clf)))


def read_video(folder: Path) -> dict | None:
    """The entry of FOLDER/detections.json; None when it is missing or not one video's file."""
    try:
        images = json.loads((folder / NAME).read_bytes())["images"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    ok = isinstance(images, list) and len(images) == 1 and isinstance(images[0], dict) and "file" in images[0]
    return images[0] if ok else None


def failed_video(file: str, reason: str) -> dict:
    """A video that gave no result, as MegaDetector writes one."""
    return write.motion_entry(file, frame_rate=-1.0, frames_processed=[], size=None, boxes=[], failure=reason)


def base(paths: Iterable) -> Path:
    """The folder OUTPUT/detections.json's paths start from: the VIDEO arguments' common folder."""
    folders = [os.path.abspath(p if Path(p).is_dir() else Path(p).parent) for p in paths]
    return Path(os.path.commonpath(folders))


def listed(entry: dict, video, start: Path, folder: str) -> dict:
    """A video's entry as OUTPUT/detections.json lists it: `file` relative to `start` (base()),
    and the folder of OUTPUT that holds its results ("": none)."""
    file = Path(os.path.abspath(video)).relative_to(start).as_posix()
    return {**entry, "file": file, **({"meerkat_folder": folder} if folder else {})}


def write_all(output: Path, parts: Path, entries: list[dict], index: int, count: int, clf: write.Classifier) -> None:
    """This task's part, then OUTPUT/detections.json from every task's part. The caller holds the
    parts folder's lock."""
    part = parts / f"{index:05d}-of-{count:05d}.json"
    with atomic.writing(part), atomic.atomic_open(part, "wb") as f:
        f.write(write.dumps({"format": PART, "entries": entries}))
    found = [_read_part(p) for p in sorted(parts.glob(f"*-of-{count:05d}.json"))]
    target = output / NAME
    with atomic.writing(target), atomic.atomic_open(target, "wb") as f:
        f.write(write.dumps(write.motion_output([e for p in found for e in p], clf)))
    log.info("%s: %d videos, from %d of %d tasks -> %s", NAME, sum(map(len, found)), len(found), count, target)


def _read_part(path: Path) -> list[dict]:
    try:
        payload = json.loads(path.read_bytes())
        if payload.get("format") != PART or not isinstance(payload.get("entries"), list):
            raise ValueError(payload.get("format"))
    except (OSError, ValueError, AttributeError):
        raise MeerkatError(
            f"{path} is not a part of a motion scan's {NAME} as meerkat writes it; delete it and rerun the task "
            "that wrote it"
        ) from None
    return payload["entries"]
