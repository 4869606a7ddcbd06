"""Stage 3: embeddings -> a small dense head (hidden layer, dropout, 2-way softmax), trained with Adam.

A seeded, stratified share of the training embeddings (--validation-fraction) is held out. Once an
epoch, loss and accuracy on the training part and on that validation part go to the log, in the
original trainer's format, and to TensorBoard (OUT/logs/train, OUT/logs/validation). The validation
loss picks the exported epoch and stops training early (--patience). The Testing set is never seen
here: the pipeline scores it once, with the weights this returns, for the report.
"""

import csv
import hashlib
import io
import json
import logging
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from meerkat.core import atomic, faults, ownership
from meerkat.core.config import TrainConfig
from meerkat.core.errors import MeerkatError
from meerkat.core.progress import Progress
from meerkat.core.settings import MIN_IMAGES_PER_CLASS
from meerkat.embed import tfrecords
from meerkat.report.metrics import called_positive

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
        """Examples per class, by the manifest's label names (positive first)."""
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
    manifest["input_keys"] = sorted(tfrecords.read_manifest(s).get("input_key", "") for s in shards)
    return Embeddings(uris, labels, vectors, manifest)


def check_compatible(train: Embeddings, evals: Embeddings, train_pattern: str, eval_pattern: str) -> None:
    a, b = train.manifest, evals.manifest
    if (a["backbone"], a["embedding_dim"], a.get("embedding_code")) != (
        b["backbone"],
        b["embedding_dim"],
        b.get("embedding_code"),
    ):
        raise MeerkatError(
            f"train set {train_pattern} ({a['backbone']['name']}, {a['embedding_dim']}-d) and eval set "
            f"{eval_pattern} ({b['backbone']['name']}, {b['embedding_dim']}-d) were made differently; "
            "preprocess both with the same backbone and weights (and the same meerkat)"
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


def validation_size(n_class: int, fraction: float) -> int:
    """Images of a class of `n_class` held out: the fraction rounded half up, at least 1 (0 when off)."""
    return 0 if fraction == 0 else max(1, math.floor(fraction * n_class + 0.5))


def _rank(seed: int, uri: str) -> tuple[bytes, str]:
    return hashlib.sha256(f"{seed}/{uri.rsplit('/', 1)[-1]}".encode()).digest(), uri


def split(data: Embeddings, fraction: float, seed: int) -> tuple[Embeddings, Embeddings | None]:
    """(training part, validation part): exactly validation_size(n_class) of each class held out.

    Within a class, images are ranked by sha256(seed/file name), ties by image_uri, and the first
    ones are held out. So the split depends on the seed and on which crops there are, never on the
    order of the records nor on where the Samples folder lies, and adding crops moves few others.
    """
    if fraction == 0:
        return data, None
    held = []
    for label, name in enumerate(data.manifest["labels"]):
        members = sorted(np.flatnonzero(data.labels == label), key=lambda i: _rank(seed, data.uris[i]))
        k = validation_size(len(members), fraction)
        if len(members) - k < MIN_IMAGES_PER_CLASS:
            raise MeerkatError(
                f"--validation-fraction {fraction} holds out {k} of the {len(members)} {name} training images, "
                f"leaving {len(members) - k} to train on, fewer than the minimum of {MIN_IMAGES_PER_CLASS}; add "
                f"{name} crops, or pass --validation-fraction 0 to train on all of them without validation"
            )
        held += members[:k]
    out = np.zeros(len(data.uris), dtype=bool)
    out[held] = True
    return data.subset(np.flatnonzero(~out)), data.subset(np.flatnonzero(out))


def class_weights(labels: np.ndarray, mode: str) -> np.ndarray:
    """Loss weight of each class: 1, or n / (2 * n_class) for 'balanced' (Keras' convention)."""
    if mode == "none":
        return np.ones(2, dtype=np.float32)
    counts = np.bincount(labels, minlength=2)
    return (len(labels) / (2 * counts)).astype(np.float32)


def evaluate(head, data: Embeddings, weights: np.ndarray | None = None) -> tuple[float, float, np.ndarray]:
    """Mean cross-entropy (each example's weighted by `weights[label]`), accuracy and softmax scores [N, 2]."""
    import tensorflow as tf

    logits = np.concatenate(
        [head(data.vectors[i : i + 8192], training=False).numpy() for i in range(0, len(data.uris), 8192)]
    )
    probs = tf.nn.softmax(logits).numpy()
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(data.labels, logits)
    if weights is not None:
        losses = losses * tf.constant(weights[data.labels])
    accuracy = float((called_positive(probs) == (data.labels == 0)).mean())  # the report's rule, at 0.5
    return float(tf.reduce_mean(losses)), accuracy, probs


HISTORY_COLUMNS = ("epoch", "step", "train_loss", "train_accuracy", "validation_loss", "validation_accuracy")


@dataclass
class Trained:
    """What training hands the pipeline: the head holding the exported (best) weights, and how it got there."""

    head: object
    history: list[dict]  # one row an epoch, HISTORY_COLUMNS; validation figures None without validation
    best_epoch: int
    stopped_epoch: int | None  # the epoch early stopping ended training at; None when all ran
    counts: dict = field(default_factory=dict)  # examples per class of the train and validation parts
    weights: dict = field(default_factory=dict)  # loss weight per class

    def details(self, cfg: TrainConfig) -> dict:
        """The run.json entries about training."""
        return {
            "validation_fraction": cfg.validation_fraction,
            "patience": cfg.patience,
            "class_weights": cfg.class_weights,
            "class_weight_values": self.weights,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "epochs_trained": len(self.history),
            "train_counts": self.counts["train"],
            "validation_counts": self.counts["validation"],
        }


def write_history(path: Path, history: list[dict]) -> None:
    """report/history.csv: one row an epoch, figures to 6 decimals; validation cells empty without it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)

    def cell(column, value):
        if value is None:
            return ""
        return value if column in ("epoch", "step") else f"{value:.6f}"

    for row in history:
        writer.writerow([cell(c, row[c]) for c in HISTORY_COLUMNS])
    atomic.write_text(path, out.getvalue())


def best_epoch(history: list[dict]) -> int:
    """The epoch of the lowest validation loss (the earliest of equals); the last one without validation."""
    if history[-1]["validation_loss"] is None:
        return history[-1]["epoch"]
    return min(history, key=lambda row: (row["validation_loss"], row["epoch"]))["epoch"]


def _patience_ran_out(history: list[dict], patience: int) -> bool:
    if not history or not patience or history[-1]["validation_loss"] is None:
        return False
    return history[-1]["epoch"] - best_epoch(history) >= patience


@dataclass
class _State:
    """Everything a resumed run needs besides the head and Adam: where it is, the curves, the best weights."""

    step: int = 0
    history: list = field(default_factory=list)
    best: list = field(default_factory=list)  # the head's variables at best_epoch(history)


def _save_checkpoint(path: Path, fingerprint: str, state: _State, head, optimizer) -> None:
    arrays = {f"v{i}": v.numpy() for i, v in enumerate([*head.variables, *optimizer.variables])}
    arrays |= {f"b{i}": a for i, a in enumerate(state.best)}
    with atomic.atomic_open(path, "wb") as f:
        np.savez(f, step=state.step, fingerprint=fingerprint, history=json.dumps(state.history), **arrays)


def _restore_checkpoint(path: Path, fingerprint: str, head, optimizer) -> _State:
    """A matching checkpoint's state (its weights, optimizer and RNG state loaded), else a fresh one."""
    if not path.is_file():
        return _State()
    variables = [*head.variables, *optimizer.variables]
    try:  # all of it read before anything is assigned: a damaged file leaves the fresh head as it is
        with np.load(path) as ckpt:
            if str(ckpt["fingerprint"]) != fingerprint or "history" not in ckpt:
                return _State()
            saved = [ckpt[f"v{i}"] for i in range(len(variables))]
            best = [ckpt[f"b{i}"] for i in range(len(head.variables))]
            state = _State(int(ckpt["step"]), json.loads(str(ckpt["history"])), best)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        log.warning("warning: the training checkpoint %s is unreadable (%s); training from the start", path, e)
        return _State()
    for v, value in zip(variables, saved, strict=True):
        v.assign(value)
    return state


def _describe(counts: dict) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items())


