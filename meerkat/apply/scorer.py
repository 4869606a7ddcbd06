"""An exported model applied to encoded crops: P(positive) for each, a batch per call."""

from functools import cached_property
from pathlib import Path

import numpy as np

from meerkat.core.errors import MeerkatError
from meerkat.embed.weights import sha256


class Scorer:
    def __init__(self, model_dir):
        self.path = Path(model_dir).resolve()
        fix = "pass the model/ folder written by `meerkat run` or `train`"
        if not (self.path / "saved_model.pb").is_file():  # before TensorFlow loads: a wrong path fails at once
            raise MeerkatError(f"no SavedModel in {model_dir}; {fix}")
        import tensorflow as tf

        try:
            signatures = tf.saved_model.load(str(self.path)).signatures
        except Exception as e:  # a damaged or foreign file: TensorFlow's errors for it vary
            reason = (getattr(e, "message", None) or str(e) or type(e).__name__).splitlines()[0]
            raise MeerkatError(f"cannot load the SavedModel in {model_dir} ({reason}); {fix}") from None
        if "serving_default" not in signatures:
            raise MeerkatError(f"{model_dir} is not a model meerkat exported (no serving_default signature); {fix}")
        self.serve = signatures["serving_default"]
        self._tf = tf

    @cached_property
    def sha256(self) -> str:
        """Of saved_model.pb, which holds the whole model: the weights are constants in its graph."""
        return sha256(self.path / "saved_model.pb")

    def __call__(self, images: list[bytes]) -> np.ndarray:
        """P(positive) of each encoded crop; raises tf.errors.InvalidArgumentError on a bad one."""
        return self.probabilities(images)[:, 0]

    def probabilities(self, images: list[bytes]) -> np.ndarray:
        """[crops, classes]: the model's softmax for each encoded crop, in dict.txt's order."""
        return self.serve(image_bytes=self._tf.constant(images))["scores"].numpy()

    @cached_property
    def labels(self) -> tuple[str, ...]:
        """dict.txt beside the model: its classes, in the order of its outputs."""
        try:
            text = (self.path / "dict.txt").read_text(encoding="utf-8")
        except OSError as e:
            raise MeerkatError(
                f"cannot read dict.txt in {self.path}: {e.strerror or e}; pass a model/ meerkat exported"
            ) from None
        return tuple(line.strip() for line in text.splitlines() if line.strip())
