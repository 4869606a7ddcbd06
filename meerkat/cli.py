"""The `meerkat` command: a thin Typer layer over the stage functions.

A stage's options are the fields of its config (core/config.py, core/video_config.py), turned into Typer options here:
help, default and MEERKAT_* variable are written once, there. Each command builds its configs from
the parsed options by keyword and hands them to its stage. Precedence is click's, the same for
every option: the command line, then the MEERKAT_* variable, then the default.
"""

import inspect
import math
import os
import sys
from contextlib import contextmanager
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Annotated, get_args

import typer

from meerkat import __version__
from meerkat.core import config
from meerkat.core.atomic import shown
from meerkat.core.config import (
    ADVANCED,
    MAX_INT,
    MAX_SEED,
    BackboneConfig,
    DocsConfig,
    PreprocessConfig,
    RecordsConfig,
    RunConfig,
    TrainConfig,
)
from meerkat.core.errors import MeerkatError, describe_os_error
from meerkat.core.logs import configure_logging
from meerkat.core.video_config import ClipsConfig, DetectionsConfig, MotionConfig, ScanConfig

app = typer.Typer(
    help="Train DeepMeerkat's two-class crop classifiers: createdocs -> preprocess -> train -> export.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
state = {"debug": False}

# Variables that once meant two things, and the one each meaning has now.
RETIRED = {
    "MEERKAT_MODEL": "MEERKAT_CLIPS_MODEL (clips --model) or MEERKAT_SCAN_MODEL (scan MODEL)",
    "MEERKAT_BATCH_SIZE": "MEERKAT_TRAIN_BATCH_SIZE (train and run) or MEERKAT_PREDICT_BATCH_SIZE (predict)",
}


def _finite(value):
    # A range lets infinity through its open end, and a float without one takes NaN too.
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def _not_empty(value):
    # An empty value is mostly a shell variable that was never set (`--output-path "$PREFIX"`).
    if value == "" or (isinstance(value, list | tuple) and "" in value):
        raise typer.BadParameter("it is empty; give a value, or leave the option out")
    return value


def _path(ctx: typer.Context, param, value):
    """A Path option's or argument's value, refused when empty: Typer would read "" as Path("."), the
    current folder, and click an empty variable as unset (the default). Typer hands over the text
    as typed (PATH's path_type=str), so that "" is told from "."."""
    source = ctx.get_parameter_source(param.name).name
    if param.envvar and os.environ.get(param.envvar) == "" and source != "COMMANDLINE":
        raise typer.BadParameter(f"${param.envvar} is empty; set it to a path (. for this folder), or unset it")
    if value == "":
        raise typer.BadParameter("it is empty; give a path (. for this folder)")
    if isinstance(value, list) and "" in value:  # `a "" b`, or a variable `a::b`
        where = f" in ${param.envvar}" if source == "ENVIRONMENT" else ""
        raise typer.BadParameter(f"one of its paths is empty{where}; give each one (. for this folder)")
    if isinstance(value, list):
        return [Path(v) for v in value]
    return None if value is None else Path(value)


# Every Path option and argument: Typer hands the text over as typed, _path makes it a Path.
PATH = {"path_type": str, "callback": _path}


def _opt(envvar: str, help: str, **kwargs):
    return typer.Option(envvar=envvar, show_envvar=True, help=help, **kwargs)


def _parameter(f, as_argument: bool, required: bool) -> inspect.Parameter:
    meta = f.metadata
    declare = typer.Argument if as_argument else typer.Option
    kinds = get_args(f.type) or (f.type,)
    checks = {}
    if float in kinds:
        checks = {"callback": _finite}
    elif Path in kinds or list[Path] in kinds:
        checks = PATH
    elif (str in kinds or list[str] in kinds) and "parser" not in meta["click"]:
        checks = {"callback": _not_empty}
    info = declare(
        envvar=meta["env"],
        show_envvar=True,
        help=meta["help"],
        rich_help_panel=meta["panel"],
        **checks,
        **meta["click"],
    )
    default = inspect.Parameter.empty if f.default is MISSING or required else f.default
    kind = f.type
    if "parser" in meta["click"]:  # Typer types such an option by its parser; the field holds what it returns
        kind = list[str] if "list" in str(f.type) else str
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, info])


def config_command(*configs, arguments: tuple[str, ...] = (), required: tuple[str, ...] = ()):
    """Register a command whose options are the fields of `configs` (the first one of a name wins).

    `arguments` names the fields that are positional arguments, in order (without it, each field
    says so itself); `required` those that this command needs although they have a default.
    The function receives the options as keywords.
    """

    def register(fn):
        found = {}
        for cls in configs:
            for f in fields(cls):
                if not is_dataclass(f.type) and f.name not in found:
                    found[f.name] = f
        positional = list(arguments) or [n for n, f in found.items() if f.metadata["argument"]]
        params = [_parameter(found[n], True, n in required) for n in positional]
        params += [_parameter(f, False, n in required) for n, f in found.items() if n not in positional]
        fn.__signature__ = inspect.Signature(params)
        return app.command()(fn)

    return register


