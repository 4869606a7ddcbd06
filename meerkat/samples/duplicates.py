"""Crops whose bytes are in more than one class folder: under both labels (so one copy is
mislabelled) or in both Training and Testing (so test accuracy is optimistic).

They are reported, listed in docs/duplicates.txt, and left in: meerkat cannot tell which label is
right, and the docs stay what the folders hold. Copies inside one class folder are not reported.

Exact and cheap: files of different sizes differ, so only a file that shares its size with a file
of another class folder is hashed (sha256). Of benchmarks/bench.py's 11,000 synthetic crops (163 MB)
that is 2,872; the check takes 0.15 s (0.5-0.7 s with the files out of the page cache), where
hashing every crop took 0.3 s (1.3-1.8 s).
"""

import hashlib
import logging
import os
from collections import defaultdict
from pathlib import Path

from meerkat.core import ownership
from meerkat.core.progress import Progress
from meerkat.samples.docs import write_csv

log = logging.getLogger(__name__)

Place = tuple[str, str]  # (set, label): ("training", "positive")


def _sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None  # preprocess skips it and says why


def _size(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def find(files: dict[Place, list[Path]], every: float) -> list[list[tuple[Place, Path]]]:
    """Groups of files with the same bytes that lie in more than one place, members and groups in
    the order of `files`; `every`: seconds between progress lines without a terminal."""
    everything = [(place, path) for place, paths in files.items() for path in paths]
    by_size = defaultdict(list)
    for place, path in everything:
        by_size[_size(path)].append((place, path))
    by_size.pop(None, None)  # unreadable: preprocess skips it and says why
    by_size.pop(0, None)  # empty files are no crops (preprocess skips them), not copies of one
    suspects = [g for g in by_size.values() if len({place for place, _ in g}) > 1]
    by_hash = defaultdict(list)
    checked = len(everything) - sum(map(len, suspects))  # the rest are told apart by their size
    with Progress("Checking for duplicates", len(everything), "files", every, initial=checked) as progress:
        for group in suspects:
            for place, path in group:
                if (digest := _sha256(path)) is not None:
                    by_hash[digest].append((place, path))
                checked += 1
                progress.update(checked)
    order = {path: n for n, (_, path) in enumerate(everything)}
    groups = [sorted(g, key=lambda m: order[m[1]]) for g in by_hash.values() if len({p for p, _ in g}) > 1]
    return sorted(groups, key=lambda g: order[g[0][1]])


def _examples(pairs: list[tuple[Path, Path]]) -> str:
    return "; ".join(f"{a} = {b}" for a, b in pairs[:3])


def report(groups: list[list[tuple[Place, Path]]], listed: Path) -> None:
    """Warn about `groups` and list each copy with the first of its group in `listed`, or remove an
    earlier run's list when there are none."""
    if not groups:
        if os.path.lexists(listed):
            ownership.remove(listed, "an earlier run's list of duplicates")
        return
    write_csv(listed, [(str(path), f"the same bytes as {g[0][1]}") for g in groups for _, path in g[1:]])
    labels = [g for g in groups if len({label for (_, label), _ in g}) > 1]
    if labels:
        log.warning(
            "warning: %d %s under both labels (the same bytes in a Positives and a Negatives folder), so one "
            "copy of each is mislabelled; keep it in one class folder only (listed in %s). E.g. %s",
            len(labels),
            "image is" if len(labels) == 1 else "images are",
            listed,
            _examples([(g[0][1], g[1][1]) for g in labels]),
        )
    both = [
        (path, next(p for (s, _), p in g if s == "testing"))
        for g in groups
        if any(s == "testing" for (s, _), _ in g)
        for (s, _), path in g
        if s == "training"
    ]
    if both:
        log.warning(
            "warning: %d training images also appear in Testing (same content), so test accuracy will be "
            "optimistic; remove them from one side (listed in %s). E.g. %s",
            len(both),
            listed,
            _examples(both),
        )
