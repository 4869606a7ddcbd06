"""TFRecord shards of embeddings, their manifests, and finding complete sets of them.

A shard `PREFIX-00003-of-00008.tfrecord.gz` is complete only once its manifest
`PREFIX-00003-of-00008.json` exists: both are renamed into place, manifest last.
"""

import glob
import json
import re
from pathlib import Path

import numpy as np

from meerkat.core.atomic import TEXT
from meerkat.core.errors import MeerkatError
from meerkat.embed.backbones import BackboneSpec

SHARD_RE = re.compile(r"-(\d{5})-of-(\d{5})\.tfrecord\.gz$")


def shard_path(prefix, index: int, count: int) -> Path:
    return Path(f"{prefix}-{index:05d}-of-{count:05d}.tfrecord.gz")


def fault_name(shard) -> str:
    """`train:2` for train-00002-of-00004.tfrecord.gz: how faults.point names this shard's work."""
    shard = Path(shard)
    return f"{SHARD_RE.split(shard.name)[0]}:{int(SHARD_RE.search(shard.name).group(1))}"


def manifest_path(shard) -> Path:
    return Path(str(shard).removesuffix(".tfrecord.gz") + ".json")


def skipped_path(shard) -> Path:
    return Path(str(shard).removesuffix(".tfrecord.gz") + ".skipped.csv")


def encode_example(uri: str, label: int, embedding) -> bytes:
    import tensorflow as tf

    feature = {
        "image_uri": tf.train.Feature(bytes_list=tf.train.BytesList(value=[uri.encode(**TEXT)])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "embedding": tf.train.Feature(
            float_list=tf.train.FloatList(value=embedding.tolist())
        ),  # 4x faster than the array
    }
    # deterministic: protobuf map order otherwise varies between processes
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def find_shards(pattern: str) -> tuple[list[Path], dict]:
    """The shards matching a glob or a prefix, checked to be one complete set; and their manifest."""
    matches = sorted(glob.glob(pattern)) or sorted(glob.glob(f"{pattern}-*-of-*.tfrecord.gz"))
    shards = [Path(m) for m in matches if SHARD_RE.search(m)]
    if not shards:
        raise MeerkatError(
            f"no preprocessed shards match {pattern}; pass a prefix given to `meerkat preprocess "
            "--output-path` or a glob like PREFIX-*.tfrecord.gz"
        )
    counts = {int(SHARD_RE.search(str(s)).group(2)) for s in shards}
    if len(counts) > 1:
        raise MeerkatError(f"{pattern} mixes shard sets of sizes {sorted(counts)}; give one set")
    count = counts.pop()
    complete = {int(SHARD_RE.search(str(s)).group(1)) for s in shards if manifest_path(s).is_file()}
    missing = sorted(set(range(count)) - complete)
    if missing:
        raise MeerkatError(
            f"{pattern}: shards {', '.join(map(str, missing))} of {count} are missing or incomplete; "
            "rerun `meerkat preprocess` for those --shard-index values"
        )
    manifests = [read_manifest(s) for s in shards]
    first = manifests[0]
    for s, m in zip(shards[1:], manifests[1:], strict=True):
        for key, what in SAME_IN_A_SET.items():
            if m.get(key) != first.get(key):
                raise MeerkatError(
                    f"{s} and {shards[0]} were made from {what} ({m.get(key)} vs {first.get(key)}); "
                    "one set of shards must come from one preprocess of one CSV: preprocess them again together"
                )
    return shards, first


# What every shard of one set shares; the message says what differed.
SAME_IN_A_SET = {
    "backbone": "different backbones",
    "labels": "different label lists",
    "embedding_code": "different code (meerkat was upgraded in between)",
    "source_csv_sha256": "different CSVs",
}


def read_manifest(shard) -> dict:
    path = manifest_path(shard)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or "embedding_dim" not in manifest:
            raise ValueError("not a shard manifest")
        missing = [k for k in ("backbone", "labels", "embedding_code", "input_key") if k not in manifest]
        if missing:
            raise ValueError(f"no {', '.join(missing)}: made by another version of meerkat")
    except (OSError, ValueError) as e:
        raise MeerkatError(
            f"shard manifest {path} is unreadable or corrupt ({e}); rerun `meerkat preprocess` for that shard"
        ) from None
    return manifest


def spec_of(manifest: dict) -> BackboneSpec:
    """The backbone that made the records of `manifest`."""
    return BackboneSpec(**manifest["backbone"])


def read_shards(shards: list[Path], dim: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """All records of `shards` as (image_uris, labels [N], embeddings [N, dim]); a shard that does
    not read through (its gzip or record checksums fail) is named."""
    import tensorflow as tf

    spec = {
        "image_uri": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "embedding": tf.io.FixedLenFeature([dim], tf.float32),
    }
    uris, labels, embeddings = [], [], []
    for shard in shards:
        ds = tf.data.TFRecordDataset([str(shard)], compression_type="GZIP")
        ds = ds.batch(4096).map(lambda x: tf.io.parse_example(x, spec))
        try:
            for batch in ds.as_numpy_iterator():
                uris += [u.decode(**TEXT) for u in batch["image_uri"]]  # a name that is not UTF-8 is its bytes
                labels.append(batch["label"])
                embeddings.append(batch["embedding"])
        except tf.errors.OpError as e:
            # "{{function_node ...}} inflate() failed ... [Op:IteratorGetNext] name: " -> "inflate() failed ..."
            reason = re.sub(r"\{\{.*?\}\}|\[Op:\w+\].*", "", e.message.splitlines()[0]).strip()
            raise MeerkatError(
                f"{shard} is damaged ({reason}); rerun `meerkat preprocess` for it "
                "(the same `meerkat run` redoes it by itself)"
            ) from None
    if not uris:
        return [], np.zeros([0], np.int64), np.zeros([0, dim], np.float32)
    return uris, np.concatenate(labels), np.concatenate(embeddings)
