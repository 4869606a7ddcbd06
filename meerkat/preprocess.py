"""Stage 2: docs CSV -> frozen-backbone embeddings in a gzip TFRecord shard.

Files stream through tf.data (read and check in Python, decode and resize in parallel with the
backbone), so memory does not grow with the data set. A file that cannot be used is skipped and
listed with its reason in PREFIX-....skipped.csv; the run goes on.

A shard whose manifest shows it was made from the same rows, files and backbone is reused, not
recomputed: a rerun after a kill only does the work that was lost.
"""

import csv
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from meerkat import __version__, faults, fileio, records
from meerkat.backbones import BackboneSpec, Embedder
from meerkat.createdocs import read_csv, read_dict
from meerkat.errors import MeerkatError, UsageError
from meerkat.imagefiles import Unreadable, read_for_model
from meerkat.settings import PREPROCESSING_VERSION

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 15.0


@dataclass
class Summary:
    shard: Path
    embedded: int
    skipped: int
    seconds: float
    reused: bool
    embedder: Embedder | None  # built only if something had to be computed; hand it to the next call


def check_shard(shard_index: int, num_shards: int) -> None:
    if num_shards < 1:
        raise UsageError(f"--num-shards must be at least 1, received {num_shards}")
    if not 0 <= shard_index < num_shards:
        raise UsageError(f"--shard-index must be in 0..{num_shards - 1} for --num-shards {num_shards}, received {shard_index}")


def _input_key(rows, labels, spec: BackboneSpec) -> str:
    """Fingerprint of everything a shard depends on: rows, the files' sizes and times, the backbone."""
    h = hashlib.sha256(json.dumps([labels, asdict(spec), PREPROCESSING_VERSION]).encode())
    for path, label in rows:
        try:
            st = os.stat(path)
            h.update(f"{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{path}\0{label}\0missing\n".encode())
    return h.hexdigest()


def _finished(shard: Path, key: str) -> dict | None:
    manifest = records.manifest_path(shard)
    if shard.is_file() and manifest.is_file():
        try:
            m = json.loads(manifest.read_text())
        except ValueError:
            return None
        if m.get("input_key") == key:
            return m
    return None


def _decode_error(path: str, size: int) -> str:
    """Why a file that passed the checks failed in the pipeline, found by decoding it alone."""
    import tensorflow as tf

    from meerkat.images import decode_and_resize

    try:
        decode_and_resize(read_for_model(path), size)
    except Unreadable as e:
        return str(e)  # it changed since it was read
    except tf.errors.OpError as e:
        # "{{function_node ...}} Invalid JPEG data ... [Op:DecodeImage]" -> "Invalid JPEG data ..."
        message = re.sub(r"\{\{.*?\}\}|\[Op:\w+\]", "", e.message.splitlines()[0]).strip()
        return f"cannot decode: {message}"
    return "failed in the pipeline but decodes alone; rerun with --debug"


def preprocess(
    input_csv,
    input_dict,
    output_prefix,
    embedder: Embedder | BackboneSpec,
    batch_size: int = 32,
    shard_index: int = 0,
    num_shards: int = 1,
) -> Summary:
    check_shard(shard_index, num_shards)
    labels = read_dict(input_dict)
    rows = read_csv(input_csv)
    for n, (path, label) in enumerate(rows, start=1):
        if label not in labels:
            raise MeerkatError(f"{input_csv}, row {n}: unknown label {label!r} for {path}; expected one of {', '.join(labels)}")
    rows = rows[shard_index::num_shards]
    shard = records.shard_path(output_prefix, shard_index, num_shards)
    fileio.ensure_dir(shard.parent)
    spec = embedder if isinstance(embedder, BackboneSpec) else embedder.spec
    key = _input_key(rows, labels, spec)
    done = _finished(shard, key)
    if done is not None:
        log.info("Reusing finished shard %s (%d images embedded, %d skipped)", shard, done["records"], done["skipped"])
        return Summary(shard, done["records"], done["skipped"], 0.0, True, None if isinstance(embedder, BackboneSpec) else embedder)
    if isinstance(embedder, BackboneSpec):  # built only once the inputs are known to be good
        embedder = Embedder(embedder)
    summary = _embed(rows, labels, shard, embedder, batch_size, Path(output_prefix).name)
    manifest = {
        "backbone": asdict(spec),
        "image_size": embedder.size,
        "embedding_dim": int(embedder.model.output_shape[-1]),
        "preprocessing_version": PREPROCESSING_VERSION,
        "labels": labels,
        "shard_index": shard_index,
        "num_shards": num_shards,
        "records": summary.embedded,
        "skipped": summary.skipped,
        "counts": summary.counts,
        "source_csv": str(input_csv),
        "input_key": key,
        "meerkat_version": __version__,
    }
    fileio.write_text(records.manifest_path(shard), json.dumps(manifest, indent=2) + "\n")
    return Summary(shard, summary.embedded, summary.skipped, summary.seconds, False, embedder)


