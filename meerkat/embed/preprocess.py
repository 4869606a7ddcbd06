"""Stage 2: docs CSV -> frozen-backbone embeddings in a gzip TFRecord shard.

Files stream through tf.data (read, hash and check in Python, decode and resize in parallel with
the backbone): no image is held in memory beyond the batches in flight, only a path, label and hash
per row (a few hundred bytes). A file that cannot be used is skipped and listed with its reason in
PREFIX-....skipped.csv; the run goes on.

A crop is read twice, to hash it and to embed it, and the second read is hashed again: the vector
goes to the cache under the hash of the very bytes embedded, never under another picture's.

A shard whose manifest shows it was made from the same rows, the same file contents (their sha256,
which a size and a time copied with `cp -p` cannot fake) and the same backbone is reused, not
recomputed, once the shard file's own sha256 shows it is whole: a rerun after a kill only does the
work that was lost.
"""

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from meerkat import __version__
from meerkat.core import atomic, codeversion, faults
from meerkat.core.config import PreprocessConfig
from meerkat.core.progress import Progress
from meerkat.core.slurm import array_shard, check_shard
from meerkat.embed import devices, tfrecords
from meerkat.embed.backbones import BackboneSpec
from meerkat.embed.cache import EmbeddingCache, content_hash
from meerkat.embed.embedder import Embedder, embedder_for
from meerkat.samples.classes import from_labels
from meerkat.samples.docs import read_csv, read_dict
from meerkat.samples.imagefiles import Unreadable, for_model, read_bytes, warn_skipped, write_skipped

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 15.0  # without a terminal: a progress line at most this often


def _input_key(rows_key: str, labels, spec: BackboneSpec) -> str:
    """Fingerprint of everything a shard depends on: its rows and their files' contents (rows_key, as
    the scan hashed them), the backbone, the code that makes shards."""
    parts = [labels, asdict(spec), codeversion.key("shards"), rows_key]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _finished(shard: Path, key: str) -> dict | None:
    """The manifest of a finished shard made from `key`'s inputs, unless the shard file is damaged."""
    manifest = tfrecords.manifest_path(shard)
    if shard.is_file() and manifest.is_file():
        try:
            m = json.loads(manifest.read_text())
        except ValueError:
            return None
        if m.get("input_key") != key:
            return None
        if m.get("sha256") == _sha256(shard):
            return m
        log.warning("warning: shard %s is damaged (it is not the file its manifest describes); redoing it", shard)
    return None


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def preprocess(cfg: PreprocessConfig, spec: BackboneSpec) -> None:
    """Embed this worker's shard of a docs CSV. The cache defaults to cache/ beside the shards."""
    shard_index, num_shards = array_shard(cfg.shard_index, cfg.num_shards)
    check_shard(shard_index, num_shards)
    labels = read_dict(cfg.input_dict)
    rows = read_csv(cfg.input_path, from_labels(labels), cfg.input_dict)  # each row's label one of dict.txt's
    rows = rows[shard_index::num_shards]
    shard = tfrecords.shard_path(cfg.output_path, shard_index, num_shards)
    atomic.ensure_dir(shard.parent)
    cache = EmbeddingCache(Path(cfg.cache_dir) if cfg.cache_dir else shard.parent / "cache", spec)
    try:
        found = _scan(rows, labels, cache, shard)
        key = _input_key(found.rows_key, labels, spec)
        finished = _finished(shard, key)
        if finished is not None:
            log.info(
                "Reusing finished shard %s (%d images embedded, %d skipped)",
                shard,
                finished["records"],
                finished["skipped"],
            )
            return
        result = _write_shard(found, labels, shard, spec, cache, devices.batch_size(cfg.embed_batch_size))
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
        # A file that changed while it was read is skipped: a rerun must redo the shard to include it.
        "input_key": f"{key}+changed" if result.changed else key,
        "sha256": result.sha256,
        "meerkat_version": __version__,
    }
    atomic.write_text(tfrecords.manifest_path(shard), json.dumps(manifest, indent=2) + "\n")


@dataclass
class _Embedded:
    embedded: int
    skipped: int
    computed: int
    counts: dict
    changed: int  # files that changed between their scan and their embedding
    sha256: str  # of the shard file


