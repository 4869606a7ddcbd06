"""How meerkat writes: every output appears whole or not at all, and a failed write names its file.

A file or folder is written under a temporary name beside its target (temporaries.py), then
renamed into place, and only over what ownership.py shows meerkat wrote. Inside a temporary
folder, `writing`, `write_file` and `write_csv` turn a full disk or a read-only folder into one
error that names the file, never a JPEG or a row silently missing.
"""

import csv
import errno
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from meerkat.core import faults, ownership, temporaries
from meerkat.core.errors import MeerkatError, describe_os_error
from meerkat.core.locks import try_lock


def _place(tmp: Path, path: Path) -> None:
    """Rename the finished temporary onto `path`; onto nothing, a hard link, so that a file that
    appeared at `path` since the check is refused and not overwritten."""
    try:
        os.link(tmp, path)
        return  # the temporary's name goes as the block ends
    except FileExistsError:
        ownership.check_ours(path)
    except OSError:
        pass  # a file system without hard links
    os.replace(tmp, path)


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    ensure_dir(path.parent)
    ownership.check_ours(path)  # before the work, not after it
    with temporaries.held(path, make_dir=False) as tmp:
        yield tmp
        faults.point("atomic:written")
        ownership.check_ours(path)
        ownership.claim(path, ownership.signature(os.lstat(tmp)), tmp)  # rename keeps inode, size and mtime
        faults.point("atomic:claimed")
        _place(tmp, path)
        faults.point("atomic:placed")


@contextmanager
def atomic_open(path, mode="w", **kwargs):
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f


def write_text(path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


@contextmanager
def atomic_dir(path, what: str = ""):
    """Yield a temporary folder; on success it takes the place of `path`, which must be missing,
    empty, or a folder meerkat wrote (then the old one is deleted)."""
    path = Path(path)
    ensure_dir(path.parent)
    ownership.check_ours(path, what)  # before the work, not after it
    with temporaries.held(path, make_dir=True) as tmp:
        yield tmp
        ownership.claim_tree(tmp)
        ownership.check_ours(path, what)
        ownership.claim_folder(path)
        faults.point("atomic:claimed")
        if path.is_dir() and not path.is_symlink() and any(path.iterdir()):
            _swap_dir(tmp, path)
        else:
            _rename_dir(tmp, path, what)


def _swap_dir(tmp: Path, path: Path) -> None:
    """Put `tmp` in place of meerkat's folder `path`; the old one goes under a locked temporary
    name, so a kill between the two renames leaves a leftover any cleaner may delete."""
    old = path.with_name(temporaries.temp_name(path.name))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try_lock(fd)
        os.replace(path, old)
        faults.point("atomic:old-moved")
        os.replace(tmp, path)
        shutil.rmtree(old)
    finally:
        os.close(fd)


def _rename_dir(tmp: Path, path: Path, what: str = "") -> None:
    try:
        os.replace(tmp, path)  # onto nothing, or onto an empty folder
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            ownership.check_ours(path, what)  # something appeared there since the check: name it
        raise


def _make_dir(path: Path) -> None:
    """Create `path` with its (empty) list inside, atomically: no kill leaves it without one."""
    with temporaries.held(path, make_dir=True) as tmp:
        ownership.start_list(tmp)
        ownership.claim_folder(path)
        faults.point("atomic:folder-ready")
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
    if not ownership.owns(path):
        try:
            ownership.start_list(path)
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
    probe = folder / temporaries.temp_name("write-test")
    probe.touch()
    probe.unlink(missing_ok=True)


# --- checked writes inside a temporary folder ---------------------------------------------------

# A path whose bytes are no UTF-8 (a Latin-1 file name) is written as those very bytes, and read
# back as the same name: for CSVs and lists of names (and a name's bytes, `name.encode(**TEXT)`).
TEXT = {"encoding": "utf-8", "errors": "surrogateescape"}


def shown(text: str) -> str:
    """`text` for what must stay valid UTF-8 (HTML, Markdown, the logs): a byte of a name that is
    not UTF-8, which Python holds as a lone surrogate, is shown as `\\xNN`, the byte it is."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte (a JSON escape): as \\udXXX
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


@contextmanager
def writing(path):
    """Turn a failed write of `path` into an error that names it and says what to do."""
    try:
        yield
    except OSError as e:
        raise MeerkatError(f"cannot write {path}: {describe_os_error(e)}") from e


def write_file(path: Path, data: bytes) -> None:
    with writing(path):
        Path(path).write_bytes(data)


def write_csv(path: Path, rows, header=None) -> None:
    """Rows written by the csv module: a name with a comma or a quote stays one field."""
    with writing(path), open(path, "w", newline="", **TEXT) as f:
        writer = csv.writer(f, lineterminator="\n")
        if header:
            writer.writerow(header)
        writer.writerows(rows)


def jpeg(image, quality: int = 95) -> bytes:
    """`image` as JPEG bytes, the bytes cv2.imwrite would write (its default quality is 95)."""
    import cv2

    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise MeerkatError(f"OpenCV could not encode a {image.shape} image as JPEG; rerun with --debug")
    return data.tobytes()
