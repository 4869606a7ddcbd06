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


def force_option():
    return option(False, "Redo everything, even pieces an earlier run finished with the same inputs.", "MEERKAT_FORCE")


def _cache_dir():
    return option(
        None,
        "Embedding cache folder (default: OUTPUT/cache, or cache/ beside the shards).",
        "MEERKAT_CACHE_DIR",
        ADVANCED,
    )


def check_shard_options(shard_index: int | None, num_shards: int | None) -> None:
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
        check_shard_options(self.shard_index, self.num_shards)


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
    force: bool = force_option()


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
    force: bool = force_option()

    def __post_init__(self):
        if (self.preprocessed_train_set is None) != (self.preprocessed_eval_set is None):
            raise UsageError("give both --preprocessed-train-set and --preprocessed-eval-set, or neither")