@contextmanager
def user_errors():
    """Turn the errors a user can fix into one line and an exit code; --debug keeps the traceback."""
    try:
        yield
    except MeerkatError as e:
        if state["debug"]:
            raise
        typer.echo(f"error: {shown(str(e))}", err=True)  # a name that is not UTF-8 shows its bytes as \xNN
        raise typer.Exit(e.exit_code) from None
    except OSError as e:
        if state["debug"]:
            raise
        where = f"{e.filename}: " if e.filename else ""
        typer.echo(shown(f"error: {where}{describe_os_error(e)} (rerun with --debug for details)"), err=True)
        raise typer.Exit(1) from None
    except Exception as e:
        # TensorFlow's own file I/O (shards, the SavedModel) reports a full disk as an OpError.
        tf = sys.modules.get("tensorflow")
        if state["debug"] or tf is None or not isinstance(e, tf.errors.OpError):
            raise
        typer.echo(f"error: {e.message.splitlines()[0]} (rerun with --debug for details)", err=True)
        raise typer.Exit(1) from None


def _version(value: bool):
    if value:
        typer.echo(f"meerkat {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, _opt("MEERKAT_DEBUG", "Show tracebacks and TensorFlow's own logs.")] = False,
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
):
    state["debug"] = debug
    if debug:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "24"  # warnings
    else:
        from meerkat.core.quiet import hush

        hush()
    configure_logging(debug)
    for name, now in RETIRED.items():
        if os.environ.get(name):
            typer.echo(f"warning: ${name} is no longer read; set {now}", err=True)


@config_command(DocsConfig)
def createdocs(**options):
    """List the crops of SAMPLES/{Training,Testing}/<Class>/ as path,label CSVs.

    Writes OUTPUT/docs/trainingdata.csv, testingdata.csv and dict.txt. Positives and Negatives (any
    case, singular or plural) are DeepMeerkat's pair; other folders are classes as named
    (docs/species.md). Without a Testing folder, 1 in 6 groups of training crops is held out.

    [bold]Example:[/] meerkat createdocs Samples --output runs/hummingbirds
    """
    from meerkat.samples.createdocs import createdocs as run_createdocs

    with user_errors():
        run_createdocs(config.build(DocsConfig, options))


@config_command(PreprocessConfig, BackboneConfig)
def preprocess(**options):
    """Embed the images of a docs CSV with a frozen ImageNet backbone into a gzip TFRecord shard.

    Unreadable files are skipped and listed in PREFIX-....skipped.csv. N workers each given
    --shard-index i --num-shards N split one CSV between them.

    [bold]Example:[/] meerkat preprocess --input-path runs/h/docs/trainingdata.csv \\
      --input-dict runs/h/docs/dict.txt --output-path runs/h/records/train
    """
    from meerkat.embed import backbones
    from meerkat.embed.preprocess import preprocess as run_preprocess

    with user_errors():
        cfg = config.build(PreprocessConfig, options)
        run_preprocess(cfg, backbones.resolve(config.build(BackboneConfig, options)))


@config_command(RecordsConfig, TrainConfig)
def train(**options):
    """Train the dense head on preprocessed embeddings, export the SavedModel and write the report.

    [bold]Example:[/] meerkat train --train-data runs/h/records/train --eval-data runs/h/records/eval \\
      --output-dir runs/h
    """
    from meerkat.train import pipeline

    with user_errors():
        pipeline.train(config.build(RecordsConfig, options), config.build(TrainConfig, options))


@config_command(
    DocsConfig, BackboneConfig, TrainConfig, RunConfig, arguments=("samples", "output"), required=("output",)
)
def run(**options):
    """The whole job: createdocs, preprocess, train, export and report, into OUTPUT.

    Run it again after an interruption: finished shards and the last training checkpoint are
    reused, and a finished run is left as it is (--force redoes it).

    [bold]Example:[/] meerkat run Samples runs/hummingbirds

    [bold]Offline, with a local weights file:[/] meerkat run Samples runs/h --backbone mobilenet_v2 --alpha 0.35 \\
      --weights mobilenet_v2_0.35_224_no_top.weights.h5
    """
    from meerkat import doctor as checks

    with user_errors():
        cfg = config.build(RunConfig, options)
        # In the image, a missing mount is one line before TensorFlow starts, not a model lost with
        # the container. The folders are those this run reads: from the command line or MEERKAT_*.
        mounts = checks.container_mounts()
        if mounts is not None:
            samples = None if cfg.preprocessed_train_set is not None else cfg.docs.samples
            checks.check_mounts(samples, cfg.docs.output, mounts)
        from meerkat.train import pipeline

        pipeline.run(cfg)


