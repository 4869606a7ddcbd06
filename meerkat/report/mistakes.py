"""The most confident mistakes on the eval set: which they are, their thumbnails, and a contact sheet of them.

The pair's are false positives and false negatives at 0.5; other classes' are, for each true
class, its crops whose top score went to another class, the highest such score first.

The page shows the thumbnails, copied small into report/mistakes/ so that it outlives the crops'
folder; TensorBoard gets them tiled into one image.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meerkat.core import atomic
from meerkat.report import canvas
from meerkat.report.metrics import DEFAULT_THRESHOLD
from meerkat.samples.imagefiles import Unreadable, for_model, read_bytes

MISTAKES_SHOWN = 12  # of each kind
MISTAKES_PER_CLASS = 6  # of each true class, for species: 30 classes stay one row each on the sheet
THUMBNAIL = 200  # px, the longer side
KINDS = ("false positive", "false negative")
PREFIXES = {"false positive": "fp", "false negative": "fn"}  # of the thumbnails' names


@dataclass
class Mistake:
    kind: str  # one of KINDS; for species, the true class
    uri: str
    score: float  # P(positive); for species, the score of the class it was taken for
    thumbnail: str | None = None  # the file name under report/mistakes/, None when unreadable
    image: np.ndarray | None = None  # RGB, for the contact sheet
    problem: str = ""  # why the crop could not be read or encoded
    predicted: str = ""  # for species, the class it was taken for


def pick(evaluation: dict, uris: list[str], threshold: float = DEFAULT_THRESHOLD) -> list[Mistake]:
    """The negatives scored highest and the positives scored lowest, on the wrong side of threshold
    (evaluation: metrics.evaluate_thresholds of the crops `uris`)."""
    s, is_pos = evaluation["scores"], evaluation["is_positive"]
    fp = [i for i in np.argsort(-s, kind="stable") if not is_pos[i] and s[i] >= threshold][:MISTAKES_SHOWN]
    fn = [i for i in np.argsort(s, kind="stable") if is_pos[i] and s[i] < threshold][:MISTAKES_SHOWN]
    return [Mistake("false positive", uris[i], float(s[i])) for i in fp] + [
        Mistake("false negative", uris[i], float(s[i])) for i in fn
    ]


def pick_species(labels, probabilities, classes, uris: list[str]) -> list[Mistake]:
    """For each true class (classes.Classes), its crops taken for another class, the most confident first."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities)
    predicted = classes.predicted(probabilities)
    picked = []
    for c, name in enumerate(classes.names):
        wrong = np.flatnonzero((labels == c) & (predicted != c))
        confidence = probabilities[wrong, predicted[wrong]]
        for i in wrong[np.argsort(-confidence, kind="stable")][:MISTAKES_PER_CLASS]:
            other = classes.names[predicted[i]]
            picked.append(Mistake(name, uris[i], float(probabilities[i, predicted[i]]), predicted=other))
    return picked


def _thumbnail(uri: str) -> np.ndarray:
    """The crop as RGB, its longer side at most THUMBNAIL px; raises Unreadable."""
    import cv2

    data = for_model(read_bytes(uri))
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:  # a GIF, say: what preprocess decoded with TensorFlow
        import tensorflow as tf

        try:
            image = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()[..., ::-1]
        except tf.errors.OpError as e:
            raise Unreadable(f"cannot decode: {e.message.splitlines()[0]}") from None
    h, w = image.shape[:2]
    scale = min(1.0, THUMBNAIL / max(h, w))
    if scale < 1:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image[..., ::-1])


def write_thumbnails(report_dir: Path, mistakes: list[Mistake]) -> None:
    """report/mistakes/: copies of the mistaken crops, small, so the page outlives the crops' folder.
    Sets each mistake's thumbnail and image, or its problem."""
    import cv2

    with atomic.atomic_dir(report_dir / "mistakes", "the report's thumbnails") as tmp:
        numbers: dict[str, int] = {}
        prefixes = dict(PREFIXES)
        for m in mistakes:
            numbers[m.kind] = numbers.get(m.kind, 0) + 1  # fp-01, fp-02, ..., fn-01, ...: by rank in its kind
            prefixes.setdefault(m.kind, f"class{len(prefixes) - len(PREFIXES) + 1:02d}")  # species: by class
            try:
                m.image = _thumbnail(m.uri)
            except (Unreadable, OSError) as e:
                m.problem = str(e)
                continue
            ok, jpeg = cv2.imencode(".jpg", m.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 88])
            if not ok:
                m.problem = "cannot encode its thumbnail"
                continue
            m.thumbnail = f"{prefixes[m.kind]}-{numbers[m.kind]:02d}.jpg"
            (tmp / m.thumbnail).write_bytes(jpeg.tobytes())


def sheet(mistakes: list[Mistake]) -> np.ndarray | None:
    """A contact sheet of the mistakes as an RGB array, for TensorBoard (the page lays out the
    thumbnails itself): the thumbnails tiled, placed unscaled (figimage), with their names and
    scores. One axes per thumbnail, or a resampled imshow, would take a second or more."""
    if not mistakes:
        return None
    columns, cell, caption, heading = 6, THUMBNAIL + 8, 34, 30
    pair = all(m.kind in KINDS for m in mistakes)
    order = KINDS if pair else dict.fromkeys(m.kind for m in mistakes)  # species: the true classes, in order
    kinds = [(k, [m for m in mistakes if m.kind == k]) for k in order]
    rows = [max(1, -(-len(mine) // columns)) for _, mine in kinds]
    height, width = sum(heading + r * (cell + caption) for r in rows), columns * cell
    tiles = np.full((height, width, 3), 255, np.uint8)
    texts, top = [], 0  # (x, y from the top, text, size)
    for (kind, mine), n_rows in zip(kinds, rows, strict=True):
        title = f"{kind}s: {len(mine)} most confident" if mine else f"no {kind}s"
        texts.append((4, top + heading / 2, title if pair else f"true {kind}: {len(mine)} most confident mistakes", 11))
        top += heading
        for i, m in enumerate(mine):
            x, y = (i % columns) * cell, top + (i // columns) * (cell + caption)
            tiles[y + 4 : y + cell - 4, x + 4 : x + cell - 4] = 238
            if m.image is not None:
                h, w = m.image.shape[:2]
                oy, ox = y + 4 + (THUMBNAIL - h) // 2, x + 4 + (THUMBNAIL - w) // 2
                tiles[oy : oy + h, ox : ox + w] = m.image
            else:
                texts.append((x + cell / 2 - 30, y + cell / 2, "unreadable", 9))
            score = f"{m.score:.4f}" if pair else f"{_cut(m.predicted, 18)} {m.score:.4f}"
            texts.append((x + 6, y + cell + caption / 2, f"{_short(m.uri, 26)}\n{score}", 8))
        top += n_rows * (cell + caption)
    Figure = canvas.figure_class()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    agg = FigureCanvasAgg(fig)
    fig.figimage(tiles, origin="upper")
    for x, y, text, size in texts:
        fig.text(x / width, 1 - y / height, text, fontsize=size, va="center", ha="left", linespacing=1.2)
    agg.draw()
    return np.asarray(agg.buffer_rgba())[..., :3].copy()


def _short(text: str, width: int) -> str:
    """The file name, cut from the left to `width` characters."""
    return _cut(atomic.shown(Path(text).name), width)


def _cut(name: str, width: int) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]
