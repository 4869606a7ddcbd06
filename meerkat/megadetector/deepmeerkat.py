"""DeepMeerkat 3.x's megadetector_results.json, read as far as its boxes can be read faithfully.

What DeepMeerkat 3.1.4 writes (megadetector_pipeline.py, video.py, export.py):
- `<output>/<video stem>/megadetector_results.json`: `{"images": [...], "video": path}`, one entry
  per processed frame, exactly as MegaDetector's `generate_detections_one_image` returned it:
  `file` = `<stem>_frame_000123`, numbered from 1 (cv2 reads counted from 1), no `info`, no
  `detection_categories`, and `failure` for a frame MegaDetector could not process.
- Its boxes are normalised to the image MegaDetector was given: the frame cut to `--roi`
  (x, y, width, height, in pixels) and then shrunk to `--md-max-dimension` (which leaves
  normalised boxes as they are). Without a ROI they are normalised to the whole frame, as in
  any MegaDetector file. With one, they are relative to the ROI, and DeepMeerkat records the
  ROI nowhere (not in parameters.csv), so no box can be put back into the frame.
- Its annotations.csv takes those normalised boxes for pixels: x = round(x_norm + roi_x),
  w = round(w_norm). So its x and y are the ROI's corner (give or take 1), and w and h are 0 or
  1. That is how a ROI shows: any x or y above 1 there means a ROI away from the frame's corner.
- parameters.csv (beside them) holds `source_video` (absolute), `video_fps`, `mode`.

So meerkat reads the file only with its parameters.csv (mode megadetector) and annotations.csv
beside it, and refuses it when annotations.csv shows a ROI, or boxes that are not normalised.
A ROI whose corner is the frame's corner (0,0) leaves no trace in any file: run DeepMeerkat
without --roi for files meerkat is to read. The file becomes one MegaDetector 1.6 video entry:
frame_number = DeepMeerkat's frame - 1, frames_processed = the frames without a failure (as
MegaDetector's own video tools treat a failed frame), frame_rate = parameters.csv's video_fps.
"""

import csv
import math
import os
import re
from pathlib import Path

from meerkat.core.errors import MeerkatError

CATEGORIES = {"1": "animal", "2": "person", "3": "vehicle"}  # deepmeerkat/labels.py


def convert(path: Path, raw: dict, root: Path) -> dict:
    """DeepMeerkat's file `raw` as the MegaDetector 1.6 file it stands for: one video entry."""
    folder = path.parent
    params = _parameters(path, folder / "parameters.csv")
    frames = _frames(path, raw)
    detections = [
        dict(det, frame_number=number) if isinstance(det, dict) else det
        for number, result in frames
        for det in result.get("detections") or ()
    ]
    _check_boxes(path, folder / "annotations.csv", len(detections))
    try:
        frame_rate = float(params.get("video_fps", ""))
    except ValueError:
        frame_rate = math.nan
    if not math.isfinite(frame_rate) or frame_rate <= 0:
        raise MeerkatError(f"{folder / 'parameters.csv'} has no video_fps; rerun DeepMeerkat on the video")
    categories = dict(CATEGORIES)
    for det in detections:
        if isinstance(det, dict) and "category" in det:
            categories.setdefault(str(det["category"]), str(det["category"]))
    detector = "DeepMeerkat" + (f" (MegaDetector {params['model']})" if params.get("model") else "")
    entry = {
        "file": _video_file(raw, params, root),
        "frame_rate": frame_rate,
        "frames_processed": sorted(n for n, result in frames if not result.get("failure")),
        "detections": detections,
    }
    return {
        "info": {"format_version": "1.6", "detector": detector},
        "detection_categories": categories,
        "images": [entry],
    }


def _parameters(path: Path, csv_path: Path) -> dict[str, str]:
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            params = {row[0].strip(): row[1].strip() for row in csv.reader(f) if len(row) >= 2}
    except (OSError, UnicodeDecodeError, csv.Error):
        raise MeerkatError(
            f"{path} is DeepMeerkat's, and needs the parameters.csv it wrote beside it (the video, its frame rate); "
            "pass the file inside DeepMeerkat's whole result folder"
        ) from None
    if params.get("mode") != "megadetector":
        raise MeerkatError(f"{csv_path} is not from DeepMeerkat's MegaDetector mode (mode {params.get('mode')!r})")
    return params


def _frames(path: Path, raw: dict) -> list[tuple[int, dict]]:
    """(0-based frame number, MegaDetector's result for it) for each frame of the file."""
    stem = Path(str(raw.get("video") or "")).stem
    pattern = re.compile(re.escape(stem) + r"_frame_(\d+)")
    frames = []
    for i, result in enumerate(raw["images"]):
        match = pattern.fullmatch(str(result.get("file"))) if isinstance(result, dict) else None
        if match is None or int(match[1]) < 1 or not isinstance(result.get("detections") or [], list):
            raise MeerkatError(
                f"{path}: images[{i}] is not a frame of {stem!r} as DeepMeerkat 3.x names them "
                f"({stem}_frame_000001, ...); pass DeepMeerkat's megadetector_results.json unchanged"
            )
        frames.append((int(match[1]) - 1, result))
    return frames


def _check_boxes(path: Path, csv_path: Path, n_detections: int) -> None:
    """Refuse the file when annotations.csv shows a ROI, or boxes that are not normalised."""
    if n_detections == 0:
        return  # no box to misplace
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        corners = [(float(r["x"]), float(r["y"]), float(r["w"]), float(r["h"])) for r in rows]
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError):
        raise MeerkatError(
            f"{path} is DeepMeerkat's, and needs the annotations.csv it wrote beside it, which shows whether "
            "its boxes are relative to a --roi; pass the file inside DeepMeerkat's whole result folder"
        ) from None
    if len(corners) != n_detections:
        raise MeerkatError(
            f"{csv_path} has {len(corners)} boxes and {path} {n_detections}: they are not from one run; "
            "pass DeepMeerkat's result folder as it wrote it"
        )
    if any(w > 1 or h > 1 for _, _, w, h in corners):
        raise MeerkatError(
            f"{path}: DeepMeerkat's annotations.csv has boxes wider than 1, so this file's boxes may not be "
            "normalised, and meerkat cannot place them; run MegaDetector on the video itself"
        )
    if any(x > 1 or y > 1 for x, y, _, _ in corners):
        x, y = min(c[0] for c in corners), min(c[1] for c in corners)
        raise MeerkatError(
            f"{path}: DeepMeerkat ran with a --roi (its corner near x={x:g}, y={y:g}), so its boxes are relative "
            "to that region, whose size it did not record; rerun DeepMeerkat without --roi, or MegaDetector itself"
        )


def _video_file(raw: dict, params: dict[str, str], root: Path) -> str:
    """The video as the entry's `file`: relative to `root` when it lies there, else absolute."""
    source = Path(params.get("source_video") or str(raw.get("video")))
    if not source.is_file() and (root / source.name).is_file():
        source = root / source.name  # the folders moved since DeepMeerkat ran
    source = Path(os.path.abspath(source))
    try:
        return source.relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return source.as_posix()
