"""What clips and scan are told: motion detection, MegaDetector's detections and the two commands'
options, as frozen dataclasses whose fields are the command-line options (config.py says how).
"""

from dataclasses import dataclass, field, fields
from pathlib import Path

from meerkat.core.config import ADVANCED, MAX_INT, check_shard_options, force_option, option, required
from meerkat.core.errors import UsageError

Region = tuple[int, int, int, int]


def parse_region(text) -> Region:
    """`x,y,w,h` in pixels of the full frame. A ValueError becomes click's usage error (exit 2)."""
    if isinstance(text, tuple):
        return text
    try:
        x, y, w, h = (int(v) for v in str(text).split(","))
    except ValueError:
        raise ValueError(f"a region is x,y,w,h in pixels, e.g. 0,0,320,40; received {text!r}") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise ValueError(f"a region needs x, y >= 0 and a positive width and height; received {text!r}")
    return x, y, w, h


@dataclass(frozen=True)
class MotionConfig:
    """Motion detection and crops, as DeepMeerkat's training mode makes them (clips and scan)."""

    stride: int = option(1, "Process every Nth frame.", "MEERKAT_STRIDE", min=1, max=MAX_INT)
    fps: float | None = option(
        None,
        "Process about F frames per second (sets the stride from the video's frame rate).",
        "MEERKAT_FPS",
        min=0.001,
    )
    min_area: float = option(
        0.01,
        "Keep boxes covering at least this fraction of the frame (DeepMeerkat: 0.01).",
        "MEERKAT_MIN_AREA",
        min=0,
        max=1,
    )
    roi: Region | None = option(
        None,
        "Watch only this region, x,y,w,h (crops are cut from it, as DeepMeerkat does).",
        "MEERKAT_ROI",
        parser=parse_region,
        metavar="X,Y,W,H",
    )
    exclude: list[Region] | None = option(
        None,
        "Ignore motion in this region, x,y,w,h (e.g. a timestamp overlay); repeatable.",
        "MEERKAT_EXCLUDE",
        parser=parse_region,
        metavar="X,Y,W,H",
    )
    motion_scale: float = option(
        1.0,
        "Run the subtractor on the frame scaled by S (0.5: 4x fewer pixels); crops still come from the "
        "full-resolution frame.",
        "MEERKAT_MOTION_SCALE",
        ADVANCED,
        min=0.05,
        max=1.0,
    )
    padding: str = option(
        "deepmeerkat",
        "Crop margin: 'deepmeerkat' (grows with the box's position in the frame, as in your Samples) or "
        "'box' (a fixed fraction of the box).",
        "MEERKAT_PADDING",
        ADVANCED,
    )
    keep_first_frame: bool = option(
        False,
        "Keep the boxes of the subtractor's first frame (DeepMeerkat's full-frame box at frame 2).",
        "MEERKAT_KEEP_FIRST_FRAME",
        ADVANCED,
    )

    def __post_init__(self):
        if self.padding not in ("deepmeerkat", "box"):
            raise UsageError(f"--padding must be deepmeerkat or box, received {self.padding!r}")
        object.__setattr__(self, "exclude", tuple(self.exclude or ()))  # hashable, frozen