@config_command(ClipsConfig, MotionConfig, DetectionsConfig)
def clips(**options):
    """Cut training crops from videos, as DeepMeerkat's training mode does: OUTPUT/<stem>/<stem>_<frame>_<i>.jpg.

    Sort the crops into Samples/Training/<class>/, then `meerkat run`. With --model, an earlier
    model pre-sorts them into OUTPUT/suggested/<class>/. With --detections FILE instead of
    videos, one crop per MegaDetector box: OUTPUT/crops/ and OUTPUT/crops.csv.

    [bold]Example:[/] meerkat clips videos/ --output crops --exclude 0,0,320,20

    [bold]From MegaDetector:[/] meerkat clips --detections md.json --output crops
    """
    with user_errors():
        cfg = config.build(ClipsConfig, options)
        if cfg.megadetector.detections is not None:
            from meerkat.detections.clips import clips as run_clips
        else:
            from meerkat.video.clips import clips as run_clips
        run_clips(cfg)


@config_command(ScanConfig, MotionConfig, DetectionsConfig, arguments=("model", "videos"))
def scan(**options):
    """Apply a trained model to videos: keep the frames where it sees the animal.

    Writes OUTPUT/<stem>/{annotations.csv,parameters.csv,frames/} (DeepMeerkat 3.x's review window
    opens these folders), OUTPUT/scan.csv and OUTPUT/detections.json (MegaDetector's format, for
    Timelapse and MegaDetector's tools). A rerun skips the videos already scanned. With
    --detections FILE instead of videos, it classifies MegaDetector's boxes: OUTPUT/detections.json
    (MegaDetector's format, with meerkat's classes) and OUTPUT/scan.csv.

    [bold]Example:[/] meerkat scan runs/h/model videos/ --output scans --threshold 0.05

    [bold]From MegaDetector:[/] meerkat scan runs/h/model --detections md.json --output scans
    """
    with user_errors():
        cfg = config.build(ScanConfig, options)
        if cfg.megadetector.detections is not None:
            from meerkat.detections.scan import scan as run_scan
        else:
            from meerkat.video.scan import scan as run_scan
        run_scan(cfg)


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="The model/ folder written by train or run.", **PATH)],
    paths: Annotated[
        list[Path],
        typer.Argument(help="Image files (any name) or folders (searched recursively for images).", **PATH),
    ],
    output: Annotated[
        Path | None,
        _opt(
            "MEERKAT_PREDICT_OUTPUT",
            "CSV to write, with the skipped files in CSV-stem.skipped.csv; default: print to stdout.",
            **PATH,
        ),
    ] = None,
    threshold: Annotated[
        float,
        _opt(
            "MEERKAT_THRESHOLD",
            "Label a crop positive when score_positive >= THRESHOLD (0 to 1; DeepMeerkat used 0.05). Models "
            "of other classes than DeepMeerkat's pair label each crop with its top class.",
            callback=_finite,
        ),
    ] = 0.5,
    batch_size: Annotated[
        int,
        _opt("MEERKAT_PREDICT_BATCH_SIZE", "Images per model call.", min=1, max=MAX_INT, rich_help_panel=ADVANCED),
    ] = 32,
):
    """Score image files or folders with an exported model: path,label,score_positive.

    A model of other classes than DeepMeerkat's positive/negative pair writes one score column a
    class instead, path,label,score_<class>..., in dict.txt's order, labelled with the top class.
    Files are read as preprocess reads them; unusable ones are skipped with their reason. Exits 1
    when no file could be scored.

    [bold]Example:[/] meerkat predict runs/h/model new_crops/ --output scores.csv --threshold 0.05
    """
    from meerkat.apply.predict import predict as run_predict

    with user_errors():
        run_predict(model, paths, output, batch_size, threshold)


DEMO_MAX = 10_000  # crops per class and set: a demo, not a data set to fill a disk with


@app.command("demo-samples")
def demo_samples(
    folder: Annotated[Path, typer.Argument(help="Where to write Training/ and Testing/.", **PATH)],
    train_per_class: Annotated[
        int, _opt("MEERKAT_DEMO_TRAIN_PER_CLASS", "Training crops per class.", min=2, max=DEMO_MAX)
    ] = 40,
    test_per_class: Annotated[
        int, _opt("MEERKAT_DEMO_TEST_PER_CLASS", "Testing crops per class.", min=1, max=DEMO_MAX)
    ] = 15,
    seed: Annotated[int, _opt("MEERKAT_DEMO_SEED", "Seed of the generator.", min=0, max=MAX_SEED)] = 0,
):
    """Write a small synthetic Samples folder (birds vs foliage) to try meerkat with.

    [bold]Example:[/] meerkat demo-samples demo && meerkat run demo runs/demo
    """
    from meerkat.samples.demo import make_demo_samples

    with user_errors():
        make_demo_samples(folder, train_per_class, test_per_class, seed)
        typer.echo(shown(f"Wrote {2 * (train_per_class + test_per_class)} crops to {folder}"))


