"""Atomic outputs, and the rule that guards every delete and replace.

Every file and folder meerkat writes appears whole or not at all: it is written under a temporary
name beside its target, then renamed. The temporary holds a lock while it is written (locks.py),
so a cleaner can tell a dead process's leftover from a live array task's work in progress.

meerkat deletes or replaces only what it can show it wrote:

- A file is meerkat's while it is the very file meerkat wrote, unchanged: the same inode, size and
  modification time as meerkat recorded when it finished the file (before renaming it into place,
  which keeps all three). A file a user edited, replaced or copied is theirs, even under a name
  meerkat used. The record is written before the file takes its name: a kill in between leaves a
  record that matches no file, never a file meerkat cannot claim. Files meerkat goes on writing in
  place (TensorBoard's event files, claimed with `record`) are recorded by inode alone, so they
  stay meerkat's as they grow. (Not seen: a rewrite in place that keeps the size within one tick
  of the file system's clock; Linux 6.13+ gives ext4, xfs, btrfs and tmpfs ticks finer than that.)
- Where that record lives depends on whose folder it is. A folder meerkat made, or one the user
  named as an output folder (`output_dir`), is meerkat's: it holds `.meerkat-owned`, one line per
  entry meerkat put there, appended and never rewritten, so a kill cannot lose it:
      F <size> <mtime_ns> <inode> <name>    a file meerkat finished
      G <inode> <name>                      a file meerkat writes in place
      D <name>                              a folder (meerkat's by its own list)
  (in names, `\\` is written `\\\\` and a newline `\\n`). Any other folder (the one holding
  `predict --output FILE`, a third party's cache such as ~/.keras/models) gets no hidden file:
  the same `F ...`/`G ...` record goes into the file's own extended attribute `user.meerkat`, or,
  where the file system has none (NFSv3, tmpfs before Linux 6.6, FAT), into meerkat's state folder
  ($XDG_STATE_HOME/meerkat/owned-files, by the file's absolute path). Where neither can be
  written, meerkat says so: the file is written, and a rerun refuses to replace it. Any of the
  three records proves a file meerkat's.
- A folder is meerkat's when it holds a list and everything in it is meerkat's, recursively.

Anything else in the way is an error that names it: `--force` redoes meerkat's work, it never
removes a user's file. Temporaries carry a mark no person picks (a checksum of the rest of their
name), and only marked ones whose writer is gone are cleaned: by `remove_stale_temps`, and by every
later write into the same folder, so a killed write leaves nothing behind for long, even in a
user's folder.
"""

import errno
import fcntl
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import stat
from contextlib import contextmanager
from pathlib import Path

from meerkat import faults
from meerkat.errors import MeerkatError
from meerkat.locks import try_lock

log = logging.getLogger(__name__)

OWNED = ".meerkat-owned"
XATTR = "user.meerkat"
_MARK = ".meerkat-tmp"
_TEMP = re.compile(r"\.(.+)\.([0-9a-f]{12})" + re.escape(_MARK), re.DOTALL)
_RECORD = re.compile(r"F \d+ \d+ \d+|G \d+|D")
_LINE = re.compile(r"^(F \d+ \d+ \d+|G \d+|D) (.*)$", re.MULTILINE)

NOT_WRITTEN = "meerkat did not write it"
CHANGED = "it is not the file meerkat wrote there (it was changed or replaced since)"
LEGACY = "an older meerkat listed it by name only, so meerkat cannot tell it from a file of yours"
FOREIGN_DIR = "it holds files that meerkat did not write"


# --- temporaries -------------------------------------------------------------------------------


def _tag(stem: str) -> str:
    return hashlib.sha256(b"meerkat temporary\0" + os.fsencode(stem)).hexdigest()[:12]


def _temp_name(name: str) -> str:
    """`.NAME.HOST.PID.RANDOM.TAG.meerkat-tmp`, TAG a checksum of the rest: a name no person picks.
    Host and pid say who wrote it; the random part keeps two writers (containers with one host name
    and pid 1 each) apart. A long NAME is cut, with a hash of the whole, to stay under NAME_MAX."""
    if len(os.fsencode(name)) > 100:
        digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
        while len(os.fsencode(name)) > 90:
            name = name[:-1]
        name = f"{name}~{digest}"
    stem = f"{name}.{socket.gethostname()[:64]}.{os.getpid()}.{secrets.token_hex(4)}"
    return f".{stem}.{_tag(stem)}{_MARK}"


