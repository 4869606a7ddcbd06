"""clips --detections --by-class: the class folder of each crop, from another classifier's labels in the file.

A detection's label is its classifier's top class: the highest score of its `classifications`
(SpeciesNet's, MegaDetector's classifiers', AddaxAI's, an earlier meerkat scan's), named by the
file's `classification_categories`; without `classifications`, AddaxAI's species, which AddaxAI
writes as the detection's `category` (MegaDetector's own moved to `prev_category`) with its score
as `conf`. The crop goes to crops/<label>/ when the score reaches the threshold (default: the
file's `classifier_metadata.typical_classification_threshold`, else 0.5) and no other class ties
it at the top; else to crops/unclassified/, with the label still in crops.csv.

Folder names are the labels made safe on every system a Samples folder travels to: no separator,
no character Windows refuses, no leading dot (createdocs skips hidden files), no Windows device
name, at most 100 bytes. Labels whose folders would be one folder where case does not count
(`Fox` and `fox`, `a/b` and `a_b`, a label named `unclassified`) each get 6 hex digits of the label.
"""

import hashlib
import math
import re

from meerkat.core.errors import MeerkatError
from meerkat.core.names import folded
from meerkat.megadetector.read import MEGADETECTOR_CATEGORIES

COLUMNS = ["class", "class_score", "folder"]
UNSURE = "unclassified"
DEFAULT_THRESHOLD = 0.5
MAX_FOLDER_BYTES = 100
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|\ud800-\udfff]')  # and lone surrogates, which name no file
_ENDS = re.compile(r"^[\s.]+|[\s.]+$")
_DEVICES = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$", re.IGNORECASE)


def of_file(results, threshold: float | None) -> "Labels":
    """The labels of a loaded file; `threshold` None: the file's own (`file_threshold`)."""
    header = results.header
    species = {}
    if results.kind == "addaxai":  # its species joined detection_categories after MegaDetector's
        original = header.get("detection_categories_original")
        megadetector = set(map(str, original if isinstance(original, dict) else MEGADETECTOR_CATEGORIES))
        species = {k: v for k, v in results.detection_categories.items() if k not in megadetector}
    classes = header.get("classification_categories")
    classes = {str(k): str(v) for k, v in classes.items()} if isinstance(classes, dict) else {}
    if not classes and not species:
        raise MeerkatError(
            f"{results.path} holds no other classifier's labels (no classification_categories, no AddaxAI "
            "species); leave out --by-class, or pass the file SpeciesNet, AddaxAI or a classifier wrote"
        )
    threshold = file_threshold(header) if threshold is None else threshold
    return Labels(classes, threshold, species, results.entries)


class Labels:
    """The label, its score and the crop's folder of each detection: `classes` names the ids of
    `classifications`, `species` AddaxAI's species categories; `entries` the file's."""

    def __init__(self, classes: dict[str, str], threshold: float, species=None, entries=None):
        self.classes, self.threshold, self.species, self.entries = classes, threshold, species or {}, entries
        self.folders = folders([*self.classes.values(), *self.species.values()])

    def __call__(self, entry, detections) -> list[list]:
        """[class, class_score, folder] of each of `detections` (entry's), as crops.csv lists them."""
        raw = self.entries.raw(entry.index).get("detections") or []
        return [self.label(raw[d.index]) for d in detections]

    def label(self, det: dict) -> list:
        """[class, class_score, folder] of one detection as the file holds it."""
        found = self._top(det)
        if found is None:
            return ["", "", UNSURE]
        name, score, tied = found
        sure = score >= self.threshold and not tied
        return [name, score, self.folders[name] if sure else UNSURE]

    def _top(self, det: dict) -> tuple[str, float, bool] | None:
        """(name, score, whether another class has the same score) of the top class, or None."""
        listed = det.get("classifications")
        if isinstance(listed, list) and listed:
            pairs = [(self.classes.get(str(p[0])), _score(p[1])) for p in listed if isinstance(p, list) and len(p) == 2]
            pairs = [(name, score) for name, score in pairs if name is not None and score is not None]
            if not pairs:
                return None
            best = max(score for _, score in pairs)
            top = [name for name, score in pairs if score == best]
            return top[0], best, len(set(top)) > 1
        name = self.species.get(str(det.get("category"))) if "prev_category" in det else None
        score = _score(det.get("conf"))
        return None if name is None or score is None else (name, score, False)


def file_threshold(header: dict) -> float:
    """The file's typical_classification_threshold, else DEFAULT_THRESHOLD."""
    info = header.get("info")
    meta = info.get("classifier_metadata") if isinstance(info, dict) else None
    typical = _score(meta.get("typical_classification_threshold")) if isinstance(meta, dict) else None
    return typical if typical is not None and 0 <= typical <= 1 else DEFAULT_THRESHOLD


def folders(names) -> dict[str, str]:
    """Each label's folder: `safe(name)`, unique ignoring case and apart from UNSURE."""
    names = sorted(set(names))
    taken: dict[str, list[str]] = {folded(UNSURE): [UNSURE]}
    for name in names:
        taken.setdefault(folded(safe(name)), []).append(name)
    marked = [name for name in names if len(taken[folded(safe(name))]) > 1]
    out = {name: safe(name) for name in names if name not in marked}
    used = {folded(UNSURE)} | {folded(folder) for folder in out.values()}
    for name in marked:  # after the plain ones, so that a mark never takes a label's own folder
        digest, size = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest(), 6
        while folded(folder := f"{_cut(safe(name), MAX_FOLDER_BYTES - size - 1)}_{digest[:size]}") in used:
            size += 2
        used.add(folded(folder))
        out[name] = folder
    return out


def safe(name: str) -> str:
    """`name` as one folder name that every system takes and that createdocs does not skip."""
    # Windows drops trailing dots and spaces; dict.txt strips a class name's spaces
    text = _ENDS.sub("", _cut(_ENDS.sub("", _UNSAFE.sub("_", name)), MAX_FOLDER_BYTES))
    device = _DEVICES.match(text)
    if device:  # CON.txt is the console too: the mark goes before the extension
        text = f"{device[1]}_{device[2] or ''}"
    return text or "_"


def _cut(text: str, size: int) -> str:
    while len(text.encode("utf-8", "surrogatepass")) > size:
        text = text[:-1]
    return text


def _score(x) -> float | None:
    kind = type(x)
    return float(x) if (kind is float or kind is int) and math.isfinite(x) else None
