"""Camera-trap scenes the tests make, and MegaDetector's results for them, written per the format's
specification (../shared/notes/megadetector-format.md).

A scene is a large frame (1600x1200 by default) of smooth, seeded noise with crops pasted into it:
the shared DeepMeerkat sample crops (real birds and foliage) or generated ones. Each pasted crop's
box is written as MegaDetector writes boxes, normalised [x_min, y_min, width, height] rounded to 4
decimals, so that crops cut from the box hold the pasted crop.
"""

import json
from pathlib import Path

import cv2
import numpy as np
from conftest import SAMPLES

MD_CATEGORIES = {"1": "animal", "2": "person", "3": "vehicle"}


def samples(kind: str = "Positives", count: int = 4, split: str = "Training") -> list[Path]:
    return sorted((SAMPLES / split / kind).glob("*.jpg"))[:count]


def background(size=(1600, 1200), seed: int = 0) -> np.ndarray:
    """Smooth seeded noise, `size` (width, height): a frame with texture, unlike any crop."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, (size[1] // 40 + 1, size[0] // 40 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, size, interpolation=cv2.INTER_CUBIC)


def paste(image: np.ndarray, crop: np.ndarray, x: int, y: int, width: int) -> list[float]:
    """Paste `crop` scaled to `width` px wide at (x, y); its box as MegaDetector writes it."""
    h = max(1, round(crop.shape[0] * width / crop.shape[1]))
    image[y : y + h, x : x + width] = cv2.resize(crop, (width, h), interpolation=cv2.INTER_AREA)
    H, W = image.shape[:2]
    return [round(x / W, 4), round(y / H, 4), round(width / W, 4), round(h / H, 4)]


def scene(path: Path, crops: list, size=(1600, 1200), seed: int = 0, quality: int = 90) -> list[list[float]]:
    """Write a JPEG scene with `crops` (image files or BGR arrays) pasted left to right; their boxes."""
    image = background(size, seed)
    rng = np.random.default_rng(seed + 1)
    slot = size[0] // max(1, len(crops))
    boxes = []
    for i, crop in enumerate(crops):
        pixels = cv2.imread(str(crop)) if isinstance(crop, str | Path) else crop
        width = int(rng.integers(slot // 3, slot * 3 // 4))
        width = min(width, size[1] * 3 // 4 * pixels.shape[1] // pixels.shape[0])  # a tall crop fits too
        x = i * slot + int(rng.integers(0, slot - width))
        y = int(rng.integers(0, size[1] - round(pixels.shape[0] * width / pixels.shape[1])))
        boxes.append(paste(image, pixels, x, y, width))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cv2.imencode(path.suffix or ".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
    return boxes


def detection(bbox, conf: float = 0.9, category: str = "1", **extra) -> dict:
    return {"category": category, "conf": conf, "bbox": bbox, **extra}


def results(images: list[dict], version: str = "1.4", threshold: float | None = 0.2, **extra) -> dict:
    """MegaDetector's results file around `images` (entries with file, detections)."""
    info = {"format_version": version, "detector": "md_v5a.0.0.pt", "detection_completion_time": "2024-05-01 10:00:00"}
    if threshold is not None:
        info["detector_metadata"] = {"megadetector_version": "v5a.0.0", "typical_detection_threshold": threshold,
                                     "conservative_detection_threshold": 0.05}  # fmt: skip
    return {"info": info, "detection_categories": dict(MD_CATEGORIES), "images": images, **extra}


def write_results(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path
