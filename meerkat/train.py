"""Stage 3: embeddings -> a small dense head (hidden layer, dropout, 2-way softmax), trained with Adam.

Logs loss and accuracy on the whole train and eval sets once an epoch, to the log in the original
trainer's format and to TensorBoard (OUT/logs/train, OUT/logs/eval).
"""

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meerkat import faults, fileio, records
from meerkat.config import TrainConfig
from meerkat.errors import MeerkatError
from meerkat.settings import MIN_IMAGES_PER_CLASS

log = logging.getLogger(__name__)


@dataclass
class Embeddings:
    uris: list
    labels: np.ndarray
    vectors: np.ndarray
    manifest: dict


def load(pattern: str, what: str) -> Embeddings:
    shards, manifest = records.find_shards(pattern)
    uris, labels, vectors = records.read_shards(shards, manifest["embedding_dim"])
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
    manifest["input_keys"] = sorted(records.read_manifest(s).get("input_key", "") for s in shards)
    return Embeddings(uris, labels, vectors, manifest)


def check_compatible(train: Embeddings, evals: Embeddings, train_pattern: str, eval_pattern: str) -> None:
    a, b = train.manifest, evals.manifest
    if (a["backbone"], a["embedding_dim"], a["preprocessing_version"]) != (
        b["backbone"],
        b["embedding_dim"],
        b["preprocessing_version"],
    ):
        raise MeerkatError(
            f"train set {train_pattern} ({a['backbone']['name']}, {a['embedding_dim']}-d) and eval set "
            f"{eval_pattern} ({b['backbone']['name']}, {b['embedding_dim']}-d) were made differently; "
            "preprocess both with the same backbone and weights"
        )


def build_head(dim: int, cfg: TrainConfig):
    import keras

    return keras.Sequential(
        [
            keras.Input((dim,)),
            keras.layers.Dense(cfg.hidden_units, activation="relu"),
            keras.layers.Dropout(cfg.dropout),
            keras.layers.Dense(2),  # logits; the export adds the softmax as final_ops/softmax
        ],
        name="head",
    )


def evaluate(head, data: Embeddings) -> tuple[float, float, np.ndarray]:
    """Mean cross-entropy, accuracy and softmax scores [N, 2] of `head` on `data`."""
    import tensorflow as tf

    logits = np.concatenate(
        [head(data.vectors[i : i + 8192], training=False).numpy() for i in range(0, len(data.uris), 8192)]
    )
    probs = tf.nn.softmax(logits).numpy()
    loss = float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(data.labels, logits)))
    accuracy = float((probs.argmax(1) == data.labels).mean())
    return loss, accuracy, probs


def _save_checkpoint(path: Path, step: int, fingerprint: str, head, optimizer) -> None:
    arrays = {f"v{i}": v.numpy() for i, v in enumerate([*head.variables, *optimizer.variables])}
    with fileio.atomic_open(path, "wb") as f:
        np.savez(f, step=step, fingerprint=fingerprint, **arrays)


def _restore_checkpoint(path: Path, fingerprint: str, head, optimizer) -> int:
    """The step a matching checkpoint was saved at (its weights, optimizer and RNG state loaded), else 0."""
    if not path.is_file():
        return 0
    with np.load(path) as ckpt:
        if str(ckpt["fingerprint"]) != fingerprint:
            return 0
        for i, v in enumerate([*head.variables, *optimizer.variables]):
            v.assign(ckpt[f"v{i}"])
        return int(ckpt["step"])


def train(
    train_set: Embeddings, eval_set: Embeddings, cfg: TrainConfig, logdir: Path, checkpoint: Path, fingerprint: str
):
    """Train a head on `train_set`; return it (a Keras model giving logits).

    After every epoch the whole state (weights, Adam, the dropout RNG) goes to `checkpoint`, so a
    killed run resumes there and ends with the very weights an uninterrupted run would have.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()

    n = len(train_set.uris)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    head = build_head(train_set.vectors.shape[1], cfg)
    optimizer = keras.optimizers.Adam(cfg.learning_rate)
    optimizer.build(head.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    dim = train_set.vectors.shape[1]
    signature = [
        tf.TensorSpec([None, dim], tf.float32),
        tf.TensorSpec([None], tf.int64),
        tf.TensorSpec([None], tf.int64),
    ]

    @tf.function(input_signature=signature)
    def run_steps(x, y, order):
        # A whole epoch's batches in one graph call (a while loop, no tf.data iterator to set up and
        # tear down): per-step Python overhead would dominate otherwise.
        for start in tf.range(0, tf.shape(order, out_type=tf.int64)[0], cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            with tf.GradientTape() as tape:
                loss = loss_fn(tf.gather(y, batch), head(tf.gather(x, batch), training=True))
            optimizer.apply_gradients(
                zip(tape.gradient(loss, head.trainable_variables), head.trainable_variables, strict=True)
            )

    resumed_at = _restore_checkpoint(checkpoint, fingerprint, head, optimizer)
    if resumed_at:
        log.info("Resuming training from the checkpoint at step %d of %d", resumed_at, total_steps)
    else:
        fileio.remove(logdir, "new training curves")  # an earlier run's curves would mix with these
    writers = {}
    for name in ("train", "eval"):
        folder = fileio.ensure_dir(logdir / name)
        before = set(folder.iterdir())
        writers[name] = tf.summary.create_file_writer(str(folder))
        fileio.record(*(set(folder.iterdir()) - before))  # the event file, created by the writer
    log.info(
        "Training on %d embeddings for %d steps (%d per epoch), evaluating on %d; figures are loss, accuracy",
        n,
        total_steps,
        steps_per_epoch,
        len(eval_set.uris),
    )
    x, y = tf.constant(train_set.vectors), tf.constant(train_set.labels)
    global_step = resumed_at
    while global_step < total_steps:
        epoch = global_step // steps_per_epoch
        steps = min(steps_per_epoch, total_steps - global_step)
        # One permutation per epoch, from (seed, epoch): the same batches after a resume.
        order = np.random.default_rng([cfg.seed, epoch]).permutation(n)[: steps * cfg.batch_size]
        run_steps(x, y, tf.constant(order))
        global_step += steps
        figures = {name: evaluate(head, data)[:2] for name, data in (("train", train_set), ("eval", eval_set))}
        for name, (loss, accuracy) in figures.items():
            with writers[name].as_default(step=global_step):
                tf.summary.scalar("loss", loss)
                tf.summary.scalar("accuracy", accuracy)
            writers[name].flush()
        log.info(
            "Eval, step %d: on train set %.4f, %.4f / on eval set %.4f, %.4f",
            global_step,
            *figures["train"],
            *figures["eval"],
        )
        _save_checkpoint(checkpoint, global_step, fingerprint, head, optimizer)
        faults.point(f"train:epoch-{epoch + 1}")
    for w in writers.values():
        w.close()
    return head
