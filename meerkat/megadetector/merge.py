"""Task parts of one scan: each task's Scores as a small JSON file, and their union.

A part holds what one task found for its entries: the model's probabilities per detection
(floats written exactly: JSON's shortest repr reads back as the same float), its failures, and
a key that says which input, model and settings it belongs to. write.output rounds and sorts only
after the union, so N parts give the very bytes one process gives.
"""

import json
from collections.abc import Iterable
from pathlib import Path

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


def combine(parts: Iterable[Scores]) -> Scores:
    """The union of the parts' Scores. Two parts that give one detection different results came
    from different runs: an error, never a silent choice."""
    merged: dict[str, dict] = {"classifications": {}, "failures": {}, "detection_failures": {}, "frame_rates": {}}
    for part in parts:
        for name, found in merged.items():
            for k, v in getattr(part, name).items():
                v = tuple(v) if name == "classifications" else v
                if found.setdefault(k, v) != v:
                    raise MeerkatError(
                        f"two parts disagree on entry {k if isinstance(k, int) else k[0]} ({name}): they come from "
                        "different runs; delete the parts folder and rerun"
                    )
    return Scores(**merged)
