"""An exported model applied to encoded crops, a batch per call; its classes, and the score
columns predict and clips write of them.

The model's classes are those of its dict.txt (samples/classes.py). DeepMeerkat's pair gets
today's one column, score_positive; a model of other classes one column a class, score_<class>,
in dict.txt's order. scan keeps a crop by 1 - its background classes' scores (`keep_classes`):
P(positive) for the pair, score_animal for any other model (classes.py names them).
"""

from functools import cached_property
from pathlib import Path

import numpy as np

from meerkat.core.errors import MeerkatError, UsageError
from meerkat.embed.weights import sha256
from meerkat.samples.classes import NEGATIVE, SCORE_DECIMALS, Classes, from_labels

FIX = "pass the model/ folder written by `meerkat run` or `train`"


def _saved_model(model_dir) -> Path:
    """MODEL/saved_model.pb; a folder without one fails before TensorFlow loads."""
    pb = Path(model_dir).resolve() / "saved_model.pb"
    if not pb.is_file():
        raise MeerkatError(f"no SavedModel in {model_dir}; {FIX}")
    return pb


def model_sha256(model_dir) -> str:
    """Of saved_model.pb, which holds the whole model (the weights are constants in its graph):
    what keys a model's results, known without loading it."""
    return sha256(_saved_model(model_dir))


def labels(model_dir) -> tuple[str, ...]:
    """dict.txt beside the model: its classes, in the order of its outputs."""
    path = Path(model_dir).resolve()
    try:
        text = (path / "dict.txt").read_text(encoding="utf-8-sig")  # a byte-order mark, if saved by Notepad: dropped
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or "it is not UTF-8 text"
        raise MeerkatError(f"cannot read dict.txt in {path}: {reason}; pass a model/ meerkat exported") from None
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def model_classes(model_dir, background=None) -> Classes:
    """The classes of a model folder's dict.txt, background as `background` names them (default: by name)."""
    return from_labels(labels(model_dir), background or None)


def keep_classes(model_dir, background=None) -> Classes:
    """The classes for scan's keep rule; refuses a model none of whose classes means "nothing here"."""
    classes = model_classes(model_dir, background)
    names = ", ".join(classes.names)
    if classes.is_pair and background and classes.background != {NEGATIVE}:
        raise UsageError("the model is DeepMeerkat's positive/negative pair, whose background is negative; "
                         "leave --background out")  # fmt: skip
    if not classes.background:
        raise UsageError(
            f"none of the classes of {model_dir} ({names}) is named like empty, blank, background or negative; "
            "name the classes that mean nothing here with --background NAME"
        )
    if len(classes.background) == len(classes):
        raise UsageError(f"--background names every class ({names}); scan would keep nothing: leave an animal out")
    return classes


def shown(classes: Classes, probabilities) -> tuple[float, ...]:
    """One crop's scores of its score columns, rounded as the CSVs print them."""
    return tuple(round(float(p), SCORE_DECIMALS) for p in probabilities[: len(classes.score_columns())])


def label(classes: Classes, probabilities, threshold: float) -> str:
    """One crop's class: for the pair, positive when its printed P(positive) reaches `threshold`; else the top class."""
    return classes.names[int(classes.predicted(np.asarray([probabilities]), threshold)[0])]


def strongest(classes: Classes, probabilities) -> tuple[float, str]:
    """Of crops [N, classes] (N >= 1), the highest keep score (printed) and the top class of the crop that has it."""
    probabilities = np.asarray(probabilities)
    keep = classes.keep_scores(probabilities)
    best = int(np.argmax(keep))
    return round(float(keep[best]), SCORE_DECIMALS), classes.top(probabilities[best : best + 1])[0]


def score_each(model: "Scorer", batch: list[tuple[object, bytes]]) -> tuple[list[tuple[object, np.ndarray]], list]:
    """Score [(key, encoded crop)]: (key, probabilities) of each crop, and the keys of those the model
    could not decode. A batch that a bad file breaks is halved until that file is alone."""
    import tensorflow as tf

    if not batch:
        return [], []
    try:
        scores = model.probabilities([data for _, data in batch])
    except tf.errors.InvalidArgumentError:
        if len(batch) == 1:
            return [], [batch[0][0]]
        first, first_bad = score_each(model, batch[: len(batch) // 2])
        second, second_bad = score_each(model, batch[len(batch) // 2 :])
        return first + second, first_bad + second_bad
    return [(key, p) for (key, _), p in zip(batch, scores, strict=True)], []


class Scorer:
    def __init__(self, model_dir):
        self.path = _saved_model(model_dir).parent
        import tensorflow as tf

        try:
            signatures = tf.saved_model.load(str(self.path)).signatures
        except Exception as e:  # a damaged or foreign file: TensorFlow's errors for it vary
            reason = (getattr(e, "message", None) or str(e) or type(e).__name__).splitlines()[0]
            raise MeerkatError(f"cannot load the SavedModel in {model_dir} ({reason}); {FIX}") from None
        if "serving_default" not in signatures:
            raise MeerkatError(f"{model_dir} is not a model meerkat exported (no serving_default signature); {FIX}")
        self.serve = signatures["serving_default"]
        self._tf = tf

    @cached_property
    def sha256(self) -> str:
        return model_sha256(self.path)

    def __call__(self, images: list[bytes]) -> np.ndarray:
        """P(positive) of each encoded crop; raises tf.errors.InvalidArgumentError on a bad one."""
        return self.probabilities(images)[:, 0]

    def probabilities(self, images: list[bytes]) -> np.ndarray:
        """[crops, classes]: the model's softmax for each encoded crop, in dict.txt's order."""
        return self.serve(image_bytes=self._tf.constant(images))["scores"].numpy()

    @cached_property
    def labels(self) -> tuple[str, ...]:
        return labels(self.path)

    @cached_property
    def classes(self) -> Classes:
        return model_classes(self.path)
