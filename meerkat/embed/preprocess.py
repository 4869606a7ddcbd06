"""Stage 2: docs CSV -> frozen-backbone embeddings in a gzip TFRecord shard.

Files stream through tf.data (read and check in Python, decode and resize in parallel with the
backbone): no image is held in memory beyond the batches in flight, only a path, label and hash
per row (a few hundred bytes). A file that cannot be used is skipped and
listed with its reason in PREFIX-....skipped.csv; the run goes on.

A shard whose manifest shows it was made from the same rows, files and backbone is reused, not
recomputed: a rerun after a kill only does the work that was lost.
"""

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from meerkat import __version__
from meerkat.core import atomic, codeversion, faults
from meerkat.core.config import PreprocessConfig
from meerkat.core.errors import MeerkatError
from meerkat.core.progress import Progress
from meerkat.core.slurm import array_shard, check_shard
from meerkat.embed import devices, tfrecords
from meerkat.embed.backbones import BackboneSpec
from meerkat.embed.cache import EmbeddingCache, content_hash
from meerkat.embed.embedder import Embedder, embedder_for
from meerkat.samples.createdocs import read_csv, read_dict
from meerkat.samples.imagefiles import Unreadable, decode_error, for_model, read_bytes, warn_skipped, write_skipped

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 15.0  # without a terminal: a progress line at most this often


@dataclass
class Summary:
    shard: Path
    embedded: int
    skipped: int
    seconds: float


def _input_key(rows, labels, spec: BackboneSpec) -> str:
    """Fingerprint of everything a shard depends on: rows, the files' sizes and times, the backbone,
    the code that makes shards."""
    h = hashlib.sha256(json.dumps([labels, asdict(spec), codeversion.key("shards")]).encode())
    for path, label in rows:
        try:
            st = os.stat(path)
            h.update(f"{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{path}\0{label}\0missing\n".encode())
    return h.hexdigest()


def _finished(shard: Path, key: str) -> dict | None:
    manifest = tfrecords.manifest_path(shard)
    if shard.is_file() and manifest.is_file():
        try:
            m = json.loads(manifest.read_text())
        except ValueError:
            return None
        if m.get("input_key") == key:
            return m
    return None


def preprocess(cfg: PreprocessConfig, spec: BackboneSpec) -> Summary:
    """Embed this worker's shard of a docs CSV. The cache defaults to cache/ beside the shards."""
    shard_index, num_shards = array_shard(cfg.shard_index, cfg.num_shards)
    check_shard(shard_index, num_shards)
    labels = read_dict(cfg.input_dict)
    rows = read_csv(cfg.input_path)
    for n, (path, label) in enumerate(rows, start=1):
        if label not in labels:
            raise MeerkatError(
                f"{cfg.input_path}, row {n}: unknown label {label!r} for {path}; expected one of {', '.join(labels)}"
            )
    rows = rows[shard_index::num_shards]
    shard = tfrecords.shard_path(cfg.output_path, shard_index, num_shards)
    atomic.ensure_dir(shard.parent)
    key = _input_key(rows, labels, spec)
    finished = _finished(shard, key)
    if finished is not None:
        log.info(
            "Reusing finished shard %s (%d images embedded, %d skipped)",
            shard,
            finished["records"],
            finished["skipped"],
        )
        return Summary(shard, finished["records"], finished["skipped"], 0.0)

    cache = EmbeddingCache(Path(cfg.cache_dir) if cfg.cache_dir else shard.parent / "cache", spec)
    try:
        result = _write_shard(rows, labels, shard, spec, cache, devices.batch_size(cfg.embed_batch_size))
    finally:
        cache.close()
    manifest = {
        "backbone": asdict(spec),
        "image_size": spec.arch.image_size,
        "embedding_dim": spec.arch.embedding_dim(spec.alpha),
        "embedding_code": codeversion.key("embedding"),
        "labels": labels,
        "shard_index": shard_index,
        "num_shards": num_shards,
        "records": result.embedded,
        "skipped": result.skipped,
        "computed": result.computed,
        "counts": result.counts,
        "source_csv": str(cfg.input_path),
        "source_csv_sha256": hashlib.sha256(Path(cfg.input_path).read_bytes()).hexdigest(),
        "input_key": key,
        "meerkat_version": __version__,
    }
    atomic.write_text(tfrecords.manifest_path(shard), json.dumps(manifest, indent=2) + "\n")
    return Summary(shard, result.embedded, result.skipped, result.seconds)


@dataclass
class _Embedded:
    embedded: int
    skipped: int
    computed: int
    seconds: float
    counts: dict


