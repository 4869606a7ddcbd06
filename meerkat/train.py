"""Stage 3: embeddings -> a small dense head (hidden layer, dropout, 2-way softmax), trained with Adam.

Logs loss and accuracy on the whole train and eval sets once an epoch, to the log in the original
trainer's format and to TensorBoard (OUT/logs/train, OUT/logs/eval).
"""

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meerkat import records
from meerkat.errors import MeerkatError, UsageError
from meerkat.settings import DEFAULT_SEED

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Head training.

    epochs: passes over the training set (ignored when max_steps is set).
    max_steps: stop after this many batches instead.
    batch_size, learning_rate: Adam's batch and step size.
    hidden_units, dropout: the one hidden layer and the dropout after it.
    seed: weight init and batch order; same seed, same model.
    """

    epochs: int = 30
    max_steps: int | None = None
    batch_size: int = 32
    learning_rate: float = 1e-3
    hidden_units: int = 512
    dropout: float = 0.5
    seed: int = DEFAULT_SEED

    def __post_init__(self):
        if self.epochs < 1:
            raise UsageError(f"--epochs must be at least 1, received {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError(f"--max-steps must be at least 1, received {self.max_steps}")
        if self.batch_size < 1 or self.hidden_units < 1:
            raise UsageError("--batch-size and --hidden-units must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"--dropout must be in [0, 1), received {self.dropout}")
        if self.learning_rate <= 0:
            raise UsageError(f"--learning-rate must be positive, received {self.learning_rate}")


@dataclass
class Embeddings:
    uris: list
    labels: np.ndarray
    vectors: np.ndarray
    manifest: dict


def load(pattern: str, what: str) -> Embeddings:
    shards, manifest = records.find_shards(pattern)
    uris, labels, vectors = records.read_shards(shards, manifest["embedding_dim"])
    if len(uris) == 0:
        raise MeerkatError(f"the {what} set {pattern} holds no records; check the preprocess log for skipped files")
    for label, name in enumerate(manifest["labels"]):
        if not (labels == label).any():
            raise MeerkatError(f"the {what} set {pattern} has no {name} images; a classifier needs both classes")
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

    logits = np.concatenate([head(data.vectors[i : i + 8192], training=False).numpy() for i in range(0, len(data.uris), 8192)])
    probs = tf.nn.softmax(logits).numpy()
    loss = float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(data.labels, logits)))
    accuracy = float((probs.argmax(1) == data.labels).mean())
    return loss, accuracy, probs


def train(train_set: Embeddings, eval_set: Embeddings, cfg: TrainConfig, logdir: Path):
    """Train a head on `train_set`; return it (a Keras model giving logits)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()

    n = len(train_set.uris)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    head = build_head(train_set.vectors.shape[1], cfg)
    optimizer = keras.optimizers.Adam(cfg.learning_rate)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, head(x, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, head.trainable_variables), head.trainable_variables))
        return loss

    shutil.rmtree(logdir, ignore_errors=True)  # curves of an earlier run would mix with these
    writers = {name: tf.summary.create_file_writer(str(logdir / name)) for name in ("train", "eval")}
    rng = np.random.default_rng(cfg.seed)
    log.info(
        "Training on %d embeddings for %d steps (%d per epoch), evaluating on %d; figures are loss, accuracy",
        n,
        total_steps,
        steps_per_epoch,
        len(eval_set.uris),
    )
    order = np.array([], dtype=np.int64)
    for global_step in range(1, total_steps + 1):
        if len(order) == 0:
            order = rng.permutation(n)
        batch, order = order[: cfg.batch_size], order[cfg.batch_size :]
        step(train_set.vectors[batch], train_set.labels[batch])
        if global_step % steps_per_epoch == 0 or global_step == total_steps:
            figures = {name: evaluate(head, data)[:2] for name, data in (("train", train_set), ("eval", eval_set))}
            for name, (loss, accuracy) in figures.items():
                with writers[name].as_default(step=global_step):
                    tf.summary.scalar("loss", loss)
                    tf.summary.scalar("accuracy", accuracy)
            (tl, ta), (el, ea) = figures["train"], figures["eval"]
            log.info("Eval, step %d: on train set %.4f, %.4f / on eval set %.4f, %.4f", global_step, tl, ta, el, ea)
    for w in writers.values():
        w.close()
    return head