@app.command()
def doctor(
    samples: Annotated[
        Path | None, _opt("MEERKAT_SAMPLES", "Check this Samples folder is there and not empty.", **PATH)
    ] = None,
    output: Annotated[Path | None, _opt("MEERKAT_OUTPUT", "Check this output folder is writable.", **PATH)] = None,
    mounts_only: Annotated[bool, typer.Option(help="Check only the folders (fast: no TensorFlow).")] = False,
):
    """Report versions, CUDA build, visible GPUs, baked-in weights and their sha256, and the folders.

    With --mounts-only it checks just the folders and exits 1 on a problem; in the image, an output that is
    not a mount is one (`run` there checks the same before it starts).

    [bold]Example:[/] docker run --rm meerkat:cpu doctor
    """
    from meerkat import doctor as checks

    with user_errors():
        if mounts_only:
            checks.check_mounts(samples, output, checks.container_mounts())
        else:
            for line in checks.report(samples, output):
                typer.echo(shown(line))


@app.command()
def tensorboard(
    output: Annotated[
        Path,
        typer.Argument(envvar="MEERKAT_OUTPUT", show_envvar=True, help="Run folder whose logs/ to show.", **PATH),
    ] = Path("output"),
    port: Annotated[int, _opt("MEERKAT_TENSORBOARD_PORT", "Port to serve on.", min=1, max=65535)] = 6006,
    host: Annotated[
        str,
        _opt(
            "MEERKAT_TENSORBOARD_HOST",
            "Address to bind: 127.0.0.1 keeps it on this machine; 0.0.0.0 answers on every address "
            "(the default inside a container with a network of its own, not under --network host).",
            callback=_not_empty,
        ),
    ] = "127.0.0.1",
):
    """Serve the training curves in OUTPUT/logs with TensorBoard until Ctrl-C.

    [bold]Example:[/] meerkat tensorboard runs/h, then open http://127.0.0.1:6006/
    (Docker: docker run --rm -p 127.0.0.1:6006:6006 -v $PWD/runs/h:/data/Output:ro meerkat:cpu tensorboard)
    """
    from meerkat.tensorboard import serve

    with user_errors():
        serve(output, host, port, state["debug"])


@app.command()
def sort(
    crops: Annotated[Path, typer.Argument(envvar="MEERKAT_SORT_CROPS", show_envvar=True,
                                          help="Folder of crops to sort, or a `clips --output` folder.", **PATH)],
    samples: Annotated[Path, typer.Argument(envvar="MEERKAT_SAMPLES", show_envvar=True,
                                            help="Samples folder: crops go to SAMPLES/Training/<class>/.", **PATH)],
    model: Annotated[Path | None, _opt("MEERKAT_SORT_MODEL", "A model (run OUTPUT/model) that guesses each "
                                       "crop's class: scored once, cached.", **PATH)] = None,
    port: Annotated[int, _opt("MEERKAT_SORT_PORT", "Port to serve on (0: any free one).", min=0, max=65535)] = 8765,
    host: Annotated[str, _opt("MEERKAT_SORT_HOST", "Address to bind: 127.0.0.1 keeps it on this machine; 0.0.0.0 "
                              "inside a container (publish it with -p 127.0.0.1:8765:8765). The printed URL's token "
                              "is needed either way.", callback=_not_empty)] = "127.0.0.1",
):  # fmt: skip
    """Sort crops into SAMPLES/Training/<class>/ on a page in the browser, the least sure first.

    Keys 1-9 put a crop in a class, Enter accepts the guess, S skips, U undoes; every move is
    logged in SAMPLES/meerkat-sort/, so a session can stop and go on later. Then: meerkat run SAMPLES OUTPUT.

    [bold]Example:[/] meerkat sort round1 Samples --model runs/h/model, then open the URL it prints
    (Docker: docker run --rm -p 127.0.0.1:8765:8765 -v $PWD/round1:/data/Crops -v $PWD/Samples:/data/Samples
    meerkat:cpu sort /data/Crops /data/Samples --host 0.0.0.0)
    """
    from meerkat import doctor as checks

    with user_errors():
        if (mounts := checks.container_mounts()) is not None:  # both are written: neither may go with the container
            checks.check_mounts(None, crops, mounts, "Crops")
            checks.check_mounts(None, samples, mounts, "Samples")
        from meerkat.sort.server import run_page

        run_page(crops, samples, model, host, port)


def main():
    app(prog_name="meerkat")
