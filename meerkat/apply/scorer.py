"""An exported model applied to encoded crops: P(positive) for each, a batch per call."""

from functools import cached_property
from pathlib import Path

import numpy as np

from meerkat.core.errors import MeerkatError
from meerkat.embed.weights import sha256

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