def _write_shard(found, labels, shard: Path, spec: BackboneSpec, cache: EmbeddingCache, batch_size: int) -> _Embedded:
    """Write the scanned rows to `shard` in CSV order, computing only the embeddings the cache lacks."""
    start = time.perf_counter()
    rows = found.rows
    skipped = found.skipped
    todo = len(found.todo)
    log.info(
        "%s: %d images, %d embeddings from the cache, %d to compute with %s",
        shard.name,
        len(rows),
        len(found.usable) - todo,
        todo,
        spec.label,
    )
    changed = 0
    if todo:
        failed, changed = _compute(found.todo, embedder_for(spec), cache, batch_size, shard)
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
    return _Embedded(written, len(skipped), todo, counts, changed, _sha256(shard))


@dataclass
class _Scanned:
    """What reading a shard's rows found, holding no image: a path, label and hash per file."""

    rows: list  # the shard's (path, label), in CSV order
    usable: list = field(default_factory=list)  # (path, label index, content hash), in CSV order
    skipped: list = field(default_factory=list)  # (path, reason)
    # To embed: (hash, path), read again (and converted again, for TIFF) when their turn comes, so
    # no image is held in memory.
    todo: list = field(default_factory=list)
    rows_key: str = ""  # sha256 of each row's path, label and content hash (or why it could not be read)


def _scan(rows, labels, cache: EmbeddingCache, shard: Path) -> _Scanned:
    """Read and hash every file of `rows`; check for the model those whose embedding the cache lacks."""
    found = _Scanned(rows)
    rows_digest = hashlib.sha256()
    known = set()  # hashes whose embedding the cache holds or the todo list will compute
    name = shard.name.removesuffix(".tfrecord.gz")
    with Progress(f"{name}: reading", len(rows), "files", every=PROGRESS_EVERY_S) as reading:
        for i in range(0, len(rows), 512):
            chunk = []
            for n, (path, label) in enumerate(rows[i : i + 512], start=i + 1):
                try:
                    data = read_bytes(path)
                    h = content_hash(data)
                    chunk.append((path, labels.index(label), h, data))
                    content = h.hex()
                except Unreadable as e:
                    found.skipped.append((path, str(e)))
                    content = str(e)
                rows_digest.update(f"{path}\0{label}\0{content}\n".encode(**atomic.TEXT))
                reading.update(n)
            known |= set(cache.get([h for _, _, h, _ in chunk]))
            for path, label, h, data in chunk:
                if h in known:
                    found.usable.append((path, label, h))
                    continue
                try:
                    for_model(data)
                except Unreadable as e:
                    found.skipped.append((path, str(e)))
                    continue
                found.usable.append((path, label, h))
                known.add(h)  # identical crops are embedded once
                found.todo.append((h, path))
    found.rows_key = rows_digest.hexdigest()
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


def _compute(todo, embedder: Embedder, cache: EmbeddingCache, batch_size: int, shard: Path):
    """Embed the crops into the cache, one committed batch at a time; return ([(hash, reason)] of
    failures, how many files changed since the scan).

    Each file is read again, in CSV order, as the pipeline reaches it, and embedded only when its
    bytes still have the hash the scan found; decode and resize run inside the tf.data graph, in
    parallel with the backbone.
    """
    import tensorflow as tf

    from meerkat.embed.decode import decode_and_resize, decode_error

    size = embedder.size
    changed = {}  # hash -> reason, of files that differ from what the scan hashed

    def read_again():
        for h, path in todo:
            try:
                data = read_bytes(path)
            except Unreadable as e:
                changed[h] = f"changed while preprocess read it (now: {e}); run preprocess again to include it"
                continue
            if content_hash(data) != h:
                changed[h] = "changed while preprocess read it; run preprocess again to include it"
                continue
            yield h, for_model(data)  # the bytes hashed: they pass as they did at the scan

    spec = (tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.string))
    ds = tf.data.Dataset.from_generator(read_again, output_signature=spec)
    ds = ds.map(lambda h, data: (h, decode_and_resize(data, size)), num_parallel_calls=2, deterministic=True)
    ds = ds.ignore_errors().batch(batch_size).prefetch(2)
    options = tf.data.Options()
    options.autotune.enabled = False
    ds = ds.with_options(options)

    fault_name = tfrecords.fault_name(shard)
    name = shard.name.removesuffix(".tfrecord.gz")
    embedded = 0
    with Progress(f"{name}: embedding", len(todo), "images", every=PROGRESS_EVERY_S) as progress:
        for hashes, images in ds:
            embeddings = embedder.embed(images).numpy()
            cache.put(zip(hashes.numpy(), embeddings, strict=True))
            embedded += len(embeddings)
            faults.point(f"preprocess:{fault_name}")
            progress.update(embedded)
    stored = set(cache.get([h for h, _ in todo]))
    failed = [(h, changed.get(h) or decode_error(p)) for h, p in todo if h not in stored]
    return failed, len(changed)
