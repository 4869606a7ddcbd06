"""The whole job, stage after stage: Samples -> docs -> records -> model -> report.

`run` and `train` hold a lock on their output folder and end in the same `_fit`. They reuse every
finished piece of an earlier attempt (shards, the training checkpoint) and do nothing when that
attempt already finished, unless --force. Outputs are written atomically, so a kill at any point
leaves nothing half-written.
"""

import json
import logging
import math
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from meerkat.core import atomic, faults, locks, nesting, ownership, temporaries
from meerkat.core.config import PreprocessConfig, RecordsConfig, RunConfig, TrainConfig
from meerkat.core.errors import MeerkatError
from meerkat.core.settings import IMAGES_PER_SHARD
from meerkat.embed import backbones, devices, tfrecords
from meerkat.samples.createdocs import check_apart, createdocs
from meerkat.samples.docs import read_csv, read_dict
from meerkat.train import run_json

log = logging.getLogger(__name__)


def run(cfg: RunConfig) -> dict:
    """createdocs -> preprocess (train and eval) -> train -> export -> report, in cfg.docs.output."""
    if cfg.preprocessed_train_set is None:  # else SAMPLES is not read
        check_apart(cfg.docs, "OUTPUT")
        if cfg.cache_dir is not None:  # meerkat never writes into Samples; a cache that holds them is fine
            nesting.check_outside(cfg.cache_dir, [("SAMPLES", cfg.docs.samples)], "--cache-dir")
        backbones.check(cfg.backbone)  # a wrong --weights file, before a crop is hashed or TensorFlow loads
    output = atomic.output_dir(cfg.docs.output)
    with _locked(output):
        start = time.perf_counter()
        if cfg.preprocessed_train_set is not None:
            devices.select_gpus(cfg.backbone.gpus)
            devices.log_devices(cfg.backbone.gpus)
            log.info("Using preprocessed sets; %s is not read.", cfg.docs.samples)
            sets = (cfg.preprocessed_train_set, cfg.preprocessed_eval_set)
            result = _fit(RecordsConfig(*sets, output_dir=output, force=cfg.force), cfg.train)
        else:
            docs = createdocs(cfg.docs)  # before TensorFlow loads: a wrong folder is reported at once
            from meerkat.train.data import check_counts

            check_counts(docs.counts, docs.classes.names, cfg.train.validation_fraction)
            spec = backbones.resolve(cfg.backbone)  # applies --gpus
            devices.log_devices(cfg.backbone.gpus)
            prefixes = {name: output / "records" / name for name in ("train", "eval")}
            _preprocess_set(docs.training_csv, docs.dict_txt, prefixes["train"], spec, cfg)
            _preprocess_set(docs.testing_csv, docs.dict_txt, prefixes["eval"], spec, cfg)
            records_cfg = RecordsConfig(str(prefixes["train"]), str(prefixes["eval"]), output, docs.dict_txt, cfg.force)
            result = _fit(records_cfg, cfg.train)
        log.info(
            "Done in %.1f s: model in %s, TensorBoard logs in %s",
            time.perf_counter() - start,
            output / "model",
            output / "logs",
        )
    return result


def train(cfg: RecordsConfig, train_cfg: TrainConfig) -> dict:
    """`meerkat train`: the end of `run` on preprocessed sets, under the same lock."""
    output = atomic.output_dir(cfg.output_dir)
    with _locked(output):
        return _fit(cfg, train_cfg)


@contextmanager
def _locked(output: Path):
    """Hold OUTPUT's lock, and clear what killed runs left half-written there."""
    with locks.output_lock(output):
        for folder in (output, output / "docs", output / "records", output / "report", output / "checkpoints"):
            temporaries.remove_stale(folder)
        yield


def _preprocess_set(csv_path: Path, dict_txt: Path, prefix: Path, spec, cfg: RunConfig) -> None:
    """Embed one docs CSV as ceil(N / IMAGES_PER_SHARD) shards, the unit of work a kill can lose."""
    from meerkat.embed.preprocess import preprocess

    count = max(1, math.ceil(len(read_csv(csv_path)) / IMAGES_PER_SHARD))
    for old in sorted(prefix.parent.glob(f"{prefix.name}-*-of-*")):  # never a temporary: their names start with a dot
        of_another_split = not old.name.split(".")[0].endswith(f"-of-{count:05d}")  # the data set changed size
        if of_another_split or cfg.force:
            ownership.remove(old, "--force")
    cache_dir = cfg.cache_dir or cfg.docs.output / "cache"
    for index in range(count):
        shard_cfg = PreprocessConfig(csv_path, dict_txt, str(prefix), cfg.embed_batch_size, cache_dir, index, count)
        preprocess(shard_cfg, spec)


