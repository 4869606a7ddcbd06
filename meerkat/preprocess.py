"""Stage 2: docs CSV -> frozen-backbone embeddings in a gzip TFRecord shard.

Files stream through tf.data (read, decode and resize in parallel with the backbone), so memory
does not grow with the data set. A file that cannot be read or decoded is skipped and listed with
its reason in PREFIX-....skipped.csv; the run goes on.
"""

import csv
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from meerkat import __version__, fileio, records
from meerkat.backbones import BackboneSpec, Embedder
from meerkat.createdocs import read_csv, read_dict
from meerkat.errors import MeerkatError, UsageError
from meerkat.settings import PREPROCESSING_VERSION

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 15.0


@dataclass
class Summary:
    shard: Path
    embedded: int
    skipped: int
    seconds: float


def check_shard(shard_index: int, num_shards: int) -> None:
    if num_shards < 1:
        raise UsageError(f"--num-shards must be at least 1, received {num_shards}")
    if not 0 <= shard_index < num_shards:
        raise UsageError(f"--shard-index must be in 0..{num_shards - 1} for --num-shards {num_shards}, received {shard_index}")


def _why_unreadable(path: str, size: int) -> str:
    """The reason one file failed in the pipeline, found again by decoding it alone."""
    import tensorflow as tf

    from meerkat.images import decode_and_resize

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return "file not found"
    except OSError as e:
        return f"cannot read: {fileio.describe_os_error(e)}"
    if not data:
        return "empty file (0 bytes)"
    try:
        decode_and_resize(data, size)
    except tf.errors.OpError as e:
        return f"cannot decode: {e.message.splitlines()[0]}"
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
    import tensorflow as tf

    from meerkat.images import decode_and_resize

    check_shard(shard_index, num_shards)
    labels = read_dict(input_dict)
    rows = read_csv(input_csv)
    for n, (path, label) in enumerate(rows, start=1):
        if label not in labels:
            raise MeerkatError(f"{input_csv}, row {n}: unknown label {label!r} for {path}; expected one of {', '.join(labels)}")
    rows = rows[shard_index::num_shards]
    if isinstance(embedder, BackboneSpec):  # built only once the inputs are known to be good
        embedder = Embedder(embedder)
    shard = records.shard_path(output_prefix, shard_index, num_shards)
    fileio.ensure_dir(shard.parent)
    size = embedder.size

    def load(path, label):
        return path, label, decode_and_resize(tf.io.read_file(path), size)

    paths = [p for p, _ in rows]
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(paths, tf.string), tf.constant([labels.index(l) for _, l in rows], tf.int64))
    )
    # Fixed parallelism with autotune off: autotune's teardown can stall for tens of seconds here.
    ds = ds.map(load, num_parallel_calls=2, deterministic=True).ignore_errors().batch(batch_size).prefetch(2)
    options = tf.data.Options()
    options.autotune.enabled = False
    ds = ds.with_options(options)

    log.info("Embedding %d images from %s with %s (shard %d of %d)", len(rows), input_csv, embedder.spec.name, shard_index, num_shards)
    seen = set()
    start = last = time.perf_counter()
    with fileio.atomic_path(shard) as tmp, tf.io.TFRecordWriter(str(tmp), options="GZIP") as writer:
        for batch_paths, batch_labels, images in ds:
            embeddings = embedder.embed(images).numpy()
            for uri, label, embedding in zip(batch_paths.numpy(), batch_labels.numpy(), embeddings):
                uri = uri.decode("utf-8")
                writer.write(records.encode_example(uri, int(label), embedding))
                seen.add(uri)
            if time.perf_counter() - last > PROGRESS_EVERY_S:
                last = time.perf_counter()
                log.info("  %d/%d images, %.1f images/s", len(seen), len(rows), len(seen) / (last - start))
    seconds = time.perf_counter() - start

    skipped = [(p, _why_unreadable(p, size)) for p in paths if p not in seen]
    with fileio.atomic_open(records.skipped_path(shard), "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows([("path", "reason"), *skipped])
    manifest = {
        "backbone": asdict(embedder.spec),
        "image_size": size,
        "embedding_dim": int(embedder.model.output_shape[-1]),
        "preprocessing_version": PREPROCESSING_VERSION,
        "labels": labels,
        "shard_index": shard_index,
        "num_shards": num_shards,
        "records": len(seen),
        "skipped": len(skipped),
        "source_csv": str(input_csv),
        "meerkat_version": __version__,
    }
    fileio.write_text(records.manifest_path(shard), json.dumps(manifest, indent=2) + "\n")

    rate = len(seen) / seconds if seconds > 0 else 0.0
    log.info("Embedded %d images in %.1f s (%.1f images/s) -> %s", len(seen), seconds, rate, shard)
    if skipped:
        log.warning("warning: skipped %d unreadable files (listed in %s):", len(skipped), records.skipped_path(shard))
        for path, reason in skipped[:10]:
            log.warning("  %s: %s", path, reason)
        if len(skipped) > 10:
            log.warning("  ... and %d more", len(skipped) - 10)
    return Summary(shard, len(seen), len(skipped), seconds)
