"""What each stage is told: one frozen dataclass per stage, each option's default written once here.

A field's metadata is its command-line option: help text, the MEERKAT_* variable that sets it,
the --help panel, click's range checks. cli.py turns these fields into Typer options, so that
precedence is click's and the same for every option: the command line, then the MEERKAT_*
variable, then the default below. The rules that span fields live in `__post_init__`.
"""

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

from meerkat.core.errors import UsageError

ADVANCED = "Advanced"
# The bounds of counts and sizes without a natural one: what an int32 (OpenCV, TensorFlow) holds.
MAX_INT = 2**31 - 1
MAX_SEED = 2**32 - 1  # numpy's legacy seeding, which Keras' set_random_seed uses


def option(default, help: str, env: str, panel: str | None = None, argument: bool = False, **click):
    """A config field that is also a CLI option (or positional `argument`), set by `env` too."""
    meta = {"help": help, "env": env, "panel": panel, "argument": argument, "click": _open_range(click)}
    return field(default=default, metadata=meta)


def _open_range(click: dict) -> dict:
    """Typer shows and checks closed ranges only (`[0<=x<=1]`). A float's range open at an end
    (click's `min_open`, `max_open`) is shown as click shows one (`[0<=x<1]`); `__post_init__` checks it."""
    low_open, high_open = click.pop("min_open", False), click.pop("max_open", False)
    if not (low_open or high_open):
        return click
    low, high = click.pop("min", None), click.pop("max", None)
    lower = "" if low is None else f"{low}{'<' if low_open else '<='}"
    upper = "" if high is None else f"{'<' if high_open else '<='}{high}"
    return {**click, "metavar": f"<float range> [{lower}x{upper}]"}


def required(help: str, env: str, argument: bool = False, **click):
    return field(metadata={"help": help, "env": env, "panel": None, "argument": argument, "click": click})


def build(cls, values: dict):
    """`cls` from the entries of `values` that name its fields (the CLI's parsed options), by
    keyword; a field that is itself a config is built the same way from the same values."""
    kwargs = {}
    for f in fields(cls):
        if is_dataclass(f.type):
            kwargs[f.name] = build(f.type, values)
        elif f.name in values:
            kwargs[f.name] = values[f.name]
    return cls(**kwargs)


# Options that several stages share; a function each, as a dataclass field belongs to one class.
def _seed():
    return option(
        42, "Seed for sampling, splitting and training: same seed, same result.", "MEERKAT_SEED", min=0, max=MAX_SEED
    )


def _group_by():
    return option(
        "auto",
        "Keep crops that belong together on one side of the hold-out and validation splits: 'name' (the video or "
        "image of meerkat's crop names), 'folder' (the sub-folder under the class folder: a camera or site), "
        "'auto' (name, else folder, else the file), or 'none' (each file alone, as before).",
        "MEERKAT_GROUP_BY",
    )


def _check_group_by(group_by: str) -> None:
    if group_by not in ("auto", "name", "folder", "none"):
        raise UsageError(f"--group-by must be auto, name, folder or none, received {group_by!r}")


def _force():
    return option(False, "Redo everything, even pieces an earlier run finished with the same inputs.", "MEERKAT_FORCE")


def _cache_dir():
    return option(
        None,
        "Embedding cache folder (default: OUTPUT/cache, or cache/ beside the shards).",
        "MEERKAT_CACHE_DIR",
        ADVANCED,
    )


def _check_shard_options(shard_index: int | None, num_shards: int | None) -> None:
    # Below their bounds they are checked with SLURM's values (slurm.check_shard); past them no
    # shard name holds them.
    for name, value in (("--shard-index", shard_index), ("--num-shards", num_shards)):
        if value is not None and value > MAX_INT:
            raise UsageError(f"{name} must be at most {MAX_INT}, received {value}")


def _embed_batch_size():
    return option(
        None,
        "Images per backbone call in preprocess (default: 32 on the CPU, 128 on GPUs).",
        "MEERKAT_EMBED_BATCH_SIZE",
        ADVANCED,
        min=1,
        max=MAX_INT,
    )


