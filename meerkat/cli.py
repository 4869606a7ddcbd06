"""The `meerkat` command: a thin Typer layer over the stage functions.

Every option can also be set by the MEERKAT_* variable shown in --help, so a container or a batch
script can configure a run without editing the command line.
"""

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from meerkat import __version__
from meerkat.errors import MeerkatError
from meerkat.settings import DEFAULT_BACKBONE, DEFAULT_SEED

app = typer.Typer(
    help="Train DeepMeerkat's two-class crop classifiers: createdocs -> preprocess -> train -> export.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
state = {"debug": False}

ADVANCED = "Advanced"


def _opt(envvar: str, help: str, **kwargs):
    return typer.Option(envvar=envvar, show_envvar=True, help=help, **kwargs)


# Options shared by several commands, declared once.
Seed = Annotated[int, _opt("MEERKAT_SEED", "Seed for sampling, splitting and training: same seed, same result.")]
Backbone = Annotated[
    str, _opt("MEERKAT_BACKBONE", "Frozen ImageNet backbone: efficientnet_v2_b0, mobilenet_v2 or inception_v3.")
]
Alpha = Annotated[Optional[float], _opt("MEERKAT_ALPHA", "Width of mobilenet_v2 (0.35 to 1.4; default 1.0).")]
Weights = Annotated[
    str,
    _opt(
        "MEERKAT_WEIGHTS",
        "Backbone weights: 'imagenet' (baked-in or cached file, else Keras' download), a .h5 file, "
        "or 'none' (random; smoke tests only).",
    ),
]
EmbedBatchSize = Annotated[
    Optional[int],
    _opt("MEERKAT_EMBED_BATCH_SIZE", "Images per backbone call in preprocess (default: 32 on CPU, 128 on a GPU).", min=1, rich_help_panel=ADVANCED),
]
Precision = Annotated[
    str,
    _opt(
        "MEERKAT_PRECISION",
        "Backbone compute precision: float32, bfloat16, float16, or auto (mixed float16 on a CUDA GPU, else float32).",
        rich_help_panel=ADVANCED,
    ),
]
Gpus = Annotated[
    Optional[int],
    _opt("MEERKAT_GPUS", "Use the first N visible GPUs (0: the CPU only). Default: all; preprocess splits each batch over them.", min=0, rich_help_panel=ADVANCED),
]
CacheDir = Annotated[
    Optional[Path],
    _opt("MEERKAT_CACHE_DIR", "Embedding cache folder (default: OUTPUT/cache, or cache/ beside the shards).", rich_help_panel=ADVANCED),
]
Epochs = Annotated[int, _opt("MEERKAT_EPOCHS", "Passes over the training set.", min=1)]
MaxSteps = Annotated[
    Optional[int], _opt("MEERKAT_MAX_STEPS", "Train this many batches instead of --epochs.", min=1, rich_help_panel=ADVANCED)
]
BatchSize = Annotated[int, _opt("MEERKAT_BATCH_SIZE", "Training batch size.", min=1, rich_help_panel=ADVANCED)]
LearningRate = Annotated[float, _opt("MEERKAT_LEARNING_RATE", "Adam learning rate.", rich_help_panel=ADVANCED)]
HiddenUnits = Annotated[int, _opt("MEERKAT_HIDDEN_UNITS", "Units of the head's hidden layer.", min=1, rich_help_panel=ADVANCED)]
Dropout = Annotated[float, _opt("MEERKAT_DROPOUT", "Dropout after the hidden layer.", rich_help_panel=ADVANCED)]
Force = Annotated[
    bool, _opt("MEERKAT_FORCE", "Redo everything, even pieces an earlier run finished with the same inputs.")
]
Balance = Annotated[
    bool, _opt("MEERKAT_BALANCE", "Undersample training negatives to the number of positives, as DeepMeerkat did.")
]


def _configure_logging(debug: bool) -> None:
    class ToStream(logging.Handler):
        # Progress and counts to stdout; warnings and errors to stderr.
        def emit(self, record):
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            print(self.format(record), file=stream, flush=True)

    root = logging.getLogger("meerkat")
    root.handlers[:] = [ToStream()]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False


@contextmanager
def user_errors():
    """Turn the errors a user can fix into one line and an exit code; --debug keeps the traceback."""
    try:
        yield
    except MeerkatError as e:
        if state["debug"]:
            raise
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(e.exit_code)
    except OSError as e:
        if state["debug"]:
            raise
        from meerkat.fileio import describe_os_error

        where = f"{e.filename}: " if e.filename else ""
        typer.echo(f"error: {where}{describe_os_error(e)} (rerun with --debug for details)", err=True)
        raise typer.Exit(1)
    except Exception as e:
        # TensorFlow's own file I/O (shards, the SavedModel) reports a full disk as an OpError.
        tf = sys.modules.get("tensorflow")
        if state["debug"] or tf is None or not isinstance(e, tf.errors.OpError):
            raise
        typer.echo(f"error: {e.message.splitlines()[0]} (rerun with --debug for details)", err=True)
        raise typer.Exit(1)


def _version(value: bool):
    if value:
        typer.echo(f"meerkat {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, _opt("MEERKAT_DEBUG", "Show tracebacks and TensorFlow's own logs.")] = False,
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
):
    state["debug"] = debug
    if debug:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        from meerkat.quiet import hush

        hush()
    _configure_logging(debug)


@app.command()
def createdocs(
    samples: Annotated[Path, typer.Argument(envvar="MEERKAT_SAMPLES", show_envvar=True, help="Folder with Training/ and Testing/.")],
    output: Annotated[Path, _opt("MEERKAT_OUTPUT", "Run folder; CSVs go to OUTPUT/docs.")] = Path("output"),
    balance: Balance = True,
    seed: Seed = DEFAULT_SEED,
):
    """List the crops of SAMPLES/{Training,Testing}/{Positives,Negatives} as path,label CSVs.

    Writes OUTPUT/docs/trainingdata.csv, testingdata.csv and dict.txt. Folder names may be in any
    case, singular or plural. Without a Testing folder, 1 in 6 training crops is held out.

    [bold]Example:[/] meerkat createdocs Samples --output runs/hummingbirds
    """
    from meerkat.createdocs import DocsConfig, createdocs as run_createdocs

    with user_errors():
        run_createdocs(DocsConfig(samples, output, balance, seed))


@app.command()
def preprocess(
    input_path: Annotated[Path, _opt("MEERKAT_INPUT_PATH", "Docs CSV (path,label) to embed.")],
    input_dict: Annotated[Path, _opt("MEERKAT_INPUT_DICT", "dict.txt written by createdocs.")],
    output_path: Annotated[str, _opt("MEERKAT_OUTPUT_PATH", "Prefix of the shards: PREFIX-00000-of-00001.tfrecord.gz.")],
    backbone: Backbone = DEFAULT_BACKBONE,
    alpha: Alpha = None,
    weights: Weights = "imagenet",
    embed_batch_size: EmbedBatchSize = None,
    precision: Precision = "auto",
    cache_dir: CacheDir = None,
    gpus: Gpus = None,
    shard_index: Annotated[
        Optional[int],
        _opt("MEERKAT_SHARD_INDEX", "Which 1/N of the CSV this worker embeds (default: $SLURM_ARRAY_TASK_ID, else 0)."),
    ] = None,
    num_shards: Annotated[
        Optional[int],
        _opt("MEERKAT_NUM_SHARDS", "Number of workers splitting the CSV (default: $SLURM_ARRAY_TASK_COUNT, else 1)."),
    ] = None,
):
    """Embed the images of a docs CSV with a frozen ImageNet backbone into a gzip TFRecord shard.

    Unreadable files are skipped and listed in PREFIX-....skipped.csv. N workers each given
    --shard-index i --num-shards N split one CSV between them.

    [bold]Example:[/] meerkat preprocess --input-path runs/h/docs/trainingdata.csv --input-dict runs/h/docs/dict.txt --output-path runs/h/records/train
    """
    from meerkat import backbones
    from meerkat.devices import select_gpus
    from meerkat.preprocess import check_shard, preprocess as run_preprocess
    from meerkat.slurm import array_shard

    with user_errors():
        select_gpus(gpus)
        index, count = array_shard(shard_index, num_shards)
        check_shard(index, count)
        spec = backbones.resolve(backbone, alpha, weights, precision)
        run_preprocess(input_path, input_dict, output_path, spec, embed_batch_size, index, count, cache_dir)


def _train_config(**kwargs):
    from meerkat.train import TrainConfig

    return TrainConfig(**kwargs)


@app.command()
def train(
    train_data: Annotated[str, _opt("MEERKAT_TRAIN_DATA", "Training shards: a preprocess prefix or a glob.")],
    eval_data: Annotated[str, _opt("MEERKAT_EVAL_DATA", "Evaluation shards: a preprocess prefix or a glob.")],
    output_dir: Annotated[Path, _opt("MEERKAT_OUTPUT_DIR", "Where model/, logs/ and report/ go.")],
    input_dict: Annotated[
        Optional[Path], _opt("MEERKAT_INPUT_DICT", "dict.txt to check the records' labels against.")
    ] = None,
    epochs: Epochs = 30,
    max_steps: MaxSteps = None,
    batch_size: BatchSize = 32,
    learning_rate: LearningRate = 1e-3,
    hidden_units: HiddenUnits = 512,
    dropout: Dropout = 0.5,
    seed: Seed = DEFAULT_SEED,
    force: Force = False,
):
    """Train the dense head on preprocessed embeddings, export the SavedModel and write the report.

    [bold]Example:[/] meerkat train --train-data runs/h/records/train --eval-data runs/h/records/eval --output-dir runs/h
    """
    from meerkat.pipeline import train as run_train

    with user_errors():
        cfg = _train_config(
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            hidden_units=hidden_units,
            dropout=dropout,
            seed=seed,
        )
        run_train(train_data, eval_data, input_dict, output_dir, cfg, force=force)


@app.command()
def run(
    samples: Annotated[Path, typer.Argument(envvar="MEERKAT_SAMPLES", show_envvar=True, help="Folder with Training/ and Testing/.")],
    output: Annotated[Path, typer.Argument(envvar="MEERKAT_OUTPUT", show_envvar=True, help="Run folder for docs, records, model, logs, report.")],
    backbone: Backbone = DEFAULT_BACKBONE,
    alpha: Alpha = None,
    weights: Weights = "imagenet",
    balance: Balance = True,
    epochs: Epochs = 30,
    seed: Seed = DEFAULT_SEED,
    embed_batch_size: EmbedBatchSize = None,
    precision: Precision = "auto",
    cache_dir: CacheDir = None,
    gpus: Gpus = None,
    max_steps: MaxSteps = None,
    batch_size: BatchSize = 32,
    learning_rate: LearningRate = 1e-3,
    hidden_units: HiddenUnits = 512,
    dropout: Dropout = 0.5,
    preprocessed_train_set: Annotated[
        Optional[str],
        _opt("MEERKAT_PREPROCESSED_TRAIN_SET", "Skip createdocs and preprocess: train on these shards.", rich_help_panel=ADVANCED),
    ] = None,
    preprocessed_eval_set: Annotated[
        Optional[str],
        _opt("MEERKAT_PREPROCESSED_EVAL_SET", "With --preprocessed-train-set: evaluate on these shards.", rich_help_panel=ADVANCED),
    ] = None,
    force: Force = False,
):
    """The whole job: createdocs, preprocess, train, export and report, into OUTPUT.

    Run it again after an interruption: finished shards and the last training checkpoint are
    reused, and a finished run is left as it is (--force redoes it).

    [bold]Example:[/] meerkat run Samples runs/hummingbirds

    [bold]Offline, with a local weights file:[/] meerkat run Samples runs/h --backbone mobilenet_v2 --alpha 0.35 --weights mobilenet_v2_0.35_224_no_top.weights.h5
    """
    from meerkat.createdocs import DocsConfig
    from meerkat.devices import select_gpus
    from meerkat.pipeline import run as run_pipeline

    with user_errors():
        select_gpus(gpus)
        cfg = _train_config(
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            hidden_units=hidden_units,
            dropout=dropout,
            seed=seed,
        )
        run_pipeline(
            samples,
            output,
            DocsConfig(samples, output, balance, seed),
            backbone,
            alpha,
            weights,
            embed_batch_size,
            cfg,
            preprocessed_train_set,
            preprocessed_eval_set,
            force,
            precision,
            cache_dir,
        )


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="The model/ folder written by train or run.")],
    paths: Annotated[list[Path], typer.Argument(help="Image files (any name) or folders (searched recursively for images).")],
    output: Annotated[
        Optional[Path], _opt("MEERKAT_PREDICT_OUTPUT", "CSV to write, with the skipped files in CSV-stem.skipped.csv; default: print to stdout.")
    ] = None,
    threshold: Annotated[
        float, _opt("MEERKAT_THRESHOLD", "Label a crop positive when score_positive >= THRESHOLD (0 to 1); DeepMeerkat used 0.05.")
    ] = 0.5,
    batch_size: Annotated[int, _opt("MEERKAT_BATCH_SIZE", "Images per model call.", min=1, rich_help_panel=ADVANCED)] = 32,
):
    """Score image files or folders with an exported model: path,label,score_positive.

    Files are read as preprocess reads them; unusable ones are skipped with their reason. Exits 1
    when no file could be scored.

    [bold]Example:[/] meerkat predict runs/h/model new_crops/ --output scores.csv --threshold 0.05
    """
    from meerkat.predict import predict as run_predict

    with user_errors():
        run_predict(model, paths, output, batch_size, threshold)