def train(train_set: Embeddings, cfg: TrainConfig, logdir: Path, checkpoint: Path, fingerprint: str) -> Trained:
    """Train a head on `train_set` less its validation part; return it with the best epoch's weights.

    After every epoch the whole state (weights, Adam, the dropout RNG, the history and the best
    weights so far) goes to `checkpoint`, so a killed run resumes there and ends with the very
    weights, curves and choice of epoch an uninterrupted run would have.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()

    fitted, validation = split(train_set, cfg.validation_fraction, cfg.seed)
    weights = class_weights(fitted.labels, cfg.class_weights)
    n = len(fitted.uris)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    total_epochs = math.ceil(total_steps / steps_per_epoch)
    head = build_head(fitted.vectors.shape[1], cfg)
    optimizer = keras.optimizers.Adam(cfg.learning_rate)
    optimizer.build(head.trainable_variables)

    dim = fitted.vectors.shape[1]
    signature = [
        tf.TensorSpec([None, dim], tf.float32),
        tf.TensorSpec([None], tf.int64),
        tf.TensorSpec([None], tf.float32),
        tf.TensorSpec([None], tf.int64),
    ]

    @tf.function(input_signature=signature)
    def run_steps(x, y, w, order):
        # A whole epoch's batches in one graph call (a while loop, no tf.data iterator to set up and
        # tear down): per-step Python overhead would dominate otherwise.
        for start in tf.range(0, tf.shape(order, out_type=tf.int64)[0], cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            with tf.GradientTape() as tape:
                logits = head(tf.gather(x, batch), training=True)
                losses = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.gather(y, batch), logits)
                # Keras' sample weights: the weighted losses summed over the batch size.
                loss = tf.reduce_mean(tf.gather(w, batch) * losses)
            optimizer.apply_gradients(
                zip(tape.gradient(loss, head.trainable_variables), head.trainable_variables, strict=True)
            )

    state = _restore_checkpoint(checkpoint, fingerprint, head, optimizer)
    if state.step:
        log.info("Resuming training from the checkpoint at step %d of %d", state.step, total_steps)
    else:
        ownership.remove(logdir, "new training curves")  # an earlier run's curves would mix with these
    parts = {"train": fitted, "validation": validation} if validation is not None else {"train": fitted}
    writers = {}
    for name in parts:
        folder = atomic.ensure_dir(logdir / name)
        before = set(folder.iterdir())
        writers[name] = tf.summary.create_file_writer(str(folder))
        ownership.claim_growing(*(set(folder.iterdir()) - before))  # the event file, created by the writer
    held_out = (
        f"validating on {len(validation.uris)} ({_describe(validation.counts())}) held out by "
        f"--validation-fraction {cfg.validation_fraction}"
        if validation is not None
        else "without validation (the last epoch is exported)"
    )
    log.info(
        "Training on %d embeddings (%s) for %d steps (%d per epoch), %s; figures are loss, accuracy",
        n,
        _describe(fitted.counts()),
        total_steps,
        steps_per_epoch,
        held_out,
    )
    labelled = {name: round(float(v), 6) for name, v in zip(fitted.manifest["labels"], weights, strict=True)}
    if cfg.class_weights != "none":
        log.info(
            "Class weights (%s): %s", cfg.class_weights, ", ".join(f"{name} {v:.4g}" for name, v in labelled.items())
        )
    x, y, w = tf.constant(fitted.vectors), tf.constant(fitted.labels), tf.constant(weights[fitted.labels])
    progress = Progress("training", total_epochs, unit="epochs")
    while state.step < total_steps and not _patience_ran_out(state.history, cfg.patience):
        epoch = state.step // steps_per_epoch
        steps = min(steps_per_epoch, total_steps - state.step)
        # One permutation per epoch, from (seed, epoch): the same batches after a resume.
        order = np.random.default_rng([cfg.seed, epoch]).permutation(n)[: steps * cfg.batch_size]
        run_steps(x, y, w, tf.constant(order))
        state.step += steps
        figures = {name: evaluate(head, data, weights)[:2] for name, data in parts.items()}
        for name, (loss, accuracy) in figures.items():
            with writers[name].as_default(step=state.step):
                tf.summary.scalar("loss", loss)
                tf.summary.scalar("accuracy", accuracy)
            writers[name].flush()
        validation_figures = figures.get("validation", (None, None))
        state.history.append(
            dict(zip(HISTORY_COLUMNS, (epoch + 1, state.step, *figures["train"], *validation_figures), strict=True))
        )
        if best_epoch(state.history) == epoch + 1:
            state.best = [v.numpy() for v in head.variables]
        if validation is not None:
            log.info(
                "Eval, step %d: on train set %.4f, %.4f / on validation set %.4f, %.4f",
                state.step,
                *figures["train"],
                *validation_figures,
            )
        else:
            log.info("Eval, step %d: on train set %.4f, %.4f", state.step, *figures["train"])
        _save_checkpoint(checkpoint, fingerprint, state, head, optimizer)
        progress.update(epoch + 1)
        faults.point(f"train:epoch-{epoch + 1}")
    for writer in writers.values():
        writer.close()

    best = best_epoch(state.history)
    last = state.history[-1]["epoch"]
    stopped = last if state.step < total_steps else None
    if stopped is not None:
        log.info(
            "Early stopping after epoch %d of %d: no lower validation loss in the %d epochs since epoch %d",
            stopped,
            total_epochs,
            cfg.patience,
            best,
        )
    if validation is not None:
        log.info(
            "Keeping epoch %d, the lowest validation loss (%.4f)", best, state.history[best - 1]["validation_loss"]
        )
    for v, a in zip(head.variables, state.best, strict=True):
        v.assign(a)
    counts = {"train": fitted.counts(), "validation": validation.counts() if validation is not None else None}
    return Trained(head, state.history, best, stopped, counts, labelled)