@dataclass(frozen=True)
class DocsConfig:
    """createdocs: which crops make the training and testing lists."""

    samples: Path = required("Folder with Training/ and Testing/.", "MEERKAT_SAMPLES", argument=True)
    output: Path = option(
        Path("output"), "Run folder: docs/ (and, for run, records/, model/, logs/, report/).", "MEERKAT_OUTPUT"
    )
    balance: bool = option(
        False,
        "Undersample training negatives to the number of positives, as DeepMeerkat did. Off by default: "
        "--class-weights balanced keeps every crop and weights the loss instead.",
        "MEERKAT_BALANCE",
    )
    group_by: str = _group_by()
    seed: int = _seed()

    def __post_init__(self):
        _check_group_by(self.group_by)


@dataclass(frozen=True)
class BackboneConfig:
    """The frozen ImageNet network that embeds the crops, and where it computes."""

    backbone: str = option(
        "efficientnet_v2_b0",
        "Frozen ImageNet backbone: efficientnet_v2_b0, mobilenet_v2 or inception_v3.",
        "MEERKAT_BACKBONE",
    )
    alpha: float | None = option(
        None, "Width of mobilenet_v2 (0.35 to 1.4; default 1.0).", "MEERKAT_ALPHA", min=0.35, max=1.4
    )
    weights: str = option(
        "imagenet",
        "Backbone weights: 'imagenet' (baked-in or cached file, else Keras' download), a .h5 file, "
        "or 'none' (random; smoke tests only).",
        "MEERKAT_WEIGHTS",
    )
    precision: str = option(
        "auto",
        "Backbone compute precision: float32, bfloat16, float16, or auto (mixed float16 on GPUs, else float32).",
        "MEERKAT_PRECISION",
        ADVANCED,
    )
    gpus: int | None = option(
        None,
        "Use the first N visible GPUs (0: the CPU only). Default: all; preprocess splits each batch over them.",
        "MEERKAT_GPUS",
        ADVANCED,
        min=0,
        max=MAX_INT,
    )


@dataclass(frozen=True)
class PreprocessConfig:
    """preprocess: one docs CSV (or one worker's share of it) into a shard of embeddings."""

    input_path: Path = required("Docs CSV (path,label) to embed.", "MEERKAT_INPUT_PATH")
    input_dict: Path = required("dict.txt written by createdocs.", "MEERKAT_INPUT_DICT")
    output_path: str = required("Prefix of the shards: PREFIX-00000-of-00001.tfrecord.gz.", "MEERKAT_OUTPUT_PATH")
    embed_batch_size: int | None = _embed_batch_size()
    cache_dir: Path | None = _cache_dir()
    shard_index: int | None = option(
        None, "Which 1/N of the CSV this worker embeds (default: $SLURM_ARRAY_TASK_ID, else 0).", "MEERKAT_SHARD_INDEX"
    )
    num_shards: int | None = option(
        None, "Number of workers splitting the CSV (default: $SLURM_ARRAY_TASK_COUNT, else 1).", "MEERKAT_NUM_SHARDS"
    )

    def __post_init__(self):
        _check_shard_options(self.shard_index, self.num_shards)