@app.command("demo-samples")
def demo_samples(
    folder: Annotated[Path, typer.Argument(help="Where to write Training/ and Testing/.")],
    train_per_class: Annotated[int, _opt("MEERKAT_DEMO_TRAIN_PER_CLASS", "Training crops per class.", min=2)] = 40,
    test_per_class: Annotated[int, _opt("MEERKAT_DEMO_TEST_PER_CLASS", "Testing crops per class.", min=1)] = 15,
    seed: Annotated[int, _opt("MEERKAT_DEMO_SEED", "Seed of the generator.")] = 0,
):
    """Write a small synthetic Samples folder (birds vs foliage) to try meerkat with.

    [bold]Example:[/] meerkat demo-samples demo && meerkat run demo runs/demo
    """
    from meerkat.demo import make_demo_samples

    with user_errors():
        make_demo_samples(folder, train_per_class, test_per_class, seed)
        typer.echo(f"Wrote {2 * (train_per_class + test_per_class)} crops to {folder}")


@app.command()
def doctor(
    samples: Annotated[Optional[Path], _opt("MEERKAT_SAMPLES", "Check this Samples folder is there and not empty.")] = None,
    output: Annotated[Optional[Path], _opt("MEERKAT_OUTPUT", "Check this output folder is writable.")] = None,
    mounts_only: Annotated[bool, typer.Option(help="Check only the folders (fast: no TensorFlow).")] = False,
):
    """Report versions, CUDA build, visible GPUs, baked-in weights and their sha256, and the folders.

    With --mounts-only it checks just the folders and exits 1 on a problem (the container entrypoint uses this).

    [bold]Example:[/] docker run --rm meerkat:cpu doctor
    """
    from meerkat import doctor as checks

    with user_errors():
        if mounts_only:
            checks.check_mounts(samples, output)
        else:
            for line in checks.report(samples, output):
                typer.echo(line)


def main():
    app(prog_name="meerkat")