@dataclass
class _Embedded:
    embedded: int
    skipped: int
    seconds: float
    counts: dict


def _embed(rows, labels, shard: Path, embedder: Embedder, batch_size: int, fault_name: str) -> _Embedded:
    import tensorflow as tf

    from meerkat.images import decode_and_resize

    size = embedder.size
    skipped: list[tuple[str, str]] = []

    def source():
        for path, label in rows:
            try:
                yield path, labels.index(label), read_for_model(path)
            except Unreadable as e:
                skipped.append((path, str(e)))

    ds = tf.data.Dataset.from_generator(
        source,
        output_signature=(tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.string)),
    )
    ds = ds.map(lambda p, l, b: (p, l, decode_and_resize(b, size)), num_parallel_calls=2, deterministic=True)
    # A file that passed the checks but still fails to decode (a truncated JPEG) is dropped here
    # and diagnosed afterwards; fixed parallelism, autotune off: its teardown can stall for seconds.
    ds = ds.ignore_errors().batch(batch_size).prefetch(2)
    options = tf.data.Options()
    options.autotune.enabled = False
    ds = ds.with_options(options)

    log.info("Embedding %d images into %s with %s", len(rows), shard.name, embedder.spec.name)
    seen: set[str] = set()
    counts = {label: 0 for label in labels}
    start = last = time.perf_counter()
    with fileio.atomic_path(shard) as tmp, tf.io.TFRecordWriter(str(tmp), options="GZIP") as writer:
        for batch_paths, batch_labels, images in ds:
            embeddings = embedder.embed(images).numpy()
            for uri, label, embedding in zip(batch_paths.numpy(), batch_labels.numpy(), embeddings):
                uri = uri.decode("utf-8")
                writer.write(records.encode_example(uri, int(label), embedding))
                seen.add(uri)
                counts[labels[label]] += 1
            faults.point(f"preprocess:{fault_name}")
            if time.perf_counter() - last > PROGRESS_EVERY_S:
                last = time.perf_counter()
                log.info("  %d/%d images, %.1f images/s", len(seen), len(rows), len(seen) / (last - start))
    seconds = time.perf_counter() - start

    listed = {p for p, _ in skipped}
    skipped += [(p, _decode_error(p, size)) for p, _ in rows if p not in seen and p not in listed]
    order = {p: i for i, (p, _) in enumerate(rows)}
    skipped.sort(key=lambda s: order[s[0]])
    with fileio.atomic_open(records.skipped_path(shard), "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows([("path", "reason"), *skipped])

    rate = len(seen) / seconds if seconds > 0 else 0.0
    log.info("Embedded %d images in %.1f s (%.1f images/s) -> %s", len(seen), seconds, rate, shard)
    if skipped:
        log.warning("warning: skipped %d unusable files (listed in %s):", len(skipped), records.skipped_path(shard))
        for path, reason in skipped[:10]:
            log.warning("  %s: %s", path, reason)
        if len(skipped) > 10:
            log.warning("  ... and %d more", len(skipped) - 10)
    return _Embedded(len(seen), len(skipped), seconds, counts)