@dataclass(frozen=True)
class TrainConfig:
    """Training the head: one hidden layer, dropout, a 2-way softmax, Adam."""

    epochs: int = option(30, "Passes over the training set.", "MEERKAT_EPOCHS", min=1, max=MAX_INT)
    max_steps: int | None = option(
        None, "Train this many batches instead of --epochs.", "MEERKAT_MAX_STEPS", ADVANCED, min=1, max=MAX_INT
    )
    batch_size: int = option(32, "Training batch size.", "MEERKAT_TRAIN_BATCH_SIZE", ADVANCED, min=1, max=MAX_INT)
    learning_rate: float = option(1e-3, "Adam learning rate.", "MEERKAT_LEARNING_RATE", ADVANCED, min=0, min_open=True)
    hidden_units: int = option(
        512, "Units of the head's hidden layer.", "MEERKAT_HIDDEN_UNITS", ADVANCED, min=1, max=MAX_INT
    )
    dropout: float = option(
        0.5, "Dropout after the hidden layer.", "MEERKAT_DROPOUT", ADVANCED, min=0, max=1, max_open=True
    )
    validation_fraction: float = option(
        0.15,
        "Share of each training class held out (seeded, at least 1 image a class) for the per-epoch curves, "
        "early stopping and the choice of the exported epoch; the Testing set is only used for the final "
        "report. 0: train on all and export the last epoch, as before.",
        "MEERKAT_VALIDATION_FRACTION",
        min=0.0,
        max=0.5,
    )
    patience: int = option(
        5,
        "Stop after this many epochs without a lower validation loss (0: train all --epochs); "
        "either way the best epoch is exported.",
        "MEERKAT_PATIENCE",
        min=0,
        max=MAX_INT,
    )
    class_weights: str = option(
        "balanced",
        "'balanced': weight each example's loss by n / (2 * n_class) of the training part, so both classes "
        "count alike however many crops each has (about 1 on a balanced set); 'none': the plain loss.",
        "MEERKAT_CLASS_WEIGHTS",
    )
    group_by: str = _group_by()
    seed: int = _seed()

    def __post_init__(self):
        if self.epochs < 1:
            raise UsageError(f"--epochs must be at least 1, received {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError(f"--max-steps must be at least 1, received {self.max_steps}")
        if self.batch_size < 1 or self.hidden_units < 1:
            raise UsageError("--batch-size and --hidden-units must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"--dropout must be in [0, 1), received {self.dropout}")
        if not self.learning_rate > 0:  # NaN too
            raise UsageError(f"--learning-rate must be positive, received {self.learning_rate}")
        if not 0.0 <= self.validation_fraction <= 0.5:
            raise UsageError(f"--validation-fraction must be in [0, 0.5], received {self.validation_fraction}")
        if self.patience < 0:
            raise UsageError(f"--patience must be at least 0, received {self.patience}")
        if self.class_weights not in ("none", "balanced"):
            raise UsageError(f"--class-weights must be none or balanced, received {self.class_weights!r}")
        _check_group_by(self.group_by)


@dataclass(frozen=True)
class RecordsConfig:
    """train: which preprocessed shards to train and evaluate on, and where the results go."""

    train_data: str = required("Training shards: a preprocess prefix or a glob.", "MEERKAT_TRAIN_DATA")
    eval_data: str = required("Evaluation shards: a preprocess prefix or a glob.", "MEERKAT_EVAL_DATA")
    output_dir: Path = required("Where model/, logs/ and report/ go.", "MEERKAT_OUTPUT_DIR")
    input_dict: Path | None = option(None, "dict.txt to check the records' labels against.", "MEERKAT_INPUT_DICT")
    force: bool = _force()


@dataclass(frozen=True)
class RunConfig:
    """run: the whole job in one output folder (docs.output), or only its training on preprocessed sets."""

    docs: DocsConfig
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    embed_batch_size: int | None = _embed_batch_size()
    cache_dir: Path | None = _cache_dir()
    preprocessed_train_set: str | None = option(
        None, "Skip createdocs and preprocess: train on these shards.", "MEERKAT_PREPROCESSED_TRAIN_SET", ADVANCED
    )
    preprocessed_eval_set: str | None = option(
        None, "With --preprocessed-train-set: evaluate on these shards.", "MEERKAT_PREPROCESSED_EVAL_SET", ADVANCED
    )
    force: bool = _force()

    def __post_init__(self):
        if (self.preprocessed_train_set is None) != (self.preprocessed_eval_set is None):
            raise UsageError("give both --preprocessed-train-set and --preprocessed-eval-set, or neither")


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
    force: bool = _force()

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
    force: bool = _force()

    def __post_init__(self):
        _check_source(self.videos, self.megadetector, self.motion, {"path_map": self.path_map}, "MODEL, then ")
        _check_shard_options(self.shard_index, self.num_shards)
        for pair in self.path_map or ():
            if "=" not in pair or not pair.split("=", 1)[0]:
                raise UsageError(
                    f"--path-map takes CONTAINER=HOST, e.g. /data/Videos=/home/me/videos; received {pair!r}"
                )
