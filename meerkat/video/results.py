"""Per-video results in DeepMeerkat 3.x's layout, so its review window opens meerkat's folders.

- annotations.csv: `frame,clock,x,y,h,w,label,score` (h before w, as DeepMeerkat writes it), one
  row per box, in frame order, in full-frame pixels.
- parameters.csv: `key,value` rows sorted by key, no header; `source_video` is the video's
  absolute path (as the host sees it: --path-map), which the review window opens.

Every file is written through atomic.writing, so a full disk or a read-only folder is one error
that names the file, and never a JPEG or a row silently missing.
"""

import csv
import hashlib
import json
from pathlib import Path

from meerkat.core.atomic import TEXT, write_csv

ANNOTATION_COLUMNS = ["frame", "clock", "x", "y", "h", "w", "label", "score"]


def clock(frame: int, fps: int) -> str:
    """H:MM:SS of a frame number, as DeepMeerkat writes it in annotations.csv."""
    t = (frame / (fps or 30)) % 86400.0
    return f"{int(t // 3600)}:{int(t % 3600 // 60):02d}:{int(t % 60):02d}"


def annotation(frame: int, fps: int, box, label: str, score) -> dict:
    """One row of annotations.csv; `box` (x, y, w, h) in the frame's pixels."""
    x, y, w, h = box.x, box.y, box.w, box.h
    return {"frame": frame, "clock": clock(frame, fps), "x": x, "y": y, "h": h, "w": w, "label": label, "score": score}


def write_annotations(path: Path, rows: list[dict]) -> None:
    write_csv(path, ([r[c] for c in ANNOTATION_COLUMNS] for r in rows), ANNOTATION_COLUMNS)


def write_parameters(path: Path, params: dict) -> None:
    write_csv(path, sorted((k, v) for k, v in params.items()))


def read_parameters(path: Path) -> dict[str, str]:
    """The key,value rows of a parameters.csv; {} when there is none or it is not one meerkat wrote."""
    try:
        with open(path, newline="", **TEXT) as f:
            return {row[0]: row[1] for row in csv.reader(f) if len(row) >= 2}
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}


def settings_key(video: Path, settings: dict) -> str:
    """What a video's results depend on: the file (size, time) and the settings. A rerun whose key
    matches a finished folder's reuses it."""
    st = Path(video).stat()
    parts = [str(Path(video).resolve()), st.st_size, st.st_mtime_ns, settings]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def host_path(path: Path, path_map: list[str] | tuple[str, ...] | None) -> str:
    """The absolute path of `path` with the first matching CONTAINER=HOST prefix replaced."""
    text = str(Path(path).resolve())
    for pair in path_map or ():
        inside, host = pair.split("=", 1)
        inside = inside.rstrip("/")
        if text == inside or text.startswith(inside + "/"):
            return host.rstrip("/") + text[len(inside) :]
    return text
