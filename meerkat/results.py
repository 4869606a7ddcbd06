"""Per-video results in DeepMeerkat 3.x's layout, so its review window opens meerkat's folders.

- annotations.csv: `frame,clock,x,y,h,w,label,score` (h before w, as DeepMeerkat writes it), one
  row per box, in frame order, in full-frame pixels.
- parameters.csv: `key,value` rows sorted by key, no header; `source_video` is the video's
  absolute path (as the host sees it: --path-map), which the review window opens.

Every file is written through `writing`, so a full disk or a read-only folder is one error that
names the file, and never a JPEG or a row silently missing.
"""

import csv
import hashlib
import json
from contextlib import contextmanager
from pathlib import Path

import cv2

from meerkat.errors import MeerkatError
from meerkat.fileio import describe_os_error

ANNOTATION_COLUMNS = ["frame", "clock", "x", "y", "h", "w", "label", "score"]
# A path whose bytes are no UTF-8 (a Latin-1 file name) is written as those very bytes.
TEXT = {"encoding": "utf-8", "errors": "surrogateescape"}


@contextmanager
def writing(path):
    """Turn a failed write of `path` into an error that names it and says what to do."""
    try:
        yield
    except OSError as e:
        raise MeerkatError(f"cannot write {path}: {describe_os_error(e)}") from e


def write_file(path: Path, data: bytes) -> None:
    with writing(path):
        Path(path).write_bytes(data)


def jpeg(image, quality: int = 95) -> bytes:
    """`image` as JPEG bytes, the bytes cv2.imwrite would write (its default quality is 95)."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise MeerkatError(f"OpenCV could not encode a {image.shape} image as JPEG; rerun with --debug")
    return data.tobytes()


def write_csv(path: Path, rows, header=None) -> None:
    """Rows written by the csv module: a name with a comma or a quote stays one field."""
    with writing(path), open(path, "w", newline="", **TEXT) as f:
        writer = csv.writer(f, lineterminator="\n")
        if header:
            writer.writerow(header)
        writer.writerows(rows)


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
