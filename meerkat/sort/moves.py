"""Moving crops into SAMPLES/Training/<class>/ and back; every move is first written to a log, which undo reads.

A move is a hard link at the new name, then a line in the log, then the old name's removal: at
every instant the crop has at least one name, and a kill leaves either nothing done or a crop with
both names, which the next session finishes (`recover`; `adopt` when the kill came before the log
line). A link never replaces a file, so a name
that is taken gets `-2`, `-3`... and the page says so. Where CROPS and SAMPLES are on two file
systems, the crop is copied to a temporary beside its new name, linked in place, and its bytes
checked before the old name goes. Nothing is ever deleted but a name of a file that has another.

The log, SAMPLES/meerkat-sort/moves.jsonl, holds a line per event; the crops of one key press
share an action number, and undo takes back the newest action not yet undone:
  {"action": 3, "op": "move", "from": "v1/v1_12_0.jpg", "to": "Training/deer/v1_12_0.jpg", ...}
  {"action": 4, "op": "skip", "from": "v1/v1_13_0.jpg"}
  {"action": 5, "op": "undo", "of": 3}
A move line whose `from` is no plain path below CROPS, or whose `to` is no file of a class folder
(a line edited by hand), is passed over: undo never takes a file from elsewhere.
"""

import errno
import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from meerkat.core import temporaries
from meerkat.core.names import folded
from meerkat.sort.paths import Refused, below, parts

TRAINING = "Training"


@dataclass
class Move:
    action: int
    frm: str  # below the crops' root
    to: str  # below SAMPLES: Training/<class>/<name>
    size: int
    mtime_ns: int
    ino: int  # of the file at `to`


class Log:
    """The append-only log of one SAMPLES folder's sorting sessions."""

    def __init__(self, path: Path):
        self.path = path
        self.moves: dict[int, list[Move]] = {}
        self.skips: list[str] = []
        self.undone: set[int] = set()
        self.last = 0
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
                self._take(line)

    def _take(self, line: str) -> None:
        try:  # a line cut by a kill, or edited by hand into something else, is passed over
            e = json.loads(line)
            action = int(e["action"])
            if e["op"] == "move":
                move = Move(action, str(e["from"]), str(e["to"]), int(e["size"]), int(e["mtime_ns"]), int(e["ino"]))
                parts(move.frm)  # a crop's path, and a file of a class folder: nothing else is ever moved back
                if len(parts(move.to)) != 3 or not move.to.startswith(TRAINING + "/"):
                    return
                self.moves.setdefault(action, []).append(move)
            elif e["op"] == "skip":
                self.skips.append(str(e["from"]))
            elif e["op"] == "undo":
                self.undone.add(int(e["of"]))
            self.last = max(self.last, action)
        except (ValueError, KeyError, TypeError, Refused):
            return

    def write(self, events: list[dict]) -> None:
        """Append `events` and wait for the disk: a move is logged before its old name goes."""
        text = "".join(json.dumps(e, ensure_ascii=True) + "\n" for e in events)
        with open(self.path, "a+", encoding="utf-8", errors="surrogateescape") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            size = os.fstat(f.fileno()).st_size
            if size and os.pread(f.fileno(), 1, size - 1) != b"\n":  # a kill cut the last line
                text = "\n" + text
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        for line in text.splitlines():
            self._take(line)

    def next_action(self) -> int:
        return self.last + 1

    def undoable(self) -> int | None:
        """The newest move action not undone."""
        return next((a for a in sorted(self.moves, reverse=True) if a not in self.undone), None)

    def pending_moves(self) -> list[Move]:
        return [m for a, ms in self.moves.items() if a not in self.undone for m in ms]


