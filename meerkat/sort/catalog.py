"""The crops to sort: every image below CROPS, found once, in a stable order.

CROPS is a folder of crops, or the output folder of `meerkat clips` (crops/ beside crops.csv,
perhaps suggested/): then the crops are those of crops/, and suggested/ (links to the same files)
and the tables are read for guesses only. Links are never followed: a linked file or folder is left
out and counted, as are hidden files and names that are no image's (classfolder.reason_by_name).
"""

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from meerkat.core.errors import MeerkatError
from meerkat.samples.classfolder import reason_by_name

CLIPS_TABLE = "crops.csv"
SUGGESTED, SCORES = "suggested", "scores.csv"  # clips --model's suggestions: links to crops listed elsewhere


@dataclass
class Crop:
    id: int
    rel: str  # below CROPS, "/"-separated
    size: int
    mtime_ns: int
    ino: int
    guess: str | None = None  # the class folder a guess names
    score: float | None = None  # the guess's score
    margin: float | None = None  # top score - second score: small is unsure
    state: str = "pending"  # pending, moved, gone
    pos: float = 0.0  # place in the order shown; skipping moves a crop to the end
    moved_to: str | None = None


@dataclass
class Listing:
    root: Path  # where the crops are: CROPS, or CROPS/crops for clips' output
    crops: list[Crop] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (path below CROPS, reason)


def crops_root(crops: Path) -> Path:
    """CROPS/crops for clips' output folder, else CROPS."""
    inner = crops / "crops"
    if (crops / CLIPS_TABLE).is_file() and inner.is_dir() and not inner.is_symlink():
        return inner
    return crops


def list_crops(crops: Path) -> Listing:
    """The image files below CROPS (or its crops/), by name; what else is there, with why it is left out."""
    if not crops.is_dir():
        raise MeerkatError(f"crops folder {crops} not found; pass the folder of crops to sort")
    root = crops_root(crops)
    listing = Listing(root)
    prefix = "" if root == crops else "crops/"
    found = []
    suggestions = crops / SUGGESTED if (crops / SUGGESTED / SCORES).is_file() else None
    for top, dirs, files in os.walk(root):
        rel_top = os.path.relpath(top, root)
        rel_top = "" if rel_top == "." else rel_top.replace(os.sep, "/") + "/"
        kept = []
        for name in sorted(dirs):
            if os.path.islink(os.path.join(top, name)):
                listing.left_out.append((prefix + rel_top + name, "a link to a folder, never followed"))
            elif not name.startswith(".") and Path(top, name) != suggestions:
                kept.append(name)
        dirs[:] = kept
        for name in files:
            rel = rel_top + name
            if why := reason_by_name(name):
                if not name.startswith("."):  # hidden files are no one's crops: not worth a line
                    listing.left_out.append((prefix + rel, why))
                continue
            try:
                st = os.lstat(os.path.join(top, name))
            except OSError as e:
                listing.left_out.append((prefix + rel, f"cannot be read ({e.strerror})"))
                continue
            if not stat.S_ISREG(st.st_mode):
                why = "a link, never followed" if stat.S_ISLNK(st.st_mode) else "not a file"
                listing.left_out.append((prefix + rel, why))
                continue
            found.append((rel, st))
    found.sort(key=lambda f: natural(f[0]))
    listing.crops = [Crop(i, rel, st.st_size, st.st_mtime_ns, st.st_ino, pos=i) for i, (rel, st) in enumerate(found)]
    return listing


_DIGITS = re.compile(r"(\d+)")


def natural(rel: str) -> tuple:
    """Video and frame order: `v2/f9` before `v10/f10`, digits compared as numbers."""
    # One flat tuple, three items a part: it orders as the list of parts' tuples would, and sorting
    # 20,000 names by it takes 0.14 s where a list of tuples took 0.22 s (the crops of one video
    # share a long prefix, which every comparison walks through).
    key = []
    for i, p in enumerate(_DIGITS.split(rel)):  # odd parts are the digits: '²' is isdigit() but no number
        key += (0, int(p), p) if i % 2 else (1, 0, p.casefold())
    return tuple(key)


def restat(root: Path, crop: Crop) -> str | None:
    """Why `crop` is no longer the file listed (gone, or changed on disk), or None."""
    try:
        st = os.lstat(root / crop.rel)
    except FileNotFoundError:
        return "is gone from the crops folder"
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns, st.st_ino) != (crop.size, crop.mtime_ns, crop.ino):
        return "changed on disk since the page listed it"
    return None
