"""The crops of one class folder (Training/Positives): the image files inside it, and why each other
file found there is left out.

A class folder's crops are the files inside it, whatever the links on the way. A link that leads
out of the folder (into the other class, up to Training/, into Testing/, anywhere else) is not
followed: it would file crops under a label their own folder does not give them (`ln -s ..
Positives/loop` made every negative a positive too). It is listed with where it leads. A link to
another place inside the folder is followed, and a file reached by several paths is listed once,
by its path without links, so that its side of a hold-out split is the same whichever way in.

The names left out are those of imagefiles.list_images, which lists the folders given to predict.
"""

import os
from pathlib import Path

from meerkat.core.ownership import is_bookkeeping
from meerkat.core.settings import IMAGE_EXTENSIONS

LEAVES = "a link that leaves"  # the reason's start, for counting such links
DANGLING = "not a file (a dangling link)"


def reason_by_name(name: str) -> str | None:
    """Why a file of this name is no crop; None for an image's name."""
    if name.startswith("._"):  # macOS leaves .DS_Store and ._name resource forks next to real crops
        return "macOS resource fork (._ file)"
    if name.startswith("."):
        return "hidden file"
    suffix = Path(name).suffix
    if suffix.lower() not in IMAGE_EXTENSIONS:
        return f"not an image extension ({suffix})" if suffix else "no extension"
    return None


def inside(path: str, folder: str) -> bool:
    """Whether the real path `path` is `folder` or below it (both resolved)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def list_crops(folder: Path, shown: str) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The crops in `folder` as absolute paths, in the order of a sorted walk, and the files left
    out with their reasons; `shown` names the folder in those reasons (Training/Positives)."""
    top, real_top = os.path.abspath(folder), os.path.realpath(folder)
    crops, left_out, seen_dirs, seen_files = [], [], set(), set()

    def leaves(path: str) -> str | None:
        real = os.path.realpath(path)
        return None if inside(real, real_top) else f"{LEAVES} {shown}/: it leads to {real}"

    for root, dirs, files in os.walk(top, followlinks=True):
        real_root = os.path.realpath(root)
        if real_root in seen_dirs:  # walked already: a loop, or a second way in through a link
            dirs[:] = []
            continue
        seen_dirs.add(real_root)
        kept = []
        for name in sorted(d for d in dirs if not d.startswith(".")):
            path = os.path.join(root, name)
            if os.path.islink(path) and (why := leaves(path)):
                left_out.append((Path(path), why))
            else:
                kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            if is_bookkeeping(name):
                continue  # not a crop, nor a file of the user's (a demo-samples folder has meerkat's lists)
            path = os.path.join(root, name)
            link = os.path.islink(path)
            why = reason_by_name(name) or (None if os.path.isfile(path) else DANGLING)
            if why is None and link:
                why = leaves(path)
            if why is not None:
                left_out.append((Path(path), why))
                continue
            real = os.path.realpath(path) if link else os.path.join(real_root, name)
            if real not in seen_files:
                seen_files.add(real)
                crops.append(Path(top, os.path.relpath(real, real_top)))
    return crops, left_out