def is_temp(path) -> bool:
    """Whether `path` is named as a temporary of meerkat's (a user's `.notes.v2.1.tmp` is not)."""
    m = _TEMP.fullmatch(Path(path).name)
    return bool(m) and m[2] == _tag(m[1])


@contextmanager
def _held_temp(path: Path, make_dir: bool):
    """A locked temporary beside `path`, removed unless the block renamed it into place. Dead
    writers' temporaries in that folder go first."""
    remove_stale_temps(path.parent)
    while True:
        tmp = path.with_name(_temp_name(path.name))
        if make_dir:
            tmp.mkdir()
            fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
        else:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        if try_lock(fd) is not False:
            break
        os.close(fd)  # a cleaner locked it in the instant before us and deletes it: take another name
    try:
        yield tmp
    finally:
        _remove_temp(tmp)  # still locked, so no cleaner races us
        os.close(fd)


def _remove_temp(tmp: Path) -> None:
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def _open_to_lock(tmp: Path) -> int:
    try:
        return os.open(tmp, os.O_RDWR | os.O_NOFOLLOW)  # NFS locks a file exclusively only for a writer
    except (IsADirectoryError, PermissionError):
        return os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)


def remove_stale_temps(folder) -> int:
    """Delete the temporaries in `folder` whose writer is gone: a live writer (another array task,
    on any node) still holds its temporary's lock, and one we cannot tell about is left alone."""
    removed = 0
    try:
        entries = sorted(n for n in os.listdir(folder) if n.endswith(_MARK))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for name in entries:
        tmp = Path(folder) / name
        if not is_temp(tmp):
            continue
        try:
            fd = _open_to_lock(tmp)
        except OSError:
            continue
        try:
            if try_lock(fd):
                _remove_temp(tmp)
                removed += 1
        finally:
            os.close(fd)
    return removed


# --- records of what meerkat wrote -------------------------------------------------------------


def _escape(name: str) -> str:
    return name.replace("\\", "\\\\").replace("\n", "\\n")


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], text) if "\\" in text else text


def _parse(text: str) -> dict[str, set[str]]:
    """A list's text -> {name: its records ("F size mtime inode", "G inode", "D")}."""
    found: dict[str, set[str]] = {}
    for record, name in _LINE.findall(text):
        found.setdefault(name, set()).add(record)
    return {_unescape(k): v for k, v in found.items()} if "\\" in text else found


def _records(text: str | None, name: str) -> set[str]:
    """The records a list's text holds for one name: found by search, without parsing the list."""
    found: set[str] = set()
    needle = f" {_escape(name)}\n"
    i = text.find(needle) if text else -1
    while i >= 0:
        record = text[text.rfind("\n", 0, i) + 1 : i]
        if _RECORD.fullmatch(record):  # not the tail of a longer name with a space in it
            found.add(record)
        i = text.find(needle, i + 1)
    return found


def _why(text: str | None, name: str, records: set[str]) -> str:
    if records:
        return CHANGED
    if text and f"\n{_escape(name)}\n" in f"\n{text}":  # a bare name: a list from before signatures
        return LEGACY
    return NOT_WRITTEN


def _read(path) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _append(path: Path, lines: list[str]) -> None:
    with open(path, "a+", encoding="utf-8", errors="surrogateescape", newline="") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX)  # array tasks append to one list
        except OSError:
            pass  # no locks on this file system: appends of a line are still whole in practice
        size = os.fstat(f.fileno()).st_size
        cut = size and os.pread(f.fileno(), 1, size - 1) != b"\n"  # a kill mid-line: start afresh
        f.write("\n" * bool(cut) + "".join(f"{line}\n" for line in lines))


def _signature(st: os.stat_result, grows: bool = False) -> str | None:
    if stat.S_ISDIR(st.st_mode):
        return "D"
    if not stat.S_ISREG(st.st_mode):
        return None  # links, pipes: never meerkat's
    return f"G {st.st_ino}" if grows else f"F {st.st_size} {st.st_mtime_ns} {st.st_ino}"


def _proofs(st: os.stat_result) -> set[str]:
    """The records that would show this very file is meerkat's (none for a link or a pipe)."""
    return {_signature(st), _signature(st, grows=True)} if stat.S_ISREG(st.st_mode) else set()


def _owns(folder: Path) -> bool:
    return (folder / OWNED).is_file()


