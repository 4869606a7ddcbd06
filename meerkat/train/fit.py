"""Stage 3: embeddings -> a small dense head (hidden layer, dropout, a softmax over the classes), trained with Adam.

A seeded, stratified share of the training embeddings (--validation-fraction, data.py) is held out.
Once an epoch, loss and accuracy on the training part and on that validation part go to the log, in
the original trainer's format, and to TensorBoard (OUT/logs/train, OUT/logs/validation); for species
(any classes but DeepMeerkat's pair) each class's recall too (recall/<class>), so a class the head
does not learn shows. The
validation loss picks the exported epoch and stops training early (--patience, history.py). The
Testing set is never seen here: the pipeline scores it once, with the weights this returns, for the
report.
"""

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from meerkat.core import atomic, faults, ownership
from meerkat.core.config import TrainConfig
from meerkat.core.progress import Progress
from meerkat.samples.classes import from_labels
from meerkat.train import checkpoint, history
from meerkat.train.data import Embeddings, class_weights, split

log = logging.getLogger(__name__)


def build_head(dim: int, classes: int, cfg: TrainConfig):
    import keras

    return keras.Sequential(
        [
            keras.Input((dim,)),
            keras.layers.Dense(cfg.hidden_units, activation="relu"),
            keras.layers.Dropout(cfg.dropout),
            keras.layers.Dense(classes),  # logits; the export adds the softmax as final_ops/softmax
        ],
        name="head",
    )


def evaluate(head, data: Embeddings, weights: np.ndarray | None = None) -> tuple[float, float, np.ndarray]:
    """Mean cross-entropy (each example's weighted by `weights[label]`), accuracy and softmax scores [N, classes]."""
    import tensorflow as tf

    logits = np.concatenate(
        [head(data.vectors[i : i + 8192], training=False).numpy() for i in range(0, len(data.uris), 8192)]
    )
    probs = tf.nn.softmax(logits).numpy()
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(data.labels, logits)
    if weights is not None:
        losses = losses * tf.constant(weights[data.labels])
    accuracy = float((from_labels(data.manifest["labels"]).predicted(probs) == data.labels).mean())  # the report's rule
    return float(tf.reduce_mean(losses)), accuracy, probs


@dataclass
class Trained:
    """What training hands the pipeline: the head holding the exported (best) weights, and how it got there."""

    head: object
    history: list[dict]  # one row an epoch, history.COLUMNS; validation figures None without validation
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


@dataclass(frozen=True)
class _Schedule:
    per_epoch: int  # steps (batches) an epoch
    total_steps: int

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_steps / self.per_epoch)


def train(train_set: Embeddings, cfg: TrainConfig, logdir: Path, checkpoint_path: Path, fingerprint: str) -> Trained:
    """Train a head on `train_set` less its validation part; return it with the best epoch's weights.

    After every epoch the whole state (weights, Adam, the dropout RNG, the history and the best
    weights so far) goes to `checkpoint_path`, so a killed run resumes there and ends with the very
    weights, curves and choice of epoch an uninterrupted run would have.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    fitted, validation = split(train_set, cfg.validation_fraction, cfg.seed, cfg.group_by)
    parts = {"train": fitted} if validation is None else {"train": fitted, "validation": validation}
    weights = class_weights(fitted.labels, len(fitted.manifest["labels"]), cfg.class_weights)
    per_epoch = math.ceil(len(fitted.uris) / cfg.batch_size)
    schedule = _Schedule(per_epoch, cfg.max_steps or cfg.epochs * per_epoch)
    head = build_head(fitted.vectors.shape[1], len(fitted.manifest["labels"]), cfg)
    optimizer = keras.optimizers.Adam(cfg.learning_rate)
    optimizer.build(head.trainable_variables)
    run_epoch = _epoch_function(head, optimizer, fitted, weights, cfg)

    state = checkpoint.restore(checkpoint_path, fingerprint, head, optimizer)
    if state.step:
        log.info("Resuming training from the checkpoint at step %d of %d", state.step, schedule.total_steps)
    else:
        ownership.remove(logdir, "new training curves")  # an earlier run's curves would mix with these
    labelled = {name: round(float(v), 6) for name, v in zip(fitted.manifest["labels"], weights, strict=True)}
    classes = from_labels(fitted.manifest["labels"])
    with _Curves(logdir, parts) as curves:
        _log_plan(parts, cfg, schedule, labelled)
        with Progress("training", schedule.epochs, unit="epochs") as progress:
            while state.step < schedule.total_steps and not history.patience_ran_out(state.history, cfg.patience):
                epoch = state.step // schedule.per_epoch + 1
                steps = min(schedule.per_epoch, schedule.total_steps - state.step)
                run_epoch(epoch, steps)
                state.step += steps
                scored = {name: evaluate(head, data, weights) for name, data in parts.items()}
                figures = {name: figures[:2] for name, figures in scored.items()}
                curves.add(state.step, figures)
                if not classes.is_pair:
                    recalls = {name: _recalls(data.labels, scored[name][2], classes) for name, data in parts.items()}
                    curves.add_recalls(state.step, recalls)
                    _log_recalls(state.step, recalls)
                state.history.append(history.row(epoch, state.step, figures))
                if history.best_epoch(state.history) == epoch:
                    state.best = [v.numpy() for v in head.variables]
                _log_figures(state.step, figures)
                checkpoint.save(checkpoint_path, fingerprint, state, head, optimizer)
                progress.update(epoch)
                faults.point(f"train:epoch-{epoch}")

    best, stopped = _chosen_epoch(state, schedule, cfg, validation is not None)
    for v, a in zip(head.variables, state.best, strict=True):
        v.assign(a)
    counts = {"train": fitted.counts(), "validation": validation.counts() if validation is not None else None}
    return Trained(head, state.history, best, stopped, counts, labelled)


def _epoch_function(head, optimizer, fitted: Embeddings, weights: np.ndarray, cfg: TrainConfig):
    """run_epoch(epoch, steps): train the head on `steps` batches of epoch `epoch` (from 1)."""
    import tensorflow as tf

    x, y, w = tf.constant(fitted.vectors), tf.constant(fitted.labels), tf.constant(weights[fitted.labels])
    signature = [
        tf.TensorSpec([None, fitted.vectors.shape[1]], tf.float32),
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

    def run_epoch(epoch: int, steps: int) -> None:
        # One permutation per epoch, from (seed, epoch counted from 0): the same batches after a resume.
        order = np.random.default_rng([cfg.seed, epoch - 1]).permutation(len(fitted.uris))[: steps * cfg.batch_size]
        run_steps(x, y, w, tf.constant(order))

    return run_epoch


class _Curves:
    """TensorBoard's loss and accuracy curves, a folder a part (logs/train, logs/validation)."""

    def __init__(self, logdir: Path, names):
        import tensorflow as tf

        self.writers = {}
        for name in names:
            folder = atomic.ensure_dir(logdir / name)
            before = set(folder.iterdir())
            self.writers[name] = tf.summary.create_file_writer(str(folder))
            ownership.claim_growing(*(set(folder.iterdir()) - before))  # the event file, created by the writer

    def add(self, step: int, figures: dict) -> None:
        import tensorflow as tf

        for name, (loss, accuracy) in figures.items():
            with self.writers[name].as_default(step=step):
                tf.summary.scalar("loss", loss)
                tf.summary.scalar("accuracy", accuracy)
            self.writers[name].flush()

    def add_recalls(self, step: int, recalls: dict) -> None:
        """Each class's recall, a curve a class (recall/deer), in each part's folder."""
        import tensorflow as tf

        for name, per_class in recalls.items():
            with self.writers[name].as_default(step=step):
                for label, recall in per_class.items():
                    if recall is not None:
                        tf.summary.scalar(f"recall/{label}", recall)
            self.writers[name].flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for writer in self.writers.values():
            writer.close()


