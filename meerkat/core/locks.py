"""Locks the kernel releases when their holder dies: a run's output folder, and temporaries in progress.

They are `flock` locks on an open file. A killed process, container or SLURM job holds nothing
afterwards, whatever its pid or host name was, so a rerun never waits on a dead holder. On NFS,
Linux turns `flock` into POSIX locks that the server arbitrates between nodes; a lock of a node
that died is freed when the server notices (NFSv4: after its lease time, 90 s by default). Where
the file system refuses locks (Lustre mounted without `-o flock`, NFS with `nolock`), meerkat
warns and goes on unlocked.
"""

import errno
import fcntl
import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from meerkat.core.errors import MeerkatError

log = logging.getLogger(__name__)

LOCK_NAME = ".meerkat.lock"
# What a file system without lock support answers (ENOLCK: NFS nolock; ENOSYS, EOPNOTSUPP: Lustre;
# EBADF: NFS, whose POSIX locks are exclusive only on a file open for writing, which a folder never is).
UNSUPPORTED = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF}


def try_lock(fd: int) -> bool | None:
    """Take an exclusive lock on `fd` without waiting: True if taken, False if another process
    holds it, None if the file system cannot lock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in UNSUPPORTED:
            return None
        raise


def _read_owner(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def same_file(fd: int, path: Path) -> bool:
    """Whether `fd` is still the file at `path`: a lock on a file since unlinked guards nothing."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


@contextmanager
def output_lock(folder):
    """Hold FOLDER/.meerkat.lock for one run or train; a second live one is refused by name."""
    path = Path(folder) / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        taken = try_lock(fd)
        if taken is False:
            owner = _read_owner(fd)
            os.close(fd)
            raise MeerkatError(
                f"{folder} is in use by another meerkat run (pid {owner.get('pid', '?')} on "
                f"{owner.get('host', '?')}, started {owner.get('started', '?')}); wait for it to finish "
                "or use another output folder"
            )
        if same_file(fd, path):  # the previous holder unlinks the lock file as it ends
            break
        os.close(fd)
    if taken is None:
        log.warning(
            "warning: the file system of %s does not support locks, so a second run on this folder would "
            "not be stopped; make sure only one runs at a time",
            folder,
        )
    previous = _read_owner(fd)
    if previous.get("pid"):
        log.warning(
            "warning: an earlier run on %s (pid %s on %s) ended without finishing; its lock is free, "
            "so this run takes over and reuses what it finished",
            folder,
            previous["pid"],
            previous.get("host", "?"),
        )
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # while still locked: the next run finds no owner to report
        os.close(fd)


@contextmanager
def waiting_lock(path):
    """Hold an exclusive lock on `path`, waiting for it: a short critical section among tasks."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            if e.errno not in UNSUPPORTED:
                raise
        yield
    finally:
        os.close(fd)
