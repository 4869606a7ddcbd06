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

from meerkat import __version__, devices, faults, fileio, records
from meerkat.backbones import BackboneSpec, Embedder
from meerkat.createdocs import read_csv, read_dict
from meerkat.errors import MeerkatError, UsageError
from meerkat.cache import EmbeddingCache, content_hash
from meerkat.imagefiles import Unreadable, for_model, read_bytes, read_for_model
from meerkat.settings import PREPROCESSING_VERSION

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 15.0


@dataclass
class Summary:
    shard: Path
    embedded: int
    skipped: int
    seconds: float
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
    batch_size: int | None = None,
    shard_index: int = 0,
    num_shards: int = 1,
    cache_dir=None,
) -> Summary:
    """Embed shard `shard_index` of `num_shards` of a docs CSV. `cache_dir` defaults to PREFIX's folder/cache."""
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
        return Summary(shard, done["records"], done["skipped"], 0.0, None if isinstance(embedder, BackboneSpec) else embedder)

    cache = EmbeddingCache(Path(cache_dir) if cache_dir else shard.parent / "cache", spec)
    try:
        fault_name = f"{Path(output_prefix).name}:{shard_index}"
        result, embedder = _embed(rows, labels, shard, embedder, cache, devices.batch_size(batch_size), fault_name)
    finally:
        cache.close()
    manifest = {
        "backbone": asdict(spec),
        "image_size": spec.arch.image_size,
        "embedding_dim": spec.arch.embedding_dim(spec.alpha),
        "preprocessing_version": PREPROCESSING_VERSION,
        "labels": labels,
        "shard_index": shard_index,
        "num_shards": num_shards,
        "records": result.embedded,
        "skipped": result.skipped,
        "computed": result.computed,
        "counts": result.counts,
        "source_csv": str(input_csv),
        "input_key": key,
        "meerkat_version": __version__,
    }
    fileio.write_text(records.manifest_path(shard), json.dumps(manifest, indent=2) + "\n")
    return Summary(shard, result.embedded, result.skipped, result.seconds, embedder if isinstance(embedder, Embedder) else None)


@dataclass
class _Embedded:
    embedded: int
    skipped: int
    computed: int
    seconds: float
    counts: dict


