"""How scan --detections divides its work so that any split gives the bytes of one process.

A model's scores move in the 7th digit with the other crops of its call (oneDNN's kernels depend
on a batch's size and on a crop's place in it), and rounded to 6 decimals that shows now and then.
So the model calls are planned from the file alone: a batch is a run of consecutive entries whose
selected boxes fit in --batch-size together (an entry with more is a batch of its own, scored in
calls of --batch-size). The same file and options give the same batches, and so the same scores,
on one machine whatever the tasks. Entries without boxes belong to a batch too (they add no crop
to its calls), so that every entry is some part's: a video's frame rate, which MegaDetector's
format needs, is read even where no box is cut.

A part is PART_BATCHES consecutive batches, the unit that is written (OUTPUT/detections-parts/,
through megadetector/merge.py), reused and merged. Task i of N scores parts i, i + N, ...; the task
that finds every part done writes detections.json and scan.csv. A part is reused while its key
(input, boxes selected, model, crop settings, code) is the run's, whatever the number of tasks.
"""

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from meerkat import __version__
from meerkat.core import codeversion

PART_BATCHES = 50  # about 3,200 crops: minutes of work on a CPU, lost at most when a task is killed
FOLDER = "detections-parts"


def batches(boxes: Sequence[int], failed: Sequence[int], size: int) -> list[range]:
    """The entries in runs: consecutive entries whose selected boxes fit in `size` together (an
    entry with more is a run of its own). Every entry is in one run; those without boxes to cut
    (none selected, or MegaDetector failed on them) add nothing to a model call."""
    out: list[range] = []
    start, held = 0, 0
    for i, n in enumerate(boxes):
        if not n or failed[i]:
            continue
        if held and held + n > size:
            out.append(range(start, i))
            start, held = i, 0
        held += n
    if start < len(boxes):
        out.append(range(start, len(boxes)))
    return out


def split(planned: list[range]) -> list[list[range]]:
    """The parts: PART_BATCHES consecutive batches each."""
    return [planned[i : i + PART_BATCHES] for i in range(0, len(planned), PART_BATCHES)]


def path(output: Path, number: int, total: int) -> Path:
    return output / FOLDER / f"part-{number:05d}-of-{total:05d}.json"


def key(results, image_root: Path, prefixes: list, model_sha256: str, padding: str, batch_size: int) -> str:
    """What a part's scores depend on; a part with another key is done again."""
    settings = {
        "detections_sha256": results.sha256,
        "image_root": str(Path(image_root).resolve()),
        "path_prefix": [[prefix, str(Path(folder).resolve())] for prefix, folder in prefixes],
        "categories": sorted(results.categories),
        "detection_threshold": results.threshold,
        "model_sha256": model_sha256,
        "padding": padding,
        "batch_size": batch_size,
        "meerkat_version": __version__,
        "code_key": codeversion.key("detection-scan"),  # an upgrade that changed how boxes are scored redoes them
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