def free_name(folder: Path, name: str) -> str:
    """`name`, or `stem-2.ext`, `-3`... : the first that no file in `folder` has, case ignored
    (on a disk that ignores case, `A.jpg` would be `a.jpg`)."""
    taken = {folded(n) for n in os.listdir(folder)}
    stem, dot, ext = name.rpartition(".") if "." in name.lstrip(".") else (name, "", "")
    candidate, n = name, 1
    while folded(candidate) in taken:
        n += 1
        candidate = f"{stem}-{n}{dot}{ext}"
    return candidate


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while chunk := fa.read(1 << 20):
            if chunk != fb.read(len(chunk)):
                return False
    return True


def link_in(src: Path, folder: Path, name: str, exact: bool = False) -> Path:
    """A new name for `src` in `folder`, never over a file: `name` or the first free `-N`. exact:
    `name` even where another file's differs only in case (undo: a crop back under its own name)."""
    while True:
        free = exact and not os.path.lexists(folder / name)  # a disk that ignores case says it exists
        target = folder / (name if free else free_name(folder, name))
        try:
            os.link(src, target, follow_symlinks=False)
            return target
        except FileExistsError:
            exact = False
            continue  # taken since free_name looked: the next one
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                raise
        return _copy_in(src, target)


def _copy_in(src: Path, target: Path) -> Path:
    """Across file systems (no hard link): a copy under a temporary name, then linked to a free name."""
    tmp = target.with_name(temporaries.temp_name(target.name))
    try:
        shutil.copy2(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        while True:
            try:
                os.link(tmp, target)
                return target
            except FileExistsError:
                target = target.with_name(free_name(target.parent, target.name))
    finally:
        tmp.unlink(missing_ok=True)


def release(old: Path, new: Path) -> None:
    """Remove the old name of a moved crop, once the new one holds the very file or the same bytes."""
    if _same(os.lstat(old), os.lstat(new)) or _same_bytes(old, new):
        os.unlink(old)


def recover(log: Log, crops_root: Path, samples: Path) -> int:
    """Finish the moves a kill interrupted: a crop logged as moved whose old name still holds it."""
    done = 0
    for move in log.pending_moves():
        try:
            old, new = below(crops_root, move.frm), below(samples, move.to)
            if _same(os.lstat(old), os.lstat(new)) or (os.lstat(new).st_ino == move.ino and _same_bytes(old, new)):
                os.unlink(old)
                done += 1
        except (Refused, OSError):
            continue  # not both there (the usual case), or not ours to touch
    return done


def adopt(log: Log, crops: list, crops_root: Path, samples: Path) -> int:
    """Finish the moves a kill cut between the link and its log line: a file of a class folder that
    no logged move names and that is also a listed crop (one file, two names). The key was pressed:
    the move is logged, as an action undo can take back, and the crop's old name goes."""
    logged = {m.to for m in log.pending_moves()}
    linked: dict[tuple[int, int], list[str]] = {}
    try:
        for folder in os.scandir(samples / TRAINING):
            if folder.is_dir(follow_symlinks=False):
                for entry in os.scandir(folder.path):
                    to = f"{TRAINING}/{folder.name}/{entry.name}"
                    if entry.is_file(follow_symlinks=False) and to not in logged:
                        st = entry.stat(follow_symlinks=False)
                        if st.st_nlink > 1:
                            linked.setdefault((st.st_dev, st.st_ino), []).append(to)
    except OSError:
        return 0
    inodes = {ino for _, ino in linked}
    events, action = [], log.next_action()
    for crop in crops:
        if crop.ino in inodes:
            try:
                st = os.lstat(crops_root / crop.rel)
            except OSError:
                continue
            if len(names := linked.get((st.st_dev, st.st_ino), [])) == 1:  # two class folders: no guess which
                events.append({"action": action, "op": "move", "from": crop.rel, "to": names[0], "size": st.st_size,
                               "mtime_ns": st.st_mtime_ns, "ino": st.st_ino, "time": now()})  # fmt: skip
    if events:
        log.write(events)
    return recover(log, crops_root, samples) if events else 0


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