def _describe(counts: dict) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items())


def _log_plan(parts: dict, cfg: TrainConfig, schedule: _Schedule, labelled: dict) -> None:
    fitted, validation = parts["train"], parts.get("validation")
    held_out = (
        f"validating on {len(validation.uris)} ({_describe(validation.counts())}) held out by "
        f"--validation-fraction {cfg.validation_fraction}"
        if validation is not None
        else "without validation (the last epoch is exported)"
    )
    log.info(
        "Training on %d embeddings (%s) for %d steps (%d per epoch), %s; figures are loss, accuracy",
        len(fitted.uris),
        _describe(fitted.counts()),
        schedule.total_steps,
        schedule.per_epoch,
        held_out,
    )
    if cfg.class_weights != "none":
        log.info(
            "Class weights (%s): %s", cfg.class_weights, ", ".join(f"{name} {v:.4g}" for name, v in labelled.items())
        )


def _log_figures(step: int, figures: dict) -> None:
    if "validation" in figures:
        log.info(
            "Eval, step %d: on train set %.4f, %.4f / on validation set %.4f, %.4f",
            step,
            *figures["train"],
            *figures["validation"],
        )
    else:
        log.info("Eval, step %d: on train set %.4f, %.4f", step, *figures["train"])


def _recalls(labels: np.ndarray, probabilities: np.ndarray, classes) -> dict:
    """Each class's share of its crops predicted as it (classes.predicted); None for a class with none."""
    predicted = classes.predicted(probabilities)
    return {
        name: float((predicted[labels == i] == i).mean()) if (labels == i).any() else None
        for i, name in enumerate(classes.names)
    }


def _log_recalls(step: int, recalls: dict) -> None:
    """One line a part: the recall of each class."""
    for part, per_class in recalls.items():
        shown = ", ".join(f"{name} {'n/a' if r is None else f'{r:.4f}'}" for name, r in per_class.items())
        log.info("Recall per class, step %d, %s set: %s", step, part, shown)


def _chosen_epoch(state: checkpoint.State, schedule: _Schedule, cfg: TrainConfig, validating: bool):
    """(the epoch to export, the epoch early stopping ended at or None), both said in the log."""
    best = history.best_epoch(state.history)
    stopped = state.history[-1]["epoch"] if state.step < schedule.total_steps else None
    if stopped is not None:
        log.info(
            "Early stopping after epoch %d of %d: no lower validation loss in the %d epochs since epoch %d",
            stopped,
            schedule.epochs,
            cfg.patience,
            best,
        )
    if validating:
        log.info(
            "Keeping epoch %d, the lowest validation loss (%.4f)", best, state.history[best - 1]["validation_loss"]
        )
    return best, stopped
