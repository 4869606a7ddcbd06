"""meerkat's temporaries: every output is written under one, beside its target, then renamed.

A temporary is named `.NAME.HOST.PID.RANDOM.TAG.meerkat-tmp`, TAG a checksum of the rest of the
name: a mark no person picks, so only meerkat's own temporaries are ever cleaned (a user's
`.notes.v2.1.tmp` never is). Its writer holds a lock on it (locks.py) while it works, so a cleaner
tells a dead process's leftover from a live array task's work in progress, on any node.
"""

import hashlib
import os
import re
import secrets
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

from meerkat.core.locks import same_file, try_lock

MARK = ".meerkat-tmp"
_TEMP = re.compile(r"\.(.+)\.([0-9a-f]{12})" + re.escape(MARK), re.DOTALL)


def _tag(stem: str) -> str:
    return hashlib.sha256(b"meerkat temporary\0" + os.fsencode(stem)).hexdigest()[:12]


def temp_name(name: str) -> str:
    """`.NAME.HOST.PID.RANDOM.TAG.meerkat-tmp`, TAG a checksum of the rest: a name no person picks.
    Host and pid say who wrote it; the random part keeps two writers (containers with one host name
    and pid 1 each) apart. A long NAME is cut, with a hash of the whole, to stay under NAME_MAX."""
    if len(os.fsencode(name)) > 100:
        digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
        while len(os.fsencode(name)) > 90:
            name = name[:-1]
        name = f"{name}~{digest}"
    stem = f"{name}.{socket.gethostname()[:64]}.{os.getpid()}.{secrets.token_hex(4)}"
    return f".{stem}.{_tag(stem)}{MARK}"


def is_temp(path) -> bool:
    """Whether `path` is named as a temporary of meerkat's (a user's `.notes.v2.1.tmp` is not)."""
    m = _TEMP.fullmatch(Path(path).name)
    return bool(m) and m[2] == _tag(m[1])


@contextmanager
def held(path: Path, make_dir: bool):
    """A locked temporary beside `path`, removed unless the block renamed it into place. Dead
    writers' temporaries in that folder go first."""
    remove_stale(path.parent)
    while True:
        tmp = path.with_name(temp_name(path.name))
        if make_dir:
            tmp.mkdir()
            try:
                fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                continue  # another task's cleaner deleted it before we could lock it: take another name
        else:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        if try_lock(fd) is not False and same_file(fd, tmp):
            break
        os.close(fd)  # a cleaner locked it in the instant before us, and deletes it or did: take another name
    try:
        yield tmp
    finally:
        discard(tmp)  # still locked, so no cleaner races us
        os.close(fd)


def discard(tmp: Path) -> None:
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def _open_to_lock(tmp: Path) -> int:
    try:
        return os.open(tmp, os.O_RDWR | os.O_NOFOLLOW)  # NFS locks a file exclusively only for a writer
    except (IsADirectoryError, PermissionError):
        return os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)


def remove_stale(folder) -> int:
    """Delete the temporaries in `folder` whose writer is gone: a live writer (another array task,
    on any node) still holds its temporary's lock, and one we cannot tell about is left alone."""
    removed = 0
    try:
        entries = sorted(n for n in os.listdir(folder) if n.endswith(MARK))
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
                discard(tmp)
                removed += 1
        finally:
            os.close(fd)
    return removed