def _registry() -> Path | None:
    """meerkat's own list of the files it wrote into folders it does not own (without xattrs)."""
    try:
        base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    except RuntimeError:  # no HOME and no passwd entry
        return None
    return Path(base) / "meerkat" / "owned-files"


def _key(path: Path) -> str:
    return os.path.join(os.path.realpath(path.parent), path.name)


def _claim(path: Path, signature: str, file: Path | None = None) -> None:
    """Record that `file` (already at `path`, or a temporary about to be renamed there) is meerkat's."""
    if _owns(path.parent):
        _append(path.parent / OWNED, [f"{signature} {_escape(path.name)}"])
        return
    try:
        os.setxattr(file or path, XATTR, signature.encode(), follow_symlinks=False)
        return
    except AttributeError:  # not Linux
        why = "this system has no extended attributes"
    except OSError as e:
        why = f"{path.parent} keeps no extended attributes ({describe_os_error(e)})"
    registry = _registry()
    try:
        if registry is None:
            raise OSError(errno.ENOENT, "there is no home folder")
        registry.parent.mkdir(parents=True, exist_ok=True)  # meerkat's own state folder: no list needed
        _append(registry, [f"{signature} {_escape(_key(path))}"])
    except OSError as e:
        log.warning(
            "warning: meerkat cannot mark %s as its own: %s, and its state folder %s is not writable (%s); "
            "a rerun will refuse to replace it (set XDG_STATE_HOME to a writable folder)",
            path,
            why,
            registry.parent if registry else "~/.local/state/meerkat",
            describe_os_error(e),
        )


def _tagged(path: Path) -> str | None:
    try:
        return os.getxattr(path, XATTR, follow_symlinks=False).decode()
    except (OSError, UnicodeDecodeError, AttributeError):
        return None


def _registered(path: Path) -> set[str]:
    registry = _registry()
    return _records(_read(registry), _key(path)) if registry else set()


def _claim_folder(folder: Path) -> None:
    # A folder is meerkat's by its own list; its parent names it only where meerkat owns the parent.
    if _owns(folder.parent):
        _append(folder.parent / OWNED, [f"D {_escape(folder.name)}"])


def record(*paths) -> None:
    """Claim files meerkat created and goes on writing in place (TensorBoard's event files): by
    inode, so they stay meerkat's as they grow. Claim each as soon as it exists."""
    for p in map(Path, paths):
        _claim(p, _signature(os.lstat(p), grows=True))


def _is_proven(path: Path, st: os.stat_result, listed: set[str]) -> bool:
    proofs = _proofs(st)
    return bool(proofs & listed) or _tagged(path) in proofs or bool(proofs & _registered(path))


def _unproven_dir(folder: Path) -> tuple[Path, str] | None:
    text = _read(folder / OWNED)
    if text is None:  # a folder meerkat did not make: its first entry
        first = min(folder.iterdir(), default=None)
        return (first, FOREIGN_DIR if first.is_dir() else NOT_WRITTEN) if first else None
    entries = _parse(text)
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name == OWNED or is_temp(entry.name):
            continue
        path, listed = Path(entry.path), entries.get(entry.name, set())
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            if "D" not in listed:
                return path, LEGACY if not listed and _why(text, entry.name, listed) == LEGACY else FOREIGN_DIR
            found = _unproven_dir(path)
            if found:
                return found
        elif not _is_proven(path, st, listed):
            return path, _why(text, entry.name, listed)
    return None


def _unproven(path: Path) -> tuple[Path, str] | None:
    """The first thing at or under `path` that meerkat cannot show it wrote, and why."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISDIR(st.st_mode):
        return _unproven_dir(path)
    text = _read(path.parent / OWNED)
    listed = _records(text, path.name)
    return None if _is_proven(path, st, listed) else (path, _why(text, path.name, listed))


def not_ours(path) -> Path | None:
    """The first thing at or under `path` that meerkat cannot show it wrote; None if all of it is meerkat's."""
    found = _unproven(Path(path))
    return found[0] if found else None


def check_ours(path, what: str = "") -> None:
    """Refuse, naming the file, to replace or delete something meerkat did not write."""
    found = _unproven(Path(path))
    if found is None:
        return
    what = f" of {what}" if what else ""
    raise MeerkatError(
        f"{found[0]} is in the way{what}: {found[1]}; move it elsewhere or choose another output folder "
        "(meerkat never deletes a file it did not write)"
    )


