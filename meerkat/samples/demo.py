"""A small synthetic Samples folder, so `make run` works with nothing downloaded.

Negatives are foliage: green and brown leaves on a blurred background, like the leaves and
shadows DeepMeerkat's motion detector crops. Positives are the same scenes with a 'bird':
a coloured body, a head and a long beak. Made with OpenCV from a seed, so always the same.
"""

from pathlib import Path

import cv2
import numpy as np

from meerkat.core import atomic


def _scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.integers(20, 90, 3).astype(np.uint8)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = base
    for _ in range(rng.integers(6, 16)):  # leaves: green to brown ellipses (BGR)
        color = tuple(int(c) for c in (rng.integers(0, 80), rng.integers(60, 200), rng.integers(0, 140)))
        center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(w // 12 + 2, w // 3 + 3)), int(rng.integers(h // 20 + 2, h // 6 + 3)))
        cv2.ellipse(img, center, axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
    img = cv2.GaussianBlur(img, (5, 5), 0)
    noise = rng.normal(0, 8, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def _bird(rng: np.random.Generator, img: np.ndarray) -> None:
    h, w = img.shape[:2]
    s = min(h, w)
    cx, cy = int(w * rng.uniform(0.35, 0.65)), int(h * rng.uniform(0.4, 0.65))
    body = tuple(int(c) for c in (rng.integers(0, 90), rng.integers(120, 255), rng.integers(150, 255)))
    cv2.ellipse(img, (cx, cy), (int(s * 0.22), int(s * 0.12)), float(rng.uniform(-30, 30)), 0, 360, body, -1)
    head = (cx + int(s * 0.2), cy - int(s * 0.1))
    cv2.circle(img, head, max(2, int(s * 0.08)), (40, 40, 200), -1)
    beak_end = (head[0] + int(s * 0.25), head[1] + int(s * rng.uniform(-0.05, 0.08)))
    cv2.line(img, head, beak_end, (20, 20, 20), max(1, s // 60))
    cv2.circle(img, (head[0] + max(1, s // 40), head[1] - max(1, s // 60)), max(1, s // 60), (255, 255, 255), -1)


def make_demo_samples(folder, train_per_class: int = 40, test_per_class: int = 15, seed: int = 0) -> Path:
    """Write folder/Training/{Positives,Negatives} and folder/Testing/{...} of JPEG crops."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    with atomic.atomic_dir(folder, "the demo Samples folder (give a new or empty folder)") as tmp:
        for split, n in (("Training", train_per_class), ("Testing", test_per_class)):
            for cls in ("Positives", "Negatives"):
                d = tmp / split / cls
                d.mkdir(parents=True)
                for i in range(n):
                    h, w = (int(x) for x in rng.integers(80, 320, 2))
                    img = _scene(rng, h, w)
                    if cls == "Positives":
                        _bird(rng, img)
                    atomic.write_file(d / f"{split.lower()}_{cls.lower()}_{i:04d}.jpg", atomic.jpeg(img, 90))
    return folder
