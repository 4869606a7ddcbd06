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
from dataclasses import asdict, dataclass, field
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
from meerkat.samples.docs import read_csv, read_dict
from meerkat.samples.imagefiles import Unreadable, for_model, read_bytes, warn_skipped, write_skipped

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 15.0  # without a terminal: a progress line at most this often


def _input_key(rows, labels, spec: BackboneSpec) -> str:
    """Fingerprint of everything a shard depends on: rows, the files' sizes and times, the backbone,
    the code that makes shards."""
    h = hashlib.sha256(json.dumps([labels, asdict(spec), codeversion.key("shards")]).encode())
    for path, label in rows:
        try:
            st = os.stat(path)
            h.update(f"{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode(**atomic.TEXT))
        except OSError:
            h.update(f"{path}\0{label}\0missing\n".encode(**atomic.TEXT))
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


def preprocess(cfg: PreprocessConfig, spec: BackboneSpec) -> None:
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
        return

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


@dataclass
class _Embedded:
    embedded: int
    skipped: int
    computed: int
    counts: dict


def _write_shard(rows, labels, shard: Path, spec: BackboneSpec, cache: EmbeddingCache, batch_size: int) -> _Embedded:
    """Write `rows` to `shard` in CSV order, computing only the embeddings the cache lacks."""
    start = time.perf_counter()
    found = _scan(rows, labels, cache, shard)
    skipped = found.skipped
    todo = len(found.todo_files) + len(found.todo_converted)
    log.info(
        "%s: %d images, %d embeddings from the cache, %d to compute with %s",
        shard.name,
        len(rows),
        len(found.usable) - todo,
        todo,
        spec.label,
    )
    if todo:
        failed = _compute(found.todo_files, found.todo_converted, embedder_for(spec), cache, batch_size, shard)
        reason_of = dict(failed)  # by hash; copies of a crop that failed fail the same way
        skipped += [(p, reason_of[h]) for p, _, h in found.usable if h in reason_of]
    computed_seconds = time.perf_counter() - start
    counts = _write_examples(shard, found.usable, {p for p, _ in skipped}, cache, labels)
    seconds = time.perf_counter() - start

    order = {p: i for i, (p, _) in enumerate(rows)}
    skipped.sort(key=lambda s: order[s[0]])
    write_skipped(tfrecords.skipped_path(shard), skipped)
    written = sum(counts.values())
    rate = todo / computed_seconds if todo and computed_seconds > 0 else 0.0
    log.info("Embedded %d images (%d computed, %.1f images/s) in %.1f s -> %s", written, todo, rate, seconds, shard)
    warn_skipped(skipped, tfrecords.skipped_path(shard))
    return _Embedded(written, len(skipped), todo, counts)


@dataclass
class _Scanned:
    """What reading a shard's rows found, holding no image: a path, label and hash per file."""

    usable: list = field(default_factory=list)  # (path, label index, content hash), in CSV order
    skipped: list = field(default_factory=list)  # (path, reason)
    # To embed: (hash, path) of files TensorFlow decodes as they are, read again in the graph; and of
    # files it cannot (TIFF), converted again when their turn comes, so no image is held in memory.
    todo_files: list = field(default_factory=list)
    todo_converted: list = field(default_factory=list)


def _scan(rows, labels, cache: EmbeddingCache, shard: Path) -> _Scanned:
    """Read and hash every file of `rows`; check for the model those whose embedding the cache lacks."""
    found = _Scanned()
    known = set()  # hashes whose embedding the cache holds or the todo lists will compute
    name = shard.name.removesuffix(".tfrecord.gz")
    with Progress(f"{name}: reading", len(rows), "files", every=PROGRESS_EVERY_S) as reading:
        for i in range(0, len(rows), 512):
            chunk = []
            for n, (path, label) in enumerate(rows[i : i + 512], start=i + 1):
                try:
                    data = read_bytes(path)
                    chunk.append((path, labels.index(label), content_hash(data), data))
                except Unreadable as e:
                    found.skipped.append((path, str(e)))
                reading.update(n)
            known |= set(cache.get([h for _, _, h, _ in chunk]))
            for path, label, h, data in chunk:
                if h in known:
                    found.usable.append((path, label, h))
                    continue
                try:
                    prepared = for_model(data)
                except Unreadable as e:
                    found.skipped.append((path, str(e)))
                    continue
                found.usable.append((path, label, h))
                known.add(h)  # identical crops are embedded once
                (found.todo_files if prepared is data else found.todo_converted).append((h, path))
    return found


def _write_examples(shard: Path, usable: list, bad: set, cache: EmbeddingCache, labels) -> dict[str, int]:
    """Write the shard: an example for each usable file not in `bad`, its vector from the cache.
    Returns the examples per class."""
    import tensorflow as tf

    counts = {label: 0 for label in labels}
    with atomic.atomic_path(shard) as tmp, tf.io.TFRecordWriter(str(tmp), options="GZIP") as writer:
        for i in range(0, len(usable), 512):
            chunk = [row for row in usable[i : i + 512] if row[0] not in bad]
            vectors = cache.get([h for _, _, h in chunk])
            for path, label, h in chunk:
                if h not in vectors:  # its content failed to decode (listed as skipped)
                    continue
                writer.write(tfrecords.encode_example(path, label, vectors[h]))
                counts[labels[label]] += 1
    return counts


def _compute(todo_files, todo_converted, embedder: Embedder, cache: EmbeddingCache, batch_size: int, shard: Path):
    """Embed the crops into the cache, one committed batch at a time; return [(hash, reason)] of failures.

    Files that TensorFlow decodes as they are (almost all) are read and decoded inside the tf.data
    graph, in parallel with the backbone and with no Python per image; the others are converted
    one by one as the pipeline reaches them.
    """
    import tensorflow as tf

    from meerkat.embed.decode import decode_and_resize, decode_error

    size = embedder.size

    def converted():
        for h, path in todo_converted:
            try:
                yield h, for_model(read_bytes(path))
            except Unreadable:
                continue  # changed since the scan: not stored, so diagnosed below

    hashes = tf.constant([h for h, _ in todo_files], tf.string, shape=[len(todo_files)])
    # The names' bytes: a str tensor would be UTF-8, which a name that is not UTF-8 cannot be.
    paths = tf.constant([p.encode(**atomic.TEXT) for _, p in todo_files], tf.string, shape=[len(todo_files)])
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
