"""Which crops belong together, so that a split never puts one group on both sides.

Crops of one video are frames 1/30 s apart; crops of one MegaDetector image or of one camera's
burst are near copies. A split that trains on some and tests on others reports figures that are
too kind. So the hold-out (createdocs, no Testing folder) and the validation split (train) hash a
crop's GROUP key instead of its own name, and a whole group falls on one side.

--group-by picks the key of a crop, from its path inside its class folder alone (the validation
split sees only the records' paths):
  name    the video or image of the names meerkat writes: clips' `<video>_<frame>_<i>` (also
          DeepMeerkat's `171021AA_20161_1.0`), the detections crops' `<image>[_frame000123]_<i>`;
  folder  the first sub-folder under the class folder (one folder a camera or site);
  auto    name where the name parses, else the sub-folder, else the file itself (the default);
  none    the file itself: the split of meerkat before grouping, byte for byte.
A crop without a group (name: a name that does not parse; folder: a file directly in the class
folder) is a group of its own. Keys ignore case, as one video typed `171115AA` and `171115aa` is.

A name is read the coarser way where two readings fit: `IMG_1234_0` is frame 1234 of a video
`IMG`, not detection 0 of an image `IMG_1234`; a frame number is written without leading zeros,
so `IMG_0001_0` is the image's. Grouping too much only costs a few groups; too little leaks.
"""

import hashlib
import logging
import re
from collections import defaultdict

from meerkat.core import atomic
from meerkat.core.names import folded

log = logging.getLogger(__name__)

MODES = ("auto", "name", "folder", "none")

# Meerkat's crop names, the stem without its extension; the group is the part before the frame or index.
_NAMES = (
    re.compile(r"(?P<group>.+?)(?:_[0-9a-f]{8})?_frame\d{6,}_\d+"),  # detections: a video's frame
    re.compile(r"(?P<group>.+)_(?:0|[1-9]\d*)_(?:\d+(?:\.0)?|nan)"),  # clips and DeepMeerkat: video_frame_i
    re.compile(r"(?P<group>.+)_(?:0|[1-9]\d?)"),  # detections: an image's detection (index < 100)
)


def name_group(file_name: str) -> str | None:
    """The video or image a crop name of meerkat's says the crop came from; None if it is no such name."""
    stem, dot, _ = file_name.rpartition(".")
    stem = stem if dot else file_name
    for pattern in _NAMES:
        found = pattern.fullmatch(stem)
        if found:
            return found["group"]
    return None


def group_of(inside: str, mode: str) -> str | None:
    """The group key of the crop at `inside` (its path inside its class folder, with "/"), or None
    when it is a group of its own."""
    if mode == "none":
        return None
    parts = inside.split("/")
    found = name_group(parts[-1]) if mode in ("auto", "name") else None
    if found is None and mode in ("auto", "folder") and len(parts) > 1:
        found = f"{parts[0]}/"  # a folder's key cannot be a file name's group (no name ends in "/")
    return None if found is None else folded(found)


def inside_class_folders(paths: list[str]) -> list[str]:
    """Each path inside its class folder, for a set of crops whose class folders share one parent
    (Training/ or Testing/, as createdocs lists them): the folder common to all the paths is that
    parent, and the first folder below it the class folder. Paths are split at "/" only, so that a
    URI (`gs://b/...`) or a mix of absolute and relative paths is read as written."""
    split = [p.split("/") for p in paths]
    common = len(split[0]) - 1 if split else 0  # the folders of one path; never its file name
    for parts in split[1:]:
        common = next((i for i, (a, b) in enumerate(zip(split[0][:common], parts, strict=False)) if a != b), common)
        common = min(common, len(parts) - 1)
    return ["/".join(parts[common + 1 :]) if len(parts) > common + 1 else parts[-1] for parts in split]


def digest(seed: int, key: str) -> bytes:
    """The hash that places a group: sha256 of `seed/key`."""
    return hashlib.sha256(f"{seed}/{key}".encode(**atomic.TEXT)).digest()


def hold_out(keys: list[str], seed: int, every: int, both_sides: bool) -> list[bool] | None:
    """Which crops of one class are held out: the groups whose hash is 0 modulo `every` (1 in
    `every`). `both_sides`: each side gets a group at least (the first by hash is held out, the
    last trained on), and None for a class of one group, which cannot be split by group."""
    digests = {key: digest(seed, key) for key in set(keys)}
    held = {key for key, d in digests.items() if int.from_bytes(d[:8], "big") % every == 0}
    if both_sides:
        if len(digests) < 2:
            return None
        ranked = sorted(digests, key=digests.__getitem__)
        if not held:
            held = {ranked[0]}
        elif len(held) == len(digests):
            held.discard(ranked[-1])
    return [key in held for key in keys]


def pick(keys: list[str | None], uris: list[str], seed: int, size: int) -> list[int] | None:
    """`size` crops of one class, or as close to it as whole groups allow: the groups ranked by
    sha256(seed/key), a crop without a group (None) by sha256(seed/its file name), ties by the first
    URI; each taken while the total stays within `size`, and when none fits the smallest. None for a
    class of fewer than two groups, or one that taking a group would empty. Crops without a group
    are taken exactly: the first `size` by hash."""
    members = defaultdict(list)
    for i, key in enumerate(keys):
        members[(key, None) if key is not None else (uris[i].rsplit("/", 1)[-1], i)].append(i)
    if len(members) < 2:
        return None
    ranked = sorted(members, key=lambda g: (digest(seed, g[0]), min(uris[i] for i in members[g])))
    held, total = [], 0
    for group in ranked:
        if total + len(members[group]) <= size:
            held.append(group)
            total += len(members[group])
    if not held:
        held = [min(ranked, key=lambda g: len(members[g]))]
    index = sorted(i for group in held for i in members[group])
    return index if len(index) < len(keys) else None


def keys_of(paths: list[str], mode: str) -> list[str | None]:
    """The group key of each crop of a set listed by its paths (None: a group of its own)."""
    return [group_of(p, mode) for p in inside_class_folders(paths)]


def shared(a: list[str | None], b: list[str | None]) -> list[str]:
    """The group keys found in both lists, sorted."""
    return sorted(({k for k in a if k is not None}) & {k for k in b if k is not None})
