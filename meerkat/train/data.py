"""The embeddings a head is trained and evaluated on: a set of shards loaded in a canonical order,
two sets checked to fit together, the seeded validation split (in whole groups: samples/groups.py),
and the classes' loss weights."""

import logging
import math
from dataclasses import dataclass

import numpy as np

from meerkat.core.config import TrainConfig
from meerkat.core.errors import MeerkatError
from meerkat.core.settings import MIN_IMAGES_PER_CLASS
from meerkat.embed import tfrecords
from meerkat.samples import groups

log = logging.getLogger(__name__)


@dataclass
class Embeddings:
    uris: list
    labels: np.ndarray
    vectors: np.ndarray
    manifest: dict

    def subset(self, index) -> "Embeddings":
        index = np.asarray(index, dtype=np.int64)
        return Embeddings([self.uris[i] for i in index], self.labels[index], self.vectors[index], self.manifest)

    def counts(self) -> dict[str, int]:
        """Examples per class, by the manifest's label names, in model order."""
        return {name: int((self.labels == i).sum()) for i, name in enumerate(self.manifest["labels"])}


def load(pattern: str, what: str) -> Embeddings:
    shards, manifest = tfrecords.find_shards(pattern)
    uris, labels, vectors = tfrecords.read_shards(shards, manifest["embedding_dim"])
    # A canonical order: however the set was sharded (1 process or an array of N), same model.
    order = sorted(range(len(uris)), key=uris.__getitem__)
    uris, labels, vectors = [uris[i] for i in order], labels[order], vectors[order]
    if len(uris) == 0:
        raise MeerkatError(f"the {what} set {pattern} holds no records; check the preprocess log for skipped files")
    for label, name in enumerate(manifest["labels"]):
        count = int((labels == label).sum())
        if count < MIN_IMAGES_PER_CLASS:
            raise MeerkatError(
                f"the {what} set has {count} usable {name} images, fewer than the minimum of {MIN_IMAGES_PER_CLASS} "
                f"({pattern}); add {name} crops or see the skipped-files list beside the shards"
            )
    manifest["input_keys"] = sorted(tfrecords.read_manifest(s)["input_key"] for s in shards)
    return Embeddings(uris, labels, vectors, manifest)


def check_compatible(train: Embeddings, evals: Embeddings, train_pattern: str, eval_pattern: str) -> None:
    a, b = train.manifest, evals.manifest
    if (a["backbone"], a["embedding_dim"], a["embedding_code"]) != (
        b["backbone"],
        b["embedding_dim"],
        b["embedding_code"],
    ):
        raise MeerkatError(
            f"train set {train_pattern} ({a['backbone']['name']}, {a['embedding_dim']}-d) and eval set "
            f"{eval_pattern} ({b['backbone']['name']}, {b['embedding_dim']}-d) were made differently; "
            "preprocess both with the same backbone and weights (and the same meerkat)"
        )


def validation_size(n_class: int, fraction: float) -> int:
    """Images of a class of `n_class` held out: the fraction rounded half up, at least 1 (0 when off)."""
    return 0 if fraction == 0 else max(1, math.floor(fraction * n_class + 0.5))


@dataclass
class Held:
    """The validation part of each class: the indices held out, and the classes split by file
    because their crops form too few groups."""

    index: list
    by_file: list


def check_counts(counts: dict[str, int], classes, fraction: float) -> None:
    """Before any crop is embedded: every class has enough crops to train on, validate and test.
    `counts` are createdocs' (`<class>_training`, `<class>_testing`). The same minimums load and split
    enforce on the records; unreadable crops, found only then, can still fall short there."""
    for name in classes:
        train, test = counts[f"{name}_training"], counts[f"{name}_testing"]
        left = train - validation_size(train, fraction)
        if left < MIN_IMAGES_PER_CLASS or test < MIN_IMAGES_PER_CLASS:
            raise MeerkatError(
                f"class {name!r} has {train} training and {test} testing crops; it needs at least "
                f"{MIN_IMAGES_PER_CLASS} to test and {MIN_IMAGES_PER_CLASS} to train on after --validation-fraction "
                f"{fraction} holds out {train - left}: add {name} crops (or pass --validation-fraction 0)"
            )


def validation_index(data: Embeddings, fraction: float, seed: int, group_by: str) -> Held:
    """Which records the validation split holds out (groups.py's pick, class by class)."""
    keys = groups.keys_of(data.uris, group_by)
    held = Held([], [])
    for label, name in enumerate(data.manifest["labels"]):
        members = np.flatnonzero(data.labels == label)
        k = validation_size(len(members), fraction)
        uris = [data.uris[i] for i in members]
        chosen = groups.pick([keys[i] for i in members], uris, seed, k)
        if chosen is None or len(members) - len(chosen) < MIN_IMAGES_PER_CLASS:
            chosen = groups.pick([None] * len(uris), uris, seed, k) or []
            if group_by != "none":
                held.by_file.append(name)
        if len(members) - len(chosen) < MIN_IMAGES_PER_CLASS:
            raise MeerkatError(
                f"--validation-fraction {fraction} holds out {k} of the {len(members)} {name} training images, "
                f"leaving {len(members) - k} to train on, fewer than the minimum of {MIN_IMAGES_PER_CLASS}; add "
                f"{name} crops, or pass --validation-fraction 0 to train on all of them without validation"
            )
        held.index += [int(members[i]) for i in chosen]
    return held


def split(
    data: Embeddings, fraction: float, seed: int, group_by: str = TrainConfig.group_by
) -> tuple[Embeddings, Embeddings | None]:
    """(training part, validation part): validation_size(n_class) of each class held out, in whole
    groups (--group-by, groups.py) as close to that size as they allow; exactly that size for
    --group-by none, or a class whose crops form fewer than two groups (split by file, with a warning).

    Groups are ranked by sha256(seed/group key), a crop without a group by sha256(seed/file name),
    ties by image_uri, and the first ones are held out. So the split depends on the seed and on
    which crops there are, never on the order of the records nor on where the Samples folder lies,
    and adding crops moves few others.
    """
    if fraction == 0:
        return data, None
    held = validation_index(data, fraction, seed, group_by)
    if held.by_file:
        log.warning(
            "warning: the crops of %s form too few groups (--group-by %s) to hold out whole ones for validation; "
            "split by file, so the validation figures of %s may be too kind",
            ", ".join(held.by_file),
            group_by,
            "that class" if len(held.by_file) == 1 else "those classes",
        )
    out = np.zeros(len(data.uris), dtype=bool)
    out[held.index] = True
    return data.subset(np.flatnonzero(~out)), data.subset(np.flatnonzero(out))


def class_weights(labels: np.ndarray, classes: int, mode: str) -> np.ndarray:
    """Loss weight of each class: 1, or n / (classes * n_class) for 'balanced' (Keras' convention)."""
    if mode == "none":
        return np.ones(classes, dtype=np.float32)
    counts = np.bincount(labels, minlength=classes)
    return (len(labels) / (classes * counts)).astype(np.float32)
