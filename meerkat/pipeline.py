"""The whole job, stage after stage: Samples -> docs -> records -> model -> report."""

import logging
import platform
import time
from dataclasses import asdict
from pathlib import Path

from meerkat import __version__, backbones, fileio, records
from meerkat.createdocs import DocsConfig, createdocs, read_dict
from meerkat.doctor import log_devices
from meerkat.errors import MeerkatError, UsageError

log = logging.getLogger(__name__)


def train_and_export(train_data: str, eval_data: str, input_dict, output_dir, cfg, embedder=None) -> dict:
    """Train a head on preprocessed sets, export the SavedModel and write the report."""
    import tensorflow as tf

    from meerkat import export, report, train

    start = time.perf_counter()
    output_dir = fileio.ensure_dir(output_dir)
    train_set = train.load(train_data, "train")
    eval_set = train.load(eval_data, "eval")
    train.check_compatible(train_set, eval_set, train_data, eval_data)
    labels = read_dict(input_dict) if input_dict else list(train_set.manifest["labels"])
    if labels != train_set.manifest["labels"]:
        raise MeerkatError(f"{input_dict} lists {labels} but the records were labelled with {train_set.manifest['labels']}")
    spec = records.spec_of(train_set.manifest)
    if embedder is None or embedder.spec != spec:
        embedder = backbones.Embedder(spec)  # before training: fail fast if the weights are gone

    head = train.train(train_set, eval_set, cfg, output_dir / "logs")
    export.export_model(embedder, head, labels, output_dir / "model")
    _, _, scores = train.evaluate(head, eval_set)
    run = {
        "meerkat_version": __version__,
        "tensorflow_version": tf.__version__,
        "python_version": platform.python_version(),
        "train_data": train_data,
        "eval_data": eval_data,
        "backbone": asdict(spec),
        "train_config": asdict(cfg),
        "train_records": len(train_set.uris),
        "train_seconds": round(time.perf_counter() - start, 2),
    }
    result = report.write_report(output_dir / "report", eval_set.uris, eval_set.labels, scores, labels, {"run": run})
    log.info(
        "Eval set: accuracy %.4f, precision %s, recall %s on %d images -> %s",
        result["accuracy"],
        _fmt(result["precision"]),
        _fmt(result["recall"]),
        len(eval_set.uris),
        output_dir / "report" / "metrics.json",
    )
    return result


def _fmt(x):
    return "n/a" if x is None else f"{x:.4f}"


def run(
    samples,
    output,
    docs_cfg: DocsConfig,
    backbone: str,
    alpha,
    weights: str,
    embed_batch_size: int,
    train_cfg,
    preprocessed_train_set: str | None = None,
    preprocessed_eval_set: str | None = None,
) -> dict:
    """createdocs -> preprocess (train and eval) -> train -> export -> report, in OUTPUT."""
    from meerkat.preprocess import preprocess

    if (preprocessed_train_set is None) != (preprocessed_eval_set is None):
        raise UsageError("give both --preprocessed-train-set and --preprocessed-eval-set, or neither")
    output = fileio.ensure_dir(output)
    start = time.perf_counter()
    log_devices()
    if preprocessed_train_set is not None:
        log.info("Using preprocessed sets; %s is not read.", samples)
        result = train_and_export(preprocessed_train_set, preprocessed_eval_set, None, output, train_cfg)
    else:
        docs = createdocs(docs_cfg)
        embedder = backbones.Embedder(backbones.resolve(backbone, alpha, weights))
        prefixes = {}
        for name, csv_path in (("train", docs.training_csv), ("eval", docs.testing_csv)):
            prefix = output / "records" / name
            preprocess(csv_path, docs.dict_txt, prefix, embedder, embed_batch_size)
            prefixes[name] = str(prefix)
        result = train_and_export(prefixes["train"], prefixes["eval"], docs.dict_txt, output, train_cfg, embedder)
    log.info("Done in %.1f s: model in %s, TensorBoard logs in %s", time.perf_counter() - start, output / "model", output / "logs")
    return result
