"""The frozen ImageNet backbones meerkat offers (keras.applications), and building one.

A BackboneSpec names one backbone completely: architecture, alpha, the weights file and its
sha256, and the compute precision. Every shard's manifest records it, so `train` rebuilds the very
network that preprocess used, and refuses if its weights file has changed since.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from meerkat.core.config import BackboneConfig
from meerkat.core.errors import MeerkatError, UsageError
from meerkat.embed import devices, weights, weights_fit
from meerkat.embed.weights import sha256

log = logging.getLogger(__name__)

MOBILENET_V2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
KERAS_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def _scale_to_unit(x):
    # MobileNetV2 and InceptionV3 were trained on RGB scaled to [-1, 1].
    return x / 127.5 - 1.0


def _identity(x):
    # EfficientNetV2 carries its own rescaling layer and takes RGB in [0, 255].
    return x


@dataclass(frozen=True)
class Architecture:
    image_size: int
    embedding_dim: Callable[[float], int]  # by alpha
    normalize: Callable
    weights_file: Callable[[float], str]  # the file name Keras downloads, by alpha
    construct: Callable  # (alpha, weights) -> keras.Model


def _mobilenet_v2(alpha, weights):
    import keras

    return keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), alpha=alpha, include_top=False, weights=weights, pooling="avg"
    )


def _inception_v3(alpha, weights):
    import keras

    return keras.applications.InceptionV3(input_shape=(299, 299, 3), include_top=False, weights=weights, pooling="avg")


def _efficientnet_v2_b0(alpha, weights):
    import keras

    return keras.applications.EfficientNetV2B0(
        input_shape=(224, 224, 3), include_top=False, weights=weights, pooling="avg"
    )


ARCHITECTURES = {
    "efficientnet_v2_b0": Architecture(
        224, lambda a: 1280, _identity, lambda a: "efficientnet_v2/efficientnetv2-b0_notop.h5", _efficientnet_v2_b0
    ),
    "mobilenet_v2": Architecture(
        224,
        lambda a: 1280 if a <= 1.0 else int(1280 * a + 4) // 8 * 8,  # Keras widens the last conv past 1.0
        _scale_to_unit,
        lambda a: f"mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(a)}_224_no_top.h5",
        _mobilenet_v2,
    ),
    "inception_v3": Architecture(
        299,
        lambda a: 2048,
        _scale_to_unit,
        lambda a: "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _inception_v3,
    ),
}


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone and its weights, as recorded in every shard's manifest."""

    name: str
    alpha: float | None
    weights: str  # a file path, or "none"
    weights_sha256: str | None
    precision: str = "float32"  # compute precision of the backbone; the embeddings are float32

    @property
    def arch(self) -> Architecture:
        return ARCHITECTURES[self.name]

    @property
    def label(self) -> str:
        """What the log calls it: `mobilenet_v2 0.35 (float32)`."""
        return f"{self.name}{f' {self.alpha}' if self.alpha else ''} ({self.precision})"


def check_choice(name: str, alpha: float | None) -> float | None:
    """Validate backbone and alpha; return the alpha to use (None where it does not apply)."""
    if name not in ARCHITECTURES:
        raise UsageError(f"unknown backbone {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    if name != "mobilenet_v2":
        if alpha is not None:
            raise UsageError(f"--alpha applies only to mobilenet_v2, received --alpha {alpha} with {name}")
        return None
    alpha = 1.0 if alpha is None else float(alpha)
    if alpha not in MOBILENET_V2_ALPHAS:
        raise UsageError(f"mobilenet_v2 has ImageNet weights for --alpha {MOBILENET_V2_ALPHAS}, received {alpha}")
    return alpha


def check(cfg: BackboneConfig) -> float | None:
    """What can be checked of the options before any other work, without TensorFlow: the backbone
    and alpha, and that a --weights file holds that backbone's weights. Returns the alpha to use.

    Files that --weights imagenet finds are not read here: they carry the name Keras gives that
    backbone's file, and weights.locate checks them whole.
    """
    alpha = check_choice(cfg.backbone, cfg.alpha)
    if cfg.weights.lower() not in ("imagenet", "none"):
        weights_fit.check(weights.given_file(cfg.weights), cfg.backbone, alpha)
    return alpha


def resolve(cfg: BackboneConfig) -> BackboneSpec:
    """The options -> a spec naming one local weights file (or none), for the devices in use."""
    alpha = check(cfg)
    precision = devices.choose_precision(cfg.precision, devices.select_gpus(cfg.gpus))
    path, digest = weights.locate(cfg.weights, ARCHITECTURES[cfg.backbone].weights_file(alpha), cfg.backbone)
    return BackboneSpec(cfg.backbone, alpha, path, digest, precision)


def build(spec: BackboneSpec):
    """The frozen Keras backbone of `spec`, with global average pooling (one vector per image)."""
    import keras

    weights = None if spec.weights == "none" else spec.weights
    if weights is not None and not Path(weights).is_file():
        raise MeerkatError(
            f"weights file {weights} (used to make these records) is gone; restore it or preprocess again"
        )
    if weights is not None and sha256(weights) != spec.weights_sha256:
        raise MeerkatError(f"weights file {weights} changed since these records were made; preprocess again")
    if weights is None:
        # Random but repeatable, so train can rebuild the very backbone that preprocess used.
        keras.utils.set_random_seed(0)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(KERAS_POLICIES[spec.precision])
    try:
        model = spec.arch.construct(spec.alpha, weights)
    except ValueError as e:
        raise MeerkatError(
            f"weights file {weights} does not fit backbone {spec.name}"
            f"{f' --alpha {spec.alpha}' if spec.alpha else ''}: {str(e).splitlines()[0]}"
        ) from e
    finally:
        keras.config.set_dtype_policy(previous)
    model.trainable = False
    return model