def _embed(rows, labels, shard: Path, embedder, cache: EmbeddingCache, batch_size: int, fault_name: str):
    """Write `rows` to `shard` in CSV order, computing only the embeddings the cache lacks."""
    import tensorflow as tf

    start = time.perf_counter()
    skipped: list[tuple[str, str]] = []
    scanned = []  # (path, label index, content hash) of every usable file
    cache_hits = set()
    todo_files, todo_bytes = [], []  # to embed: (hash, path) read again in the graph; (hash, converted bytes)
    for i in range(0, len(rows), 512):
        chunk = []
        for path, label in rows[i : i + 512]:
            try:
                data = read_bytes(path)
                chunk.append((path, labels.index(label), content_hash(data), data))
            except Unreadable as e:
                skipped.append((path, str(e)))
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
            if prepared is data:
                todo_files.append((h, path))
            else:
                todo_bytes.append((h, prepared))
    todo = len(todo_files) + len(todo_bytes)
    log.info(
        "%s: %d images, %d embeddings from the cache, %d to compute with %s (%s)",
        shard.name, len(rows), len(scanned) - todo, todo, spec_name(embedder), precision_of(embedder),
    )
    if todo:
        if isinstance(embedder, BackboneSpec):
            embedder = Embedder(embedder)
        failed = _compute(todo_files, todo_bytes, embedder, cache, batch_size, fault_name)
        reason_of = dict(failed)  # by hash; copies of a crop that failed fail the same way
        skipped += [(p, reason_of[h]) for p, _, h in scanned if h in reason_of]
    computed_seconds = time.perf_counter() - start

    bad = {p for p, _ in skipped}
    counts = {label: 0 for label in labels}
    written = 0
    with fileio.atomic_path(shard) as tmp, tf.io.TFRecordWriter(str(tmp), options="GZIP") as writer:
        for i in range(0, len(scanned), 512):
            chunk = [row for row in scanned[i : i + 512] if row[0] not in bad]
            vectors = cache.get([h for _, _, h in chunk])
            for path, label, h in chunk:
                if h not in vectors:  # its content failed to decode (listed as skipped)
                    continue
                writer.write(records.encode_example(path, label, vectors[h]))
                counts[labels[label]] += 1
                written += 1
    seconds = time.perf_counter() - start

    order = {p: i for i, (p, _) in enumerate(rows)}
    skipped.sort(key=lambda s: order[s[0]])
    with fileio.atomic_open(records.skipped_path(shard), "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows([("path", "reason"), *skipped])

    rate = todo / computed_seconds if todo and computed_seconds > 0 else 0.0
    log.info("Embedded %d images (%d computed, %.1f images/s) in %.1f s -> %s", written, todo, rate, seconds, shard)
    if skipped:
        log.warning("warning: skipped %d unusable files (listed in %s):", len(skipped), records.skipped_path(shard))
        for path, reason in skipped[:10]:
            log.warning("  %s: %s", path, reason)
        if len(skipped) > 10:
            log.warning("  ... and %d more", len(skipped) - 10)
    return _Embedded(written, len(skipped), todo, seconds, counts), embedder


def spec_name(embedder) -> str:
    spec = embedder if isinstance(embedder, BackboneSpec) else embedder.spec
    return spec.name + (f" {spec.alpha}" if spec.alpha else "")


def precision_of(embedder) -> str:
    return (embedder if isinstance(embedder, BackboneSpec) else embedder.spec).precision


def _compute(todo_files, todo_bytes, embedder: Embedder, cache: EmbeddingCache, batch_size: int, fault_name: str):
    """Embed the crops into the cache, one committed batch at a time; return [(hash, reason)] of failures.

    Files that TensorFlow decodes as they are (almost all) are read and decoded inside the tf.data
    graph, in parallel with the backbone and with no Python per image; converted ones come from memory.
    """
    import tensorflow as tf

    from meerkat.images import decode_and_resize

    size = embedder.size

    def dataset(items, read):
        hashes = tf.constant([h for h, _ in items], tf.string, shape=[len(items)])
        values = tf.constant([v for _, v in items], tf.string, shape=[len(items)])
        ds = tf.data.Dataset.from_tensor_slices((hashes, values))
        return ds.map(lambda h, v: (h, decode_and_resize(read(v), size)), num_parallel_calls=2, deterministic=True)

    ds = dataset(todo_files, tf.io.read_file).concatenate(dataset(todo_bytes, tf.identity))
    # A crop that passed the checks but still fails to decode (a truncated JPEG) is dropped here
    # and diagnosed afterwards; fixed parallelism, autotune off: its teardown can stall for seconds.
    ds = ds.ignore_errors().batch(batch_size).prefetch(2)
    options = tf.data.Options()
    options.autotune.enabled = False
    ds = ds.with_options(options)

    total = len(todo_files) + len(todo_bytes)
    done = 0
    start = last = time.perf_counter()
    for hashes, images in ds:
        embeddings = embedder.embed(images).numpy()
        cache.put(zip(hashes.numpy(), embeddings))
        done += len(embeddings)
        faults.point(f"preprocess:{fault_name}")
        if time.perf_counter() - last > PROGRESS_EVERY_S:
            last = time.perf_counter()
            log.info("  %d/%d images, %.1f images/s", done, total, done / (last - start))
    stored = set(cache.get([h for h, _ in todo_files + todo_bytes]))
    return [(h, _decode_error(p, size)) for h, p in todo_files if h not in stored] + [
        (h, "cannot decode after conversion to PNG") for h, _ in todo_bytes if h not in stored
    ]
