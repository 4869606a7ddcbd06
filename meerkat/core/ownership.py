"""What meerkat may delete or replace: only what it can show it wrote.

- A file is meerkat's while it is the very file meerkat wrote, unchanged: the same inode, size and
  modification time as meerkat's claim says, made when it finished the file (before renaming it
  into place, which keeps all three). A file a user edited, replaced or copied is theirs, even under
  a name meerkat used. The claim is written before the file takes its name: a kill in between leaves
  a claim that matches no file, never a file meerkat cannot claim. Files meerkat goes on writing in
  place (TensorBoard's event files, claimed with `claim_growing`) are claimed by inode alone, so
  they stay meerkat's as they grow. (Not seen: a rewrite in place that keeps the size within one
  tick of the file system's clock; Linux 6.13+ gives ext4, xfs, btrfs and tmpfs ticks finer than that.)
- Where that claim lives depends on whose folder it is. A folder meerkat made, or one the user
  named as an output folder (atomic.output_dir), is meerkat's: it holds `.meerkat-owned`, one line
  per entry meerkat put there, appended and never rewritten, so a kill cannot lose it:
      F <size> <mtime_ns> <inode> <name>    a file meerkat finished
      G <inode> <name>                      a file meerkat writes in place
      D <name>                              a folder (meerkat's by its own list)
  (in names, `\\` is written `\\\\` and a newline `\\n`). Any other folder (the one holding
  `predict --output FILE`, a third party's cache such as ~/.keras/models) gets no hidden file:
  the same `F ...`/`G ...` claim goes into the file's own extended attribute `user.meerkat`, or,
  where the file system has none (NFSv3, tmpfs before Linux 6.6, FAT), into meerkat's state folder
  ($XDG_STATE_HOME/meerkat/owned-files, by the file's absolute path). Where neither can be
  written, meerkat says so: the file is written, and a rerun refuses to replace it. Any of the
  three claims proves a file meerkat's.
- A folder is meerkat's when it holds a list and everything in it is meerkat's, recursively.

Anything else in the way is an error that names it: `--force` redoes meerkat's work, it never
removes a user's file.
"""

import errno
import fcntl
import logging
import os
import re
import shutil
import stat
from pathlib import Path

from meerkat.core.errors import MeerkatError, describe_os_error
from meerkat.core.locks import LOCK_NAME
from meerkat.core.temporaries import is_temp

log = logging.getLogger(__name__)

OWNED = ".meerkat-owned"
XATTR = "user.meerkat"
_PROOF = re.compile(r"F \d+ \d+ \d+|G \d+|D")
_LINE = re.compile(r"^(F \d+ \d+ \d+|G \d+|D) (.*)$", re.MULTILINE)

NOT_WRITTEN = "meerkat did not write it"
CHANGED = "it is not the file meerkat wrote there (it was changed or replaced since)"
LEGACY = "an older meerkat listed it by name only, so meerkat cannot tell it from a file of yours"
FOREIGN_DIR = "it holds files that meerkat did not write"


def _escape(name: str) -> str:
    return name.replace("\\", "\\\\").replace("\n", "\\n")


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], text) if "\\" in text else text


def _parse(text: str) -> dict[str, set[str]]:
    """A list's text -> {name: its proofs ("F size mtime inode", "G inode", "D")}."""
    found: dict[str, set[str]] = {}
    for proof, name in _LINE.findall(text):
        found.setdefault(name, set()).add(proof)
    return {_unescape(k): v for k, v in found.items()} if "\\" in text else found


def _listed(text: str | None, name: str) -> set[str]:
    """The proofs a list's text holds for one name: found by search, without parsing the list."""
    found: set[str] = set()
    needle = f" {_escape(name)}\n"
    i = text.find(needle) if text else -1
    while i >= 0:
        proof = text[text.rfind("\n", 0, i) + 1 : i]
        if _PROOF.fullmatch(proof):  # not the tail of a longer name with a space in it
            found.add(proof)
        i = text.find(needle, i + 1)
    return found


def _why(text: str | None, name: str, proofs: set[str]) -> str:
    if proofs:
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


def signature(st: os.stat_result, grows: bool = False) -> str | None:
    if stat.S_ISDIR(st.st_mode):
        return "D"
    if not stat.S_ISREG(st.st_mode):
        return None  # links, pipes: never meerkat's
    return f"G {st.st_ino}" if grows else f"F {st.st_size} {st.st_mtime_ns} {st.st_ino}"


def _proofs(st: os.stat_result) -> set[str]:
    """The proofs that would show this very file is meerkat's (none for a link or a pipe)."""
    return {signature(st), signature(st, grows=True)} if stat.S_ISREG(st.st_mode) else set()


def owns(folder: Path) -> bool:
    return (folder / OWNED).is_file()


def is_bookkeeping(name: str) -> bool:
    """Whether `name` is one of meerkat's own bookkeeping files, which are never data: a folder's
    list of what meerkat wrote there, or the lock of a run on its output folder."""
    return name in (OWNED, LOCK_NAME)


def _registry() -> Path | None:
    """meerkat's own list of the files it wrote into folders it does not own (without xattrs)."""
    try:
        base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    except RuntimeError:  # no HOME and no passwd entry
        return None
    return Path(base) / "meerkat" / "owned-files"


def _key(path: Path) -> str:
    return os.path.join(os.path.realpath(path.parent), path.name)


def claim(path: Path, proof: str, file: Path | None = None) -> None:
    """Record that `file` (already at `path`, or a temporary about to be renamed there) is meerkat's,
    by its `proof` (what signature() gives for it)."""
    if owns(path.parent):
        _append(path.parent / OWNED, [f"{proof} {_escape(path.name)}"])
        return
    try:
        os.setxattr(file or path, XATTR, proof.encode(), follow_symlinks=False)
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
        _append(registry, [f"{proof} {_escape(_key(path))}"])
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
    return _listed(_read(registry), _key(path)) if registry else set()


def claim_folder(folder: Path) -> None:
    # A folder is meerkat's by its own list; its parent names it only where meerkat owns the parent.
    if owns(folder.parent):
        _append(folder.parent / OWNED, [f"D {_escape(folder.name)}"])


def claim_growing(*paths) -> None:
    """Claim files meerkat created and goes on writing in place (TensorBoard's event files): by
    inode, so they stay meerkat's as they grow. Claim each as soon as it exists."""
    for p in map(Path, paths):
        claim(p, signature(os.lstat(p), grows=True))


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
    listed = _listed(text, path.name)
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
    # A name may hold a newline: escaped, as Python writes it, so that the error stays one line.
    shown = re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m[0])[1:-1], str(found[0]))
    raise MeerkatError(
        f"{shown} is in the way{what}: {found[1]}; move it elsewhere or choose another output folder "
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


def claim_tree(root: Path) -> None:
    """List everything under `root` (a tree this process just finished) as meerkat's."""
    for folder, dirs, files in os.walk(root):
        lines = []
        for name in sorted(dirs + files):
            proof = signature(os.lstat(os.path.join(folder, name)))
            if proof and name != OWNED:
                lines.append(f"{proof} {_escape(name)}")
        _append(Path(folder) / OWNED, lines)


def start_list(folder: Path) -> None:
    """Make `folder` meerkat's: it holds an (empty) list of what meerkat puts there."""
    _append(folder / OWNED, [])