def remove(path, what: str = "") -> None:
    """Delete a file or folder meerkat wrote; anything else there is an error that names it."""
    path = Path(path)
    check_ours(path, what)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# --- atomic outputs ----------------------------------------------------------------------------


def _place(tmp: Path, path: Path) -> None:
    """Rename the finished temporary onto `path`; onto nothing, a hard link, so that a file that
    appeared at `path` since the check is refused and not overwritten."""
    try:
        os.link(tmp, path)
        return  # the temporary's name goes as the block ends
    except FileExistsError:
        check_ours(path)
    except OSError:
        pass  # a file system without hard links
    os.replace(tmp, path)


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    ensure_dir(path.parent)
    check_ours(path)  # before the work, not after it
    with _held_temp(path, make_dir=False) as tmp:
        yield tmp
        faults.point("fileio:written")
        check_ours(path)
        _claim(path, _signature(os.lstat(tmp)), tmp)  # rename keeps inode, size and mtime
        faults.point("fileio:claimed")
        _place(tmp, path)
        faults.point("fileio:placed")


@contextmanager
def atomic_open(path, mode="w", **kwargs):
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f


def write_text(path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _claim_tree(root: Path) -> None:
    """List everything under `root` (a tree this process just finished) as meerkat's."""
    for folder, dirs, files in os.walk(root):
        lines = []
        for name in sorted(dirs + files):
            signature = _signature(os.lstat(os.path.join(folder, name)))
            if signature and name != OWNED:
                lines.append(f"{signature} {_escape(name)}")
        _append(Path(folder) / OWNED, lines)


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
        check_ours(path, what)
        _claim_folder(path)
        faults.point("fileio:claimed")
        if path.is_dir() and not path.is_symlink() and any(path.iterdir()):
            _swap_dir(tmp, path)
        else:
            _rename_dir(tmp, path, what)


def _swap_dir(tmp: Path, path: Path) -> None:
    """Put `tmp` in place of meerkat's folder `path`; the old one goes under a locked temporary
    name, so a kill between the two renames leaves a leftover any cleaner may delete."""
    old = path.with_name(_temp_name(path.name))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try_lock(fd)
        os.replace(path, old)
        faults.point("fileio:old-moved")
        os.replace(tmp, path)
        shutil.rmtree(old)
    finally:
        os.close(fd)


def _rename_dir(tmp: Path, path: Path, what: str = "") -> None:
    try:
        os.replace(tmp, path)  # onto nothing, or onto an empty folder
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            check_ours(path, what)  # something appeared there since the check: name it
        raise


def _make_dir(path: Path) -> None:
    """Create `path` with its (empty) list inside, atomically: no kill leaves it without one."""
    with _held_temp(path, make_dir=True) as tmp:
        _append(tmp / OWNED, [])
        _claim_folder(path)
        faults.point("fileio:folder-ready")
        try:
            os.rename(tmp, path)
        except OSError:
            if not path.is_dir():
                raise  # another worker made it first, or else the error says what is there


def ensure_dir(path) -> Path:
    """Create `path` (and parents) or fail with a message saying which folder and why.

    Folders it creates are meerkat's (they hold its list); existing ones are left as they are.
    """
    path = Path(path)
    try:
        for p in [p for p in (path, *path.parents) if not p.exists()][::-1]:
            _make_dir(p)
        _probe(path)
    except OSError as e:
        raise MeerkatError(f"cannot write to {path}: {describe_os_error(e)}") from e
    return path


def output_dir(path) -> Path:
    """The folder a user named for meerkat's outputs (run OUTPUT, clips/scan --output, train
    --output-dir): made if missing, and meerkat's from now on, so it holds meerkat's list."""
    path = ensure_dir(path)
    if not _owns(path):
        try:
            _append(path / OWNED, [])
        except OSError as e:
            raise MeerkatError(f"cannot write to {path}: {describe_os_error(e)}") from e
    return path


def _probe(folder: Path) -> None:
    """Fail now if `folder` is not writable. An unnamed file where the file system has them, so
    that no kill leaves a name behind; else a marked temporary that any cleaner may delete."""
    try:
        os.close(os.open(folder, os.O_WRONLY | os.O_TMPFILE, 0o600))
        return
    except AttributeError:
        pass  # not Linux
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
    probe = folder / _temp_name("write-test")
    probe.touch()
    probe.unlink(missing_ok=True)


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