def _fit(cfg: RecordsConfig, train_cfg: TrainConfig) -> dict:
    """Train a head on preprocessed sets, export the SavedModel and write the report."""
    from meerkat.embed.embedder import embedder_for
    from meerkat.report import metrics
    from meerkat.train import data, export, fit, history

    start = time.perf_counter()
    output = cfg.output_dir
    train_set = data.load(cfg.train_data, "train")
    eval_set = data.load(cfg.eval_data, "eval")
    data.check_compatible(train_set, eval_set, cfg.train_data, cfg.eval_data)
    labels = read_dict(cfg.input_dict) if cfg.input_dict else list(train_set.manifest["labels"])
    if labels != train_set.manifest["labels"]:
        raise MeerkatError(
            f"{cfg.input_dict} lists {labels} but the records were labelled with {train_set.manifest['labels']}"
        )
    fingerprint = run_json.fingerprint(train_set, eval_set, train_cfg)
    previous = None if cfg.force else run_json.finished(output, fingerprint)
    if previous is not None and not run_json.report_to_redo(previous):
        log.info(
            "%s already holds the finished model for these inputs and options; nothing to do (--force redoes it).",
            output,
        )
        return json.loads((output / "report" / "metrics.json").read_text())
    if previous is not None:
        return _redo_report(cfg, previous, train_set, eval_set, fingerprint)
    spec = tfrecords.spec_of(train_set.manifest)
    embedder = embedder_for(spec)  # before training: fail fast if the weights are gone

    checkpoint = output / "checkpoints" / "head.npz"
    if cfg.force:
        ownership.remove(checkpoint, "--force")
    trained = fit.train(train_set, train_cfg, output / "logs", checkpoint, fingerprint)
    head = trained.head  # the best epoch's weights: what is exported and scored on the Testing set
    history.write(output / "report" / "history.csv", trained.history)
    faults.point("export")
    export.export_model(embedder, head, labels, output / "model")
    _, _, scores = fit.evaluate(head, eval_set)
    result = metrics.write_report(output / "report", eval_set.uris, eval_set.labels, scores, labels)
    details = {
        "train_data": cfg.train_data,
        "eval_data": cfg.eval_data,
        "backbone": asdict(spec),
        "train_config": asdict(train_cfg),
        "train_records": len(train_set.uris),
        "eval_records": len(eval_set.uris),
        **trained.details(train_cfg),
        "split_grouping": run_json.grouping(train_set, eval_set, train_cfg),
        "train_seconds": round(time.perf_counter() - start, 2),
        **_provenance(output / "model"),
    }
    _publish(cfg, run_json.contents(details), train_set, eval_set, scores, fingerprint)
    ownership.remove(checkpoint.parent, "the finished run's cleanup")
    if "per_class" in result:  # species
        log.info(
            "Eval set: top-1 accuracy %s%s, macro-F1 %s on %d images -> %s",
            _fmt(result["top1"]),
            f", top-3 accuracy {_fmt(result['top3'])}" if "top3" in result else "",
            _fmt(result["macro_f1"]),
            len(eval_set.uris),
            output / "report" / "metrics.json",
        )
    else:
        log.info(
            "Eval set: accuracy %.4f, precision %s, recall %s on %d images -> %s",
            result["accuracy"],
            _fmt(result["precision"]),
            _fmt(result["recall"]),
            len(eval_set.uris),
            output / "report" / "metrics.json",
        )
    return result


def _publish(cfg: RecordsConfig, record: dict, train_set, eval_set, scores, fingerprint: str) -> None:
    """The page, TensorBoard's eval figures and the model card, then run.json, which marks the run
    finished and lists what of the report could not be written (a rerun redoes only that)."""
    from meerkat.report.publish import publish

    start = time.perf_counter()
    problems = publish(cfg, record, train_set, eval_set, scores)
    record = {**record, "report_seconds": round(time.perf_counter() - start, 2)}
    run_json.write(cfg.output_dir, fingerprint, record, problems)
    if problems:
        log.warning(
            "warning: the model and metrics are finished, but the report is incomplete (%s could not be written); "
            "run the same command again to redo only the report",
            ", ".join(problems),
        )


def _redo_report(cfg: RecordsConfig, previous: dict, train_set, eval_set, fingerprint: str) -> dict:
    """A finished model whose report is incomplete: write the report again from its shards, run.json
    and report/predictions.csv (the scores at the precision every threshold compares)."""
    output = cfg.output_dir
    log.info(
        "%s holds the finished model for these inputs and options, but its report is incomplete or out of date (%s); "
        "redoing only the report.",
        output,
        ", ".join(run_json.report_to_redo(previous)),
    )
    scores = _saved_scores(output / "report" / "predictions.csv", eval_set.uris, list(train_set.manifest["labels"]))
    redone = ("fingerprint", "report_code", "report_problems", "report_seconds")
    contents = {k: v for k, v in previous.items() if k not in redone}
    _publish(cfg, contents, train_set, eval_set, scores, fingerprint)
    return json.loads((output / "report" / "metrics.json").read_text())


def _saved_scores(predictions: Path, uris: list[str], names: list[str]):
    """[N, classes] softmax scores of `uris` from predictions.csv, as the run that wrote it scored them
    (the pair's has score_positive alone: P(negative) is 1 - it)."""
    import numpy as np
    import pandas as pd

    from meerkat.samples.classes import from_labels

    classes = from_labels(names)
    columns = [classes.score_column(n) for n in (classes.names[:1] if classes.is_pair else classes.names)]
    try:
        table = pd.read_csv(predictions, keep_default_na=False).set_index("image_uri")[columns]
        scores = table.loc[uris].to_numpy(np.float64)
    except (OSError, ValueError, KeyError) as e:
        raise MeerkatError(
            f"{predictions} does not hold the scores of this run's eval set ({type(e).__name__}); "
            "rerun with --force to train and report again"
        ) from None
    return np.concatenate([scores, 1 - scores], axis=1) if classes.is_pair else scores


def _fmt(x):
    return "n/a" if x is None else f"{x:.4f}"


def _provenance(model_dir: Path) -> dict:
    from meerkat.core.codeversion import revision
    from meerkat.embed.weights import sha256

    return {"meerkat_revision": revision(), "model_sha256": sha256(model_dir / "saved_model.pb")}