@dataclass(frozen=True)
class DetectionsConfig:
    """MegaDetector's boxes instead of motion (clips and scan --detections): which file, which boxes."""

    detections: Path | None = option(
        None,
        "MegaDetector results (.json, format 1.0 to 1.6): crop or classify its boxes instead of VIDEOS.",
        "MEERKAT_DETECTIONS",
    )
    image_root: Path | None = option(
        None, "With --detections: the folder its file paths start from (default: the JSON's folder).",
        "MEERKAT_IMAGE_ROOT",
    )  # fmt: skip
    categories: str | None = option(
        None, "With --detections: the categories to use, ids or names, comma-separated (default: animal).",
        "MEERKAT_CATEGORIES",
    )  # fmt: skip
    detection_threshold: float | None = option(
        None,
        "With --detections: use boxes with conf >= T (default: the file's typical_detection_threshold, else 0.2).",
        "MEERKAT_DETECTION_THRESHOLD",
        min=0,
        max=1,
    )
    path_prefix: list[str] | None = option(
        None,
        "With --detections: read the files whose path in it starts with PREFIX from FOLDER here, PREFIX=FOLDER "
        "(a file written on another machine, e.g. 'C:\\Users\\me\\cams=/data/cams'); repeatable.",
        "MEERKAT_PATH_PREFIX",
        metavar="PREFIX=FOLDER",
    )

    def __post_init__(self):
        if self.detections is None:
            names = ("image_root", "categories", "detection_threshold", "path_prefix")
            given = [n for n in names if getattr(self, n) is not None]
            if given:
                raise UsageError(f"--{given[0].replace('_', '-')} needs --detections FILE")
        if self.categories is not None and not [c for c in self.categories.split(",") if c.strip()]:
            raise UsageError(f"--categories takes ids or names, e.g. 1 or animal,person; received {self.categories!r}")
        for pair in self.path_prefix or ():
            prefix, _, folder = pair.partition("=")
            if not prefix.strip(" /\\") or not folder.strip():
                raise UsageError(
                    f"--path-prefix takes PREFIX=FOLDER, e.g. 'C:\\Users\\me\\cams=/data/cams'; received {pair!r}"
                )

    def category_list(self) -> list[str] | None:
        return [c.strip() for c in self.categories.split(",") if c.strip()] if self.categories else None

    def prefixes(self) -> list[tuple[str, Path]]:
        """--path-prefix as (PREFIX, FOLDER) pairs."""
        return [(prefix, Path(folder)) for prefix, _, folder in (p.partition("=") for p in self.path_prefix or ())]


# Options of motion detection that mean nothing for MegaDetector's boxes (--padding does: it cuts the crops).
MOTION_ONLY = ("stride", "fps", "min_area", "roi", "exclude", "motion_scale", "keep_first_frame")


def _check_source(videos, source: DetectionsConfig, motion: MotionConfig, video_only: dict, first: str = "") -> None:
    """VIDEOS or --detections, one of them; with --detections no option that only videos use.
    `video_only`: the command's own such options, by name, with their values; `first`: the
    arguments before VIDEO... (scan's MODEL, which takes the first one even with its variable set)."""
    if bool(videos) == (source.detections is not None):
        raise UsageError(f"give {first}VIDEO... or --detections FILE" + (", not both" if videos else ""))
    if source.detections is None:
        return
    defaults = {f.name: f.default for f in fields(MotionConfig)}
    given = [n for n in MOTION_ONLY if getattr(motion, n) not in (defaults[n], ())]
    given += [n for n, v in video_only.items() if v]
    if given:
        raise UsageError(
            f"--{given[0].replace('_', '-')} is for videos scanned for motion; leave it out with --detections"
        )


@dataclass(frozen=True, kw_only=True)
class ClipsConfig:
    """clips: videos (or MegaDetector's boxes) -> 299x299 training crops, as DeepMeerkat's training mode writes them."""

    videos: list[Path] | None = option(
        None, "Video files or folders of them (searched recursively).", "MEERKAT_VIDEOS", argument=True
    )
    output: Path = required(
        "Where the crops go: OUTPUT/<video stem>/<stem>_<frame>_<i>.jpg (--detections: OUTPUT/crops/, crops.csv).",
        "MEERKAT_CLIPS_OUTPUT",
    )
    motion: MotionConfig = field(default_factory=MotionConfig)
    megadetector: DetectionsConfig = field(default_factory=DetectionsConfig)
    max_crops_per_video: int | None = option(
        None, "Stop a video after this many crops.", "MEERKAT_MAX_CROPS_PER_VIDEO", min=1, max=MAX_INT
    )
    model: Path | None = option(
        None,
        "An earlier model/: also sort the crops into OUTPUT/suggested/<class>/ ({Positives,Negatives} for "
        "DeepMeerkat's pair), with scores.csv.",
        "MEERKAT_CLIPS_MODEL",
    )
    threshold: float = option(
        0.5, "With --model of DeepMeerkat's pair: suggest Positives at score_positive >= T (else: the top class).",
        "MEERKAT_THRESHOLD", min=0, max=1,
    )  # fmt: skip
    workers: int = option(
        1, "With --detections: images decoded at once (threads).", "MEERKAT_WORKERS", min=1, max=MAX_INT
    )
    by_class: bool = option(
        False, "With --detections: sort the crops into crops/<class>/ by the file's own species labels (SpeciesNet's, "
        "AddaxAI's); unsure ones into crops/unclassified/.", "MEERKAT_BY_CLASS",
    )  # fmt: skip
    class_threshold: float | None = option(
        None, "With --by-class: a crop takes its label when its score >= T (default: the file's "
        "typical_classification_threshold, else 0.5).", "MEERKAT_CLASS_THRESHOLD", min=0, max=1,
    )  # fmt: skip
    force: bool = force_option()

    def __post_init__(self):
        _check_source(self.videos, self.megadetector, self.motion, {"max_crops_per_video": self.max_crops_per_video})
        if self.megadetector.detections is None and self.workers != 1:
            raise UsageError("--workers in clips needs --detections FILE: videos are cut one at a time")
        if self.megadetector.detections is None and self.by_class:
            raise UsageError("--by-class needs --detections FILE: it sorts by the labels in that file")
        if self.class_threshold is not None and not self.by_class:
            raise UsageError("--class-threshold needs --by-class")


