"""Task parts of one scan: each task's Scores as a small JSON file, and their union.

A part holds what one task found for its entries: the model's probabilities per detection
(floats written exactly: JSON's shortest repr reads back as the same float), its failures, and
a key that says which input, model and settings it belongs to. write.write rounds and sorts only
after the union, so N parts give the very bytes one process gives. The union holds the
probabilities in arrays (`Table`), not a dict, so merging a season's parts stays small.
"""

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from meerkat.core.errors import MeerkatError
from meerkat.megadetector.write import Scores

FORMAT = "meerkat detections part 1"


def dumps_part(scores: Scores, key: str = "") -> bytes:
    """One task's Scores as JSON bytes, in a fixed order."""
    payload = {
        "format": FORMAT,
        "key": key,
        "classifications": [[i, j, [float(p) for p in ps]] for (i, j), ps in sorted(scores.classifications.items())],
        "failures": [[i, reason] for i, reason in sorted(scores.failures.items())],
        "detection_failures": [[i, j, reason] for (i, j), reason in sorted(scores.detection_failures.items())],
        "frame_rates": [[i, float(fps)] for i, fps in sorted(scores.frame_rates.items())],
    }
    return (json.dumps(payload, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def loads_part(raw: bytes, path) -> tuple[str, Scores]:
    """(key, Scores) of a part's bytes; `path` names it in the error when it is not a part."""
    try:
        payload = json.loads(raw.decode("utf-8"))
        if payload.get("format") != FORMAT:
            raise ValueError(payload.get("format"))
        scores = Scores(
            classifications={(int(i), int(j)): tuple(float(p) for p in ps) for i, j, ps in payload["classifications"]},
            failures={int(i): str(r) for i, r in payload["failures"]},
            detection_failures={(int(i), int(j)): str(r) for i, j, r in payload["detection_failures"]},
            frame_rates={int(i): float(f) for i, f in payload["frame_rates"]},
        )
        return str(payload["key"]), scores
    except (UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError):
        raise MeerkatError(
            f"{Path(path)} is not a part meerkat wrote (or it was cut short); delete it and rerun its task"
        ) from None


class Table(Mapping):
    """(entry, detection) -> probabilities, held in two arrays: a season's million boxes in tens of
    MB, where a dict of tuples would take hundreds. Keys are looked up by binary search."""

    def __init__(self, keys: np.ndarray, values: np.ndarray):
        self._keys, self._values = keys, values  # sorted int64 entry << 32 | detection; float64 rows

    @staticmethod
    def key(i: int, j: int) -> int:
        return i << 32 | j

    def __getitem__(self, key) -> tuple[float, ...]:
        k = self.key(*key)
        at = int(np.searchsorted(self._keys, k))
        if at == len(self._keys) or self._keys[at] != k:
            raise KeyError(key)
        return tuple(self._values[at].tolist())

    def __contains__(self, key) -> bool:
        try:
            self[key]
        except (KeyError, TypeError, ValueError):
            return False
        return True

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self):
        return ((int(k) >> 32, int(k) & 0xFFFFFFFF) for k in self._keys)


def combine(parts: Iterable[Scores]) -> Scores:
    """The union of the parts' Scores. Two parts that give one detection different results came
    from different runs: an error, never a silent choice."""
    merged: dict[str, dict] = {"failures": {}, "detection_failures": {}, "frame_rates": {}}
    keys, values = [], []
    for part in parts:
        for name, found in merged.items():
            for k, v in getattr(part, name).items():
                if found.setdefault(k, v) != v:
                    _disagree(k, name)
        if part.classifications:
            keys.append(np.fromiter((Table.key(i, j) for i, j in part.classifications), np.int64))
            rows = list(part.classifications.values())
            if len({len(r) for r in rows}) > 1 or values and values[0].shape[1] != len(rows[0]):
                _disagree(next(iter(part.classifications)), "classifications")
            values.append(np.array(rows, np.float64))
    return Scores(classifications=_table(keys, values), **merged)


def _table(keys: list, values: list) -> Table:
    if not keys:
        return Table(np.empty(0, np.int64), np.empty((0, 0)))
    keys, values = np.concatenate(keys), np.concatenate(values)
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    repeated = np.flatnonzero(keys[1:] == keys[:-1])
    if len(repeated):  # one detection in two parts: the same figures, or two runs mixed
        differ = np.any(values[repeated] != values[repeated + 1], axis=1)
        if differ.any():
            k = int(keys[repeated[np.argmax(differ)]])
            _disagree((k >> 32, k & 0xFFFFFFFF), "classifications")
        keep = np.ones(len(keys), bool)
        keep[repeated + 1] = False
        keys, values = keys[keep], values[keep]
    return Table(keys, values)


def _disagree(k, name: str):
    raise MeerkatError(
        f"two parts disagree on entry {k if isinstance(k, int) else k[0]} ({name}): they come from "
        "different runs; delete the parts folder and rerun"
    )