def _write_shard(rows, labels, shard: Path, spec: BackboneSpec, cache: EmbeddingCache, batch_size: int) -> _Embedded:
    """Write `rows` to `shard` in CSV order, computing only the embeddings the cache lacks."""
    import tensorflow as tf

    start = time.perf_counter()
    skipped: list[tuple[str, str]] = []
    scanned = []  # (path, label index, content hash) of every usable file
    cache_hits = set()
    # To embed: (hash, path) of files TensorFlow decodes as they are, read again in the graph; and of
    # files it cannot (TIFF), converted again when their turn comes, so no image is held in memory.
    todo_files, todo_converted = [], []
    name = shard.name.removesuffix(".tfrecord.gz")
    with Progress(f"{name}: reading", len(rows), "files", every=PROGRESS_EVERY_S) as reading:
        for i in range(0, len(rows), 512):
            chunk = []
            for n, (path, label) in enumerate(rows[i : i + 512], start=i + 1):
                try:
                    data = read_bytes(path)
                    chunk.append((path, labels.index(label), content_hash(data), data))
                except Unreadable as e:
                    skipped.append((path, str(e)))
                reading.update(n)
            cache_hits |= set(cache.get([h for _, _, h, _ in chunk]))
            for path, label, h, data in chunk:
                if h in cache_hits:
                    scanned.append((path, label, h))
                    continue
                try:
                    prepared = for_model(data)
                except Unreadable as e:
                    skipped.append((path, str(e)))
                    continue
                scanned.append((path, label, h))
                cache_hits.add(h)  # identical crops are embedded once
                (todo_files if prepared is data else todo_converted).append((h, path))
    todo = len(todo_files) + len(todo_converted)
    log.info(
        "%s: %d images, %d embeddings from the cache, %d to compute with %s",
        shard.name,
        len(rows),
        len(scanned) - todo,
        todo,
        spec.label,
    )
    if todo:
        failed = _compute(todo_files, todo_converted, embedder_for(spec), cache, batch_size, shard)
        reason_of = dict(failed)  # by hash; copies of a crop that failed fail the same way
        skipped += [(p, reason_of[h]) for p, _, h in scanned if h in reason_of]
    computed_seconds = time.perf_counter() - start

    bad = {p for p, _ in skipped}
    counts = {label: 0 for label in labels}
    written = 0
    with atomic.atomic_path(shard) as tmp, tf.io.TFRecordWriter(str(tmp), options="GZIP") as writer:
        for i in range(0, len(scanned), 512):
            chunk = [row for row in scanned[i : i + 512] if row[0] not in bad]
            vectors = cache.get([h for _, _, h in chunk])
            for path, label, h in chunk:
                if h not in vectors:  # its content failed to decode (listed as skipped)
                    continue
                writer.write(tfrecords.encode_example(path, label, vectors[h]))
                counts[labels[label]] += 1
                written += 1
    seconds = time.perf_counter() - start

    order = {p: i for i, (p, _) in enumerate(rows)}
    skipped.sort(key=lambda s: order[s[0]])
    write_skipped(tfrecords.skipped_path(shard), skipped)

    rate = todo / computed_seconds if todo and computed_seconds > 0 else 0.0
    log.info("Embedded %d images (%d computed, %.1f images/s) in %.1f s -> %s", written, todo, rate, seconds, shard)
    warn_skipped(skipped, tfrecords.skipped_path(shard))
    return _Embedded(written, len(skipped), todo, seconds, counts)


def _compute(todo_files, todo_converted, embedder: Embedder, cache: EmbeddingCache, batch_size: int, shard: Path):
    """Embed the crops into the cache, one committed batch at a time; return [(hash, reason)] of failures.

    Files that TensorFlow decodes as they are (almost all) are read and decoded inside the tf.data
    graph, in parallel with the backbone and with no Python per image; the others are converted
    one by one as the pipeline reaches them.
    """
    import tensorflow as tf

    from meerkat.embed.decode import decode_and_resize

    size = embedder.size

    def converted():
        for h, path in todo_converted:
            try:
                yield h, for_model(read_bytes(path))
            except Unreadable:
                continue  # changed since the scan: not stored, so diagnosed below

    hashes = tf.constant([h for h, _ in todo_files], tf.string, shape=[len(todo_files)])
    paths = tf.constant([p for _, p in todo_files], tf.string, shape=[len(todo_files)])
    as_is = tf.data.Dataset.from_tensor_slices((hashes, paths)).map(lambda h, p: (h, tf.io.read_file(p)))
    spec = (tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.string))
    ds = as_is.concatenate(tf.data.Dataset.from_generator(converted, output_signature=spec))
    ds = ds.map(lambda h, data: (h, decode_and_resize(data, size)), num_parallel_calls=2, deterministic=True)
    ds = ds.ignore_errors().batch(batch_size).prefetch(2)
    options = tf.data.Options()
    options.autotune.enabled = False
    ds = ds.with_options(options)

    fault_name = tfrecords.fault_name(shard)
    total = len(todo_files) + len(todo_converted)
    name = shard.name.removesuffix(".tfrecord.gz")
    embedded = 0
    with Progress(f"{name}: embedding", total, "images", every=PROGRESS_EVERY_S) as progress:
        for hashes, images in ds:
            embeddings = embedder.embed(images).numpy()
            cache.put(zip(hashes.numpy(), embeddings, strict=True))
            embedded += len(embeddings)
            faults.point(f"preprocess:{fault_name}")
            progress.update(embedded)
    stored = set(cache.get([h for h, _ in todo_files + todo_converted]))
    return [(h, decode_error(p)) for h, p in todo_files + todo_converted if h not in stored]