@dataclass(frozen=True, kw_only=True)
class ScanConfig:
    """scan: a trained model applied to videos (or to MegaDetector's boxes); what it sees the animal in is kept."""

    model: Path = required("The model/ folder written by run or train.", "MEERKAT_SCAN_MODEL", argument=True)
    videos: list[Path] | None = option(
        None, "Video files or folders of them (searched recursively).", "MEERKAT_VIDEOS", argument=True
    )
    output: Path = required(
        "Where the results go: OUTPUT/scan.csv, OUTPUT/detections.json (MegaDetector's format) "
        "and, for videos, OUTPUT/<video stem>/.",
        "MEERKAT_SCAN_OUTPUT",
    )
    motion: MotionConfig = field(default_factory=MotionConfig)
    megadetector: DetectionsConfig = field(default_factory=DetectionsConfig)
    threshold: float = option(
        0.5,
        "Keep a frame when a box has score_positive >= T (DeepMeerkat kept boxes at 0.05); for a model of other "
        "classes, score_animal: 1 - the background classes' scores.",
        "MEERKAT_THRESHOLD",
        min=0,
        max=1,
    )
    background: list[str] | None = option(
        None, "The classes that mean nothing here (default: those named like negative, empty, blank, background or "
        "nothing); repeatable.", "MEERKAT_BACKGROUND", metavar="CLASS",
    )  # fmt: skip
    frames: bool = option(True, "Write a JPEG of each kept frame with its boxes drawn.", "MEERKAT_FRAMES")
    batch_size: int = option(64, "Crops per model call.", "MEERKAT_SCAN_BATCH_SIZE", ADVANCED, min=1, max=MAX_INT)
    workers: int = option(
        1,
        "Videos scanned at once on this machine; with --detections, images decoded at once (threads).",
        "MEERKAT_WORKERS",
        min=1,
        max=MAX_INT,
    )
    shard_index: int | None = option(
        None,
        "Which 1/N of the videos (or of --detections' boxes) this task scans (default: $SLURM_ARRAY_TASK_ID, else 0).",
        "MEERKAT_SHARD_INDEX",
    )
    num_shards: int | None = option(
        None, "Number of tasks splitting the work (default: $SLURM_ARRAY_TASK_COUNT, else 1).", "MEERKAT_NUM_SHARDS"
    )
    path_map: list[str] | None = option(
        None,
        "Write source_video as the host sees it: CONTAINER=HOST, e.g. /data/Videos=/home/me/videos; repeatable.",
        "MEERKAT_PATH_MAP",
    )
    force: bool = force_option()

    def __post_init__(self):
        _check_source(self.videos, self.megadetector, self.motion, {"path_map": self.path_map}, "MODEL, then ")
        check_shard_options(self.shard_index, self.num_shards)
        for pair in self.path_map or ():
            if "=" not in pair or not pair.split("=", 1)[0]:
                raise UsageError(
                    f"--path-map takes CONTAINER=HOST, e.g. /data/Videos=/home/me/videos; received {pair!r}"
                )
