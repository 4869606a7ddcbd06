"""The only paths the sorting page touches: below CROPS or SAMPLES, reached without a link.

A path from a request or from the move log is a relative path, checked a part at a time: no
absolute path, no empty part, no `.` or `..`, no NUL, and no part that is a symlink on disk, so
that neither a crafted URL (`..%2f..%2fetc`) nor a link planted among the crops reads or moves a
file elsewhere. Class names for new folders get the same care: one plain folder name each.
"""

import os
import stat
from pathlib import Path

from meerkat.core.names import folded
from meerkat.samples.classfolder import reason_by_name

MAX_NAME_BYTES = 100
_UNSAFE = set('/\\:*?"<>|') | {chr(c) for c in range(32)} | {"\x7f"}


class Refused(Exception):
    """A path or name the page may not use; the message says why, for the page to show."""


def parts(rel: str) -> list[str]:
    """`rel` split into its parts, or Refused: absolute, `..`, `.`, empty parts, NUL."""
    if not isinstance(rel, str) or not rel:
        raise Refused("no path given")
    if "\x00" in rel:
        raise Refused("a path with a NUL byte")
    if rel.startswith("/") or os.path.isabs(rel):
        raise Refused(f"an absolute path ({rel[:80]!r})")
    pieces = rel.split("/")
    if any(p in ("", ".", "..") for p in pieces):
        raise Refused(f"a path that is not plainly below its folder ({rel[:80]!r})")
    return pieces


def below(root: Path, rel: str, must_exist: bool = True) -> Path:
    """`root`/`rel`, refused unless every part is a real folder or file (no link) below `root`."""
    path = Path(root)
    pieces = parts(rel)
    for i, piece in enumerate(pieces):
        path = path / piece
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if must_exist or i < len(pieces) - 1:
                raise Refused(f"{rel!r} is not there") from None
            break
        except OSError as e:
            raise Refused(f"{rel!r} cannot be read ({e.strerror})") from None
        if stat.S_ISLNK(st.st_mode):
            raise Refused(f"{rel!r} goes through a link, which the page never follows")
        if i < len(pieces) - 1 and not stat.S_ISDIR(st.st_mode):
            raise Refused(f"{rel!r} is not below a folder")
    real_root = os.path.realpath(root)
    if not os.path.realpath(path).startswith(real_root.rstrip(os.sep) + os.sep):
        raise Refused(f"{rel!r} leads out of its folder")
    return path


def check_class_name(name, existing: list[str]) -> str:
    """A new class folder's name as typed, stripped; Refused when it cannot be one plain folder
    on every system a Samples folder travels to, or is an existing class in another case."""
    if not isinstance(name, str):
        raise Refused("no class name given")
    name = name.strip()
    if not name:
        raise Refused("a class needs a name")
    bad = sorted(set(name) & _UNSAFE)
    if bad or name in (".", "..") or any("\ud800" <= c <= "\udfff" for c in name):
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in bad) or name
        raise Refused(f"a class name cannot hold {shown!r}; use letters, digits, spaces, - or _")
    if reason_by_name(name + ".jpg"):  # a leading dot: createdocs would skip the folder as hidden
        raise Refused(f"class name {name!r} starts with a dot; such folders are skipped as hidden")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise Refused(f"class name is longer than {MAX_NAME_BYTES} bytes")
    for other in existing:
        if folded(other) == folded(name) and other != name:
            raise Refused(f"class {other!r} exists; {name!r} differs only in case")
    return name
