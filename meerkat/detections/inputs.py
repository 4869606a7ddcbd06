"""What clips and scan --detections share about their input: loading the file with the options,
and saying which images or videos could not be used.

An image or video that cannot be used (missing, not decodable, a video shorter than its frame
numbers) or a selected box that is not a box in its image is skipped and listed with its reason;
the others go on. When no image or video with a selected box could be used at all, that is an
error: the file is likely given the wrong --image-root.
"""

import logging
import ntpath
import posixpath
from dataclasses import dataclass

from meerkat.core import nesting
from meerkat.core.errors import MeerkatError
from meerkat.core.video_config import DetectionsConfig
from meerkat.megadetector import read

log = logging.getLogger(__name__)


def load(cfg: DetectionsConfig) -> read.Results:
    """The file as the options select its boxes, and one line saying what was selected."""
    results = read.load(cfg.detections, cfg.image_root, cfg.category_list(), cfg.detection_threshold, cfg.prefixes())
    names = ", ".join(f"{results.detection_categories.get(c, c)} ({c})" for c in sorted(results.categories))
    entries = results.entries
    usable = [n for n, failed in zip(entries.boxes, entries.failed, strict=True) if not failed]
    failed = sum(entries.failed)
    log.info(
        "%s: %d files, %d boxes of %s at conf >= %g in %d of them%s",
        results.path,
        len(entries),
        sum(usable),
        names,
        results.threshold,
        sum(map(bool, usable)),
        f"; MegaDetector failed on {failed} files (listed as skipped)" if failed else "",
    )
    if not sum(usable):
        log.warning("warning: %s has no box of %s at conf >= %g; nothing to do", results.path, names, results.threshold)
    return results


def check_apart(cfg: DetectionsConfig, output) -> None:
    """--output outside --image-root and each --path-prefix FOLDER (the crops and frames meerkat
    writes are images that MegaDetector, run there again, would take for the camera's), and
    holding none of them, nor the file itself, which would be where meerkat writes its own
    detections.json. The JSON's own folder, the default root, often holds a whole project: an
    output beside the file is allowed."""
    inputs = [("--detections", cfg.detections)]
    if cfg.image_root is not None:
        inputs.append(("--image-root", cfg.image_root))
    inputs += [("--path-prefix's FOLDER", folder) for _, folder in cfg.prefixes()]
    nesting.check_apart(output, inputs, "--output")


@dataclass(frozen=True)
class Skipped:
    file: str
    detection: int | None  # the box's index in its entry; None: the whole image or video
    reason: str


def problems(entry) -> list[Skipped]:
    """The selected boxes of `entry` that the reader found unusable (read.Entry.problems)."""
    return [Skipped(entry.file, p.detection, p.reason) for p in entry.problems]


def failed(entry, failure: str | None) -> Skipped | None:
    """`entry` skipped whole: MegaDetector failed on it, or meerkat could not read it (`failure`)."""
    if entry.failure is not None:
        return Skipped(entry.file, None, megadetector_failure(entry))
    return Skipped(entry.file, None, failure) if failure else None


def megadetector_failure(entry) -> str:
    return f"MegaDetector: {entry.failure}"


def warn(skipped: list[Skipped], listed_in) -> None:
    """One warning line with the count and where they are listed, then the first ten."""
    if not skipped:
        return
    log.warning("warning: skipped %d images, videos or boxes (listed in %s):", len(skipped), listed_in)
    for s in skipped[:10]:
        where = f" box {s.detection}" if s.detection is not None else ""
        log.warning("  %s%s: %s", s.file, where, s.reason)
    if len(skipped) > 10:
        log.warning("  ... and %d more", len(skipped) - 10)


def check_some_usable(needed: int, failed: list[Skipped], results: read.Results) -> None:
    """One error when every image or video with a selected box failed, naming the first and why,
    and the option that would find them."""
    if needed and len(failed) >= needed:
        first = failed[0]
        raise MeerkatError(
            f"none of the {needed} images or videos with boxes in {results.path} could be used; the first, "
            f"{first.file}: {first.reason} ({_hint([f.file for f in failed])})"
        )


def _hint(files: list[str]) -> str:
    """Where to look: the paths are the machine's MegaDetector ran on (absolute), or relative to a folder."""
    absolute = [f for f in files if read.is_absolute(f)]
    if not absolute:
        return "is --image-root the folder MegaDetector ran on?"
    flavour = ntpath if any("\\" in f or ntpath.splitdrive(f)[0] for f in absolute) else posixpath
    try:
        common = flavour.commonpath([flavour.dirname(f) for f in absolute])
    except ValueError:  # on two drives
        common = flavour.dirname(absolute[0])
    return (
        f"its path is absolute, from the machine MegaDetector ran on: give the folder that is {common} there "
        f"as it is here, --path-prefix '{common}=/folder/here'"
    )
