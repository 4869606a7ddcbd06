"""An exported model applied to encoded crops: P(positive) for each, a batch per call."""

from functools import cached_property
from pathlib import Path

import numpy as np

from meerkat.errors import MeerkatError
from meerkat.weights import sha256


class Scorer:
    def __init__(self, model_dir):
        import tensorflow as tf

        self.path = Path(model_dir).resolve()
        if not (self.path / "saved_model.pb").is_file():
            raise MeerkatError(
                f"no SavedModel in {model_dir}; pass the model/ folder written by `meerkat run` or `train`"
            )
        self.serve = tf.saved_model.load(str(self.path)).signatures["serving_default"]
        self._tf = tf

    @cached_property
    def sha256(self) -> str:
        """Of saved_model.pb, which holds the whole model: the weights are constants in its graph."""
        return sha256(self.path / "saved_model.pb")

    def __call__(self, images: list[bytes]) -> np.ndarray:
        """P(positive) of each encoded crop; raises tf.errors.InvalidArgumentError on a bad one."""
        return self.serve(image_bytes=self._tf.constant(images))["scores"].numpy()[:, 0]
