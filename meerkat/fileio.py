"""Atomic outputs, and the rule that guards every delete and replace.

Every file and folder meerkat writes appears whole or not at all: it is written under a temporary
name beside its target, then renamed. The temporary holds a lock while it is written (locks.py),
so a cleaner can tell a dead process's leftover from a live array task's work in progress.

meerkat deletes or replaces only what it can show it wrote. Each folder it writes into holds
`.meerkat-owned`, the names of the entries meerkat put there (appended, never rewritten, so a
kill cannot lose it). A file is meerkat's when its folder's list names it; a folder is meerkat's
when its list names everything inside it, recursively. Anything else in the way is an error that
names it: `--force` redoes meerkat's work, it never removes a user's file.
"""

import errno
import fcntl
import os
import re
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

from meerkat.errors import MeerkatError
from meerkat.locks import try_lock

OWNED = ".meerkat-owned"
_TEMP = re.compile(r"^\..+\.[^.]+\.\d+\.tmp$")


def _temp_sibling(path: Path) -> Path:
    # Same folder as the target, so the final rename never crosses a file system; host and pid in
    # the name, so array tasks on several nodes writing into one shared folder never collide.
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")


def _listed(folder: Path) -> set[str]:
    try:
        return set((folder / OWNED).read_text(encoding="utf-8").splitlines())
    except (FileNotFoundError, NotADirectoryError):
        return set()


def record(*paths) -> None:
    """Note in each path's folder that meerkat wrote it (before it appears: a kill in between
    leaves a name with nothing behind it, never a file meerkat cannot claim)."""
    by_folder: dict[Path, list[str]] = {}
    for p in map(Path, paths):
        by_folder.setdefault(p.parent, []).append(p.name)
    for folder, names in by_folder.items():
        with open(folder / OWNED, "a+", encoding="utf-8") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX)  # array tasks append to one list
            except OSError:
                pass  # no locks on this file system: appends of a line are still whole in practice
            f.seek(0)
            new = [n for n in dict.fromkeys(names) if n not in set(f.read().splitlines())]
            if new:
                f.write("".join(f"{n}\n" for n in new))


def _record_if_managed(folder: Path) -> None:
    # A folder is meerkat's by its own list; its parent needs to name it only when meerkat manages
    # that parent too. So no list appears in a user's folder just because an output went below it.
    if (folder.parent / OWNED).is_file():
        record(folder)


def is_temp(path: Path) -> bool:
    return bool(_TEMP.match(path.name))


def not_ours(path) -> Path | None:
    """The first thing at or under `path` that meerkat cannot show it wrote; None if all of it is meerkat's."""
    path = Path(path)
    if not os.path.lexists(path):
        return None
    if path.is_dir() and not path.is_symlink():
        listed = _listed(path)
        if not (path / OWNED).is_file():
            return min(path.iterdir(), default=None)  # a folder meerkat did not make: its first entry
        for child in sorted(path.iterdir()):
            if child.name == OWNED or is_temp(child):
                continue
            if child.name not in listed:
                return child
            found = not_ours(child) if child.is_dir() and not child.is_symlink() else None
            if found:
                return found
        return None
    return None if path.name in _listed(path.parent) else path


def check_ours(path, what: str = "") -> None:
    """Refuse, naming the file, to replace or delete something meerkat did not write."""
    found = not_ours(path)
    if found is None:
        return
    what = f" of {what}" if what else ""
    if found.is_dir() and not found.is_symlink():
        problem = f"{found} is in the way{what}: it holds files that meerkat did not write"
    else:
        problem = f"{found} is in the way{what}: meerkat did not write it"
    raise MeerkatError(
        f"{problem}; move it elsewhere or choose another output folder (meerkat never deletes a file it did not write)"
    )


def remove(path, what: str = "") -> None:
    """Delete a file or folder meerkat wrote; anything else there is an error that names it."""
    path = Path(path)
    check_ours(path, what)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def _held_temp(path: Path, make_dir: bool):
    """A locked temporary beside `path`, removed unless the block renamed it into place."""
    tmp = _temp_sibling(path)
    _remove_temp(tmp)  # this very name can only be an earlier process of ours with a recycled pid
    if make_dir:
        tmp.mkdir()
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
    else:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try_lock(fd)
        yield tmp
    finally:
        os.close(fd)
        _remove_temp(tmp)


def _remove_temp(tmp: Path) -> None:
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    elif os.path.lexists(tmp):
        tmp.unlink()


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    ensure_dir(path.parent)
    check_ours(path)  # before the work, not after it
    with _held_temp(path, make_dir=False) as tmp:
        yield tmp
        check_ours(path)
        record(path)
        os.replace(tmp, path)


@contextmanager
def atomic_open(path, mode="w", **kwargs):
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f


def write_text(path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _claim_tree(root: Path) -> None:
    """List everything under `root` (a tree this process just wrote) as meerkat's."""
    for folder, dirs, files in os.walk(root):
        names = [n for n in dirs + files if n != OWNED]
        if names:
            record(*(Path(folder) / n for n in names))
        else:
            (Path(folder) / OWNED).touch()


@contextmanager
def atomic_dir(path, what: str = ""):
    """Yield a temporary folder; on success it takes the place of `path`, which must be missing,
    empty, or a folder meerkat wrote (then the old one is deleted)."""
    path = Path(path)
    ensure_dir(path.parent)
    check_ours(path, what)  # before the work, not after it
    with _held_temp(path, make_dir=True) as tmp:
        yield tmp
        _claim_tree(tmp)
        check_ours(path)
        _record_if_managed(path)
        if path.is_dir() and any(path.iterdir()):
            old = _temp_sibling(path.with_name(path.name + "-old"))
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)  # onto nothing, or onto an empty folder


def ensure_dir(path) -> Path:
    """Create `path` (and parents) or fail with a message saying which folder and why.

    Folders it creates are marked as meerkat's; existing ones are left as they are.
    """
    path = Path(path)
    try:
        missing = [p for p in (path, *path.parents) if not p.exists()][::-1]
        for p in missing:
            try:
                p.mkdir()
            except FileExistsError:
                if not p.is_dir():
                    raise
                continue  # another worker made it first
            (p / OWNED).touch()
            _record_if_managed(p)
        probe = path / f".meerkat-write-test.{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise MeerkatError(f"cannot write to {path}: {describe_os_error(e)}") from e
    return path


def describe_os_error(e: OSError) -> str:
    """One line for an OSError, with the fix a user would try first."""
    hints = {
        errno.EACCES: "permission denied; choose another output folder or fix its permissions "
        "(in a container: --user $(id -u):$(id -g))",
        errno.EPERM: "operation not permitted; choose another output folder",
        errno.EROFS: "the file system is read-only; mount the output folder writable",
        errno.ENOSPC: "no space left on the device; free some space or choose another output folder",
        errno.EDQUOT: "disk quota exceeded; free some space or choose another output folder",
        errno.ENOTDIR: "a file stands where a folder is needed; remove it or choose another path",
    }
    return hints.get(e.errno, e.strerror or str(e))


def remove_stale_temps(folder) -> int:
    """Delete the temporaries in `folder` whose writer is gone: a live writer (another array task,
    on any node) still holds its temporary's lock, and one we cannot tell about is left alone."""
    folder = Path(folder)
    removed = 0
    for tmp in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not is_temp(tmp):
            continue
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:
            continue
        try:
            if try_lock(fd):
                _remove_temp(tmp)
                removed += 1
        finally:
            os.close(fd)
    return removed
