"""The whole job, stage after stage: Samples -> docs -> records -> model -> report.

`run` holds a lock on its output folder, reuses every finished piece of an earlier attempt
(shards, the training checkpoint) and does nothing when that attempt already finished, unless
--force. Outputs are written atomically, so a kill at any point leaves nothing half-written.
"""

import hashlib
import json
import logging
import math
import platform
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from meerkat import __version__, backbones, faults, fileio, locks, records
from meerkat.createdocs import DocsConfig, createdocs, read_csv, read_dict
from meerkat.devices import log_devices
from meerkat.errors import MeerkatError, UsageError
from meerkat.settings import IMAGES_PER_SHARD

log = logging.getLogger(__name__)


def _fingerprint(train_set, eval_set, cfg) -> str:
    """Everything a trained model depends on: the records' inputs and the training options."""
    parts = [train_set.manifest["input_keys"], eval_set.manifest["input_keys"], asdict(cfg), __version__]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _already_done(output_dir: Path, fingerprint: str) -> bool:
    try:
        run = json.loads((output_dir / "report" / "run.json").read_text())
    except (OSError, ValueError):
        return False
    return run.get("fingerprint") == fingerprint and (output_dir / "model" / "saved_model.pb").is_file()


def train_and_export(train_data: str, eval_data: str, input_dict, output_dir, cfg, embedder=None, force=False) -> dict:
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
    fingerprint = _fingerprint(train_set, eval_set, cfg)
    if not force and _already_done(output_dir, fingerprint):
        log.info("%s already holds the finished model for these inputs and options; nothing to do (--force redoes it).", output_dir)
        return json.loads((output_dir / "report" / "metrics.json").read_text())
    spec = records.spec_of(train_set.manifest)
    if embedder is None or embedder.spec != spec:
        embedder = backbones.Embedder(spec)  # before training: fail fast if the weights are gone

    checkpoint = output_dir / "checkpoints" / "head.npz"
    if force:
        fileio.remove(checkpoint, "--force")
    head = train.train(train_set, eval_set, cfg, output_dir / "logs", checkpoint, fingerprint)
    faults.point("export")
    export.export_model(embedder, head, labels, output_dir / "model")
    _, _, scores = train.evaluate(head, eval_set)
    result = report.write_report(output_dir / "report", eval_set.uris, eval_set.labels, scores, labels)
    run = {
        "fingerprint": fingerprint,
        "meerkat_version": __version__,
        "tensorflow_version": tf.__version__,
        "python_version": platform.python_version(),
        "train_data": train_data,
        "eval_data": eval_data,
        "backbone": asdict(spec),
        "train_config": asdict(cfg),
        "train_records": len(train_set.uris),
        "eval_records": len(eval_set.uris),
        "train_seconds": round(time.perf_counter() - start, 2),
    }
    # Written last: its fingerprint marks the run as finished.
    fileio.write_text(output_dir / "report" / "run.json", json.dumps(run, indent=2) + "\n")
    fileio.remove(checkpoint.parent, "the finished run's cleanup")
    log.info(
        "Eval set: accuracy %.4f, precision %s, recall %s on %d images -> %s",
        result["accuracy"],
        _fmt(result["precision"]),
        _fmt(result["recall"]),
        len(eval_set.uris),
        output_dir / "report" / "metrics.json",
    )
    return result


@contextmanager
def locked(output: Path):
    """Hold OUTPUT's lock, and clear what killed runs left half-written there."""
    with locks.output_lock(output):
        for folder in (output, output / "docs", output / "records", output / "report", output / "checkpoints"):
            fileio.remove_stale_temps(folder)
        yield


def train(train_data: str, eval_data: str, input_dict, output_dir, cfg, force=False) -> dict:
    """`meerkat train`: train_and_export under the same lock as `run`."""
    output_dir = fileio.ensure_dir(output_dir)
    with locked(output_dir):
        return train_and_export(train_data, eval_data, input_dict, output_dir, cfg, force=force)


def _fmt(x):
    return "n/a" if x is None else f"{x:.4f}"


def _preprocess_set(csv_path, dict_txt, prefix: Path, embedder, batch_size: int | None, force: bool, cache_dir):
    """Embed one docs CSV as ceil(N / IMAGES_PER_SHARD) shards; return the embedder, if one was built."""
    from meerkat.preprocess import preprocess

    count = max(1, math.ceil(len(read_csv(csv_path)) / IMAGES_PER_SHARD))
    for old in sorted(prefix.parent.glob(f"{prefix.name}-*-of-*")):
        if (not old.name.split(".")[0].endswith(f"-of-{count:05d}") or force) and not fileio.is_temp(old):
            fileio.remove(old, "--force")  # shards of another split (the data set changed size) or redone on --force
    for index in range(count):
        embedder = preprocess(csv_path, dict_txt, prefix, embedder, batch_size, index, count, cache_dir).embedder or embedder
    return embedder


def run(
    samples,
    output,
    docs_cfg: DocsConfig,
    backbone: str,
    alpha,
    weights: str,
    embed_batch_size: int | None,
    train_cfg,
    preprocessed_train_set: str | None = None,
    preprocessed_eval_set: str | None = None,
    force: bool = False,
    precision: str = "float32",
    cache_dir=None,
) -> dict:
    """createdocs -> preprocess (train and eval) -> train -> export -> report, in OUTPUT."""
    if (preprocessed_train_set is None) != (preprocessed_eval_set is None):
        raise UsageError("give both --preprocessed-train-set and --preprocessed-eval-set, or neither")
    output = fileio.ensure_dir(output)
    with locked(output):
        start = time.perf_counter()
        if preprocessed_train_set is not None:
            log_devices()
            log.info("Using preprocessed sets; %s is not read.", samples)
            result = train_and_export(preprocessed_train_set, preprocessed_eval_set, None, output, train_cfg, force=force)
        else:
            docs = createdocs(docs_cfg)  # before TensorFlow loads: a wrong folder is reported at once
            log_devices()
            embedder = backbones.resolve(backbone, alpha, weights, precision)
            prefixes = {}
            for name, csv_path in (("train", docs.training_csv), ("eval", docs.testing_csv)):
                prefix = output / "records" / name
                embedder = _preprocess_set(
                    csv_path, docs.dict_txt, prefix, embedder, embed_batch_size, force, cache_dir or output / "cache"
                )
                prefixes[name] = str(prefix)
            built = embedder if isinstance(embedder, backbones.Embedder) else None
            result = train_and_export(prefixes["train"], prefixes["eval"], docs.dict_txt, output, train_cfg, built, force)
        log.info("Done in %.1f s: model in %s, TensorBoard logs in %s", time.perf_counter() - start, output / "model", output / "logs")
    return result
