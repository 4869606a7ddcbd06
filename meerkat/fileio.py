"""Atomic outputs: every file and folder meerkat writes appears whole or not at all."""

import errno
import json
import logging
import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

from meerkat.errors import MeerkatError

log = logging.getLogger(__name__)


def _temp_sibling(path: Path) -> Path:
    # Same folder as the target, so the final rename never crosses a file system; host and pid in
    # the name, so array tasks on several nodes writing into one shared folder never collide.
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    ensure_dir(path.parent)
    tmp = _temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_open(path, mode="w", **kwargs):
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f


def write_text(path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


@contextmanager
def atomic_dir(path):
    """Yield a temporary folder; on success it replaces `path` (an older `path` is removed)."""
    path = Path(path)
    ensure_dir(path.parent)
    tmp = _temp_sibling(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        old = tmp.with_suffix(".old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_dir(path) -> Path:
    """Create `path` (and parents) or fail with a message saying which folder and why."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
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
    """Delete temporaries that killed processes left in `folder` (call only while holding its lock)."""
    removed = 0
    for p in Path(folder).glob(".*.tmp") if Path(folder).is_dir() else []:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def run_lock(folder):
    """Hold `folder/.meerkat.lock` (owner's pid and host) for one run; a dead owner's lock is taken over."""
    folder = ensure_dir(folder)
    lock = folder / ".meerkat.lock"
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(lock.read_text())
            except (OSError, ValueError):
                owner = {}
            if owner.get("host") == me["host"] and not _alive(int(owner.get("pid", 0))):
                log.warning("warning: removing the stale lock of pid %s, which is gone: %s", owner.get("pid"), lock)
                lock.unlink(missing_ok=True)
                continue
            raise MeerkatError(
                f"{folder} is in use by another meerkat run (pid {owner.get('pid', '?')} on {owner.get('host', '?')}); "
                f"wait for it to finish, use another output folder, or delete {lock} if that process is gone"
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
