"""Which folder of OUTPUT holds each video, for clips and scan alike.

Camera traps name every card's files IMAG0001.MP4, so videos at different paths often share a
stem, in some case. A video is its path, resolved (symlinks followed); the walk records it in the
folder's parameters.csv as `source_path`, beside `source_video`, which scan rewrites with
--path-map for the host: the record does not depend on a mapping, so a rerun with another
--path-map still finds its folder. (Folders of earlier meerkats have only `source_video`: such a
folder is a video's when that equals the video's path, or its path through this run's --path-map.)
A video's folder is, in this order:

1. the folder of OUTPUT that records it, `<stem>` in any case or `<stem>_<hash>`: a rerun reuses it;
2. `<stem>`, when OUTPUT has nothing of that name in any case (and it is not OUTPUT's own
   suggested/ or scan-parts/) and the video comes first (by path) among this run's videos of that
   stem, names compared as macOS, Windows and exFAT compare them; so a lone video, and every
   output of DeepMeerkat and earlier meerkats, keep the layout they had;
3. `<stem>_<hash>`, the hash being the first 8 hex digits of the sha256 of its path.

A folder that records another video, or none, is never reused or replaced. Each array task
chooses afresh, while others write: rule 1 only ever finds the folder a task chose by rule 2 or 3
for that very video, and rule 2 can only find `<stem>` written for the video it gives it to, so
every task of a run, and its rerun, chooses the same folders.
"""

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from meerkat.core import temporaries
from meerkat.core.errors import MeerkatError
from meerkat.core.names import folded
from meerkat.video import results

log = logging.getLogger(__name__)

RECORD = "source_path"  # the parameters.csv key that says which video a folder holds
RESERVED = frozenset({"suggested", "scan-parts"})  # OUTPUT's own folders: a video of that stem gets <stem>_<hash>


def identity(video) -> str:
    """What a video is: its resolved path."""
    return str(Path(video).resolve())


def hashed_name(video) -> str:
    """`<stem>_<hash>`: the folder of a video whose stem is another's."""
    return f"{Path(video).stem}_{hashlib.sha256(os.fsencode(identity(video))).hexdigest()[:8]}"


@dataclass(frozen=True)
class Folders:
    names: dict[Path, str]  # each video as listed -> the name of its folder in OUTPUT
    others: tuple[str, ...]  # OUTPUT's folders of videos this run does not list (earlier runs')

    def note_others(self, output: Path, listed: str) -> None:
        """One log line when OUTPUT holds other videos' folders; `listed`: what leaves them out."""
        if n := len(self.others):
            shown = ", ".join(f"{name}/" for name in self.others[:5]) + (f" and {n - 5} more" if n > 5 else "")
            folder, video = ("folder", "video") if n == 1 else ("folders", "videos")
            log.info("%s also holds the %s of %d other %s (%s), from earlier runs; %s", output, folder, n, video,
                     shown, listed)  # fmt: skip


def assign(videos: list[Path], output: Path, path_map=None) -> Folders:
    """The folder of each of this run's `videos` (all of them, whichever share a task does) in `output`."""
    records = _records(output)
    by_stem: dict[str, list[str]] = {}  # folded stem -> entries of OUTPUT of that name
    for name in records:
        by_stem.setdefault(folded(name), []).append(name)
    ids = {v: identity(v) for v in videos}
    shown = {v: results.host_path(v, path_map) for v in videos}  # source_video, as scan writes it
    first: dict[str, str] = {}  # folded stem -> the first path among this run's videos of that stem
    for v in sorted(videos, key=ids.get):
        first.setdefault(folded(v.stem), ids[v])
    names = {}
    for v in videos:
        stem = folded(v.stem)
        candidates = (*sorted(by_stem.get(stem, ())), hashed_name(v))
        held = [n for n in candidates if _holds(records.get(n), {ids[v]}, {ids[v], shown[v]})]
        if held:
            names[v] = held[0]
        elif stem not in by_stem and stem not in RESERVED and first[stem] == ids[v]:
            names[v] = v.stem
        else:
            names[v] = _free(output, records, candidates[-1], v)
    _check_distinct(names, ids)
    mine, paths, shown_paths = set(names.values()), set(ids.values()), {*ids.values(), *shown.values()}
    others = (n for n, r in records.items() if n not in mine and r and any(r) and not _holds(r, paths, shown_paths))
    return Folders(names, tuple(sorted(others)))


def _records(output: Path) -> dict[str, tuple[str, str] | None]:
    """Each entry of OUTPUT (but meerkat's temporaries) -> what its parameters.csv says it holds:
    (source_path, source_video), "" where missing; None for a file."""
    found = {}
    with os.scandir(output) as entries:
        for entry in entries:
            if temporaries.is_temp(entry.name):
                continue
            if entry.is_dir():
                params = results.read_parameters(Path(entry.path) / "parameters.csv")
                found[entry.name] = (params.get(RECORD, ""), params.get("source_video", ""))
            else:
                found[entry.name] = None
    return found


def _holds(record: tuple[str, str] | None, paths: set[str], shown: set[str]) -> bool:
    """Whether a folder's record names one of `paths` (or, without source_path, of `shown`)."""
    if not record:
        return False
    path, source_video = record
    return path in paths if path else bool(source_video) and source_video in shown


def _free(output: Path, records: dict, name: str, video: Path) -> str:
    """`name`, unless something that does not hold `video` is there already."""
    if name in records:
        raise MeerkatError(
            f"{output / name} is in the way of the results of {video}: it does not hold that video; move it "
            "elsewhere (meerkat never reuses or replaces the folder of another video)"
        )
    return name


def _check_distinct(names: dict[Path, str], ids: dict[Path, str]) -> None:
    """No two videos of the run in one folder, in any case (a stem that is another's hashed name)."""
    seen: dict[str, Path] = {}
    for v, name in names.items():
        other = seen.setdefault(folded(name), v)
        if ids[other] != ids[v]:
            raise MeerkatError(f"{other} and {v} would both write to the folder {name}/; rename one of them")
