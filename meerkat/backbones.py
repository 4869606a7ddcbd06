"""Frozen ImageNet backbones from keras.applications, and where their weights come from.

Weights are looked up in this order: a file given with --weights; the folder named by
MEERKAT_WEIGHTS_DIR (images bake weights there); Keras' cache (~/.keras/models); Keras' download.
The last three are checked against the hash Keras publishes (where it publishes none: that the
file is a whole HDF5 file), so a cut-off download is caught here and not as "does not fit".
"""

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from meerkat import fileio
from meerkat.errors import MeerkatError, UsageError
from meerkat.settings import WEIGHTS_DIR_ENV

log = logging.getLogger(__name__)

KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/"
MOBILENET_V2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


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

    return keras.applications.InceptionV3(
        input_shape=(299, 299, 3), include_top=False, weights=weights, pooling="avg"
    )


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


PRECISIONS = ("float32", "bfloat16", "float16")
KERAS_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


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


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# The hashes keras.applications passes to get_file (keras/src/applications/inception_v3.py and
# efficientnet_v2.py, Keras 3.15). Keras publishes none for MobileNetV2.
PUBLISHED_HASHES = {
    "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5": "bcbd6486424b2319ff4ef7d526e38f63",
    "efficientnetv2-b0_notop.h5": "893217f2bb855e2983157299931e43ff",
}


def weights_problem(path) -> str | None:
    """Why a Keras ImageNet weights file is unusable (a cut-off or wrong file), or None if it checks out."""
    expected = PUBLISHED_HASHES.get(Path(path).name)
    if expected:
        algorithm = "sha256" if len(expected) == 64 else "md5"  # as keras.utils.get_file's "auto"
        with open(path, "rb") as f:
            actual = hashlib.file_digest(f, algorithm).hexdigest()
        return None if actual == expected else f"its {algorithm} is {actual}, Keras publishes {expected}"
    # Without a hash, a cut-off file is still caught: an HDF5 header records the file's full length.
    import h5py

    try:
        h5py.File(path, "r").close()
    except OSError as e:
        return f"not a whole HDF5 file ({str(e).splitlines()[0]})"
    return None


def _keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def choose_precision(requested: str, gpus: list[str]) -> str:
    """--precision auto: mixed float16 when GPUs are in use (`gpus`, after --gpus), else float32.

    Measured here (benchmarks/): float16 embeddings stay within 0.9994 cosine of float32 with the
    same eval accuracy (+-0.01); Keras' mixed bfloat16 on this AMX CPU was slower than float32 for
    InceptionV3 (12.7 vs 18.3 images/s) and only 0.95 cosine at worst, so auto never picks it.
    """
    if requested == "auto":
        return "float16" if gpus else "float32"
    if requested not in PRECISIONS:
        raise UsageError(f"--precision must be one of auto, {', '.join(PRECISIONS)}; received {requested!r}")
    return requested


def resolve(name: str, alpha: float | None, weights: str, precision: str = "float32") -> BackboneSpec:
    """Turn --backbone/--alpha/--weights/--precision into a spec naming one local weights file (or none)."""
    from meerkat.devices import gpus_in_use

    alpha = check_choice(name, alpha)
    precision = choose_precision(precision, gpus_in_use())
    spec = _resolve_weights(name, alpha, weights)
    return BackboneSpec(spec.name, spec.alpha, spec.weights, spec.weights_sha256, precision)


def _resolve_weights(name: str, alpha: float | None, weights: str) -> BackboneSpec:
    if weights.lower() == "none":
        log.warning(
            "warning: --weights none: the backbone is randomly initialised; the model will NOT be "
            "useful for real data. Use it only for smoke tests."
        )
        return BackboneSpec(name, alpha, "none", None)
    if weights.lower() != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MeerkatError(f"weights file not found: {path}; pass an existing file, or --weights imagenet")
        return BackboneSpec(name, alpha, str(path.resolve()), sha256(path))

    remote = ARCHITECTURES[name].weights_file(alpha)
    filename = remote.rsplit("/", 1)[1]
    url = KERAS_ORIGIN + remote
    weights_dir = os.environ.get(WEIGHTS_DIR_ENV)
    baked = Path(weights_dir) / filename if weights_dir else None
    if baked and baked.is_file():
        # The user's or the image's file: name it, never delete it.
        problem = weights_problem(baked)
        if problem:
            raise MeerkatError(f"weights file {baked} (in ${WEIGHTS_DIR_ENV}) is damaged: {problem}; replace it with {url}")
        return BackboneSpec(name, alpha, str(baked), sha256(baked))

    cached = _keras_cache_dir() / filename
    looked = ", ".join(str(p) for p in (baked, cached) if p)
    state = f"not found (looked in {looked})"
    if cached.is_file():
        problem = weights_problem(cached)
        if not problem:
            return BackboneSpec(name, alpha, str(cached), sha256(cached))
        if fileio.not_ours(cached):
            raise MeerkatError(
                f"weights file {cached} is damaged ({problem}) and meerkat did not download it, so it is left "
                f"alone; delete it to let meerkat download it again, or fetch {url} and pass --weights PATH"
            )
        fileio.remove(cached)  # a download of ours that was cut short
        log.warning("warning: %s is damaged (%s); removed it and downloading it again", cached, problem)
        state = f"the cached file {cached} was corrupt ({problem}) and has been removed"
    try:
        import keras

        fileio.ensure_dir(cached.parent)
        fileio.record(cached)  # claimed before it appears, so a download cut short can be removed
        # cache_dir given: Keras reads $KERAS_HOME only once, when it is imported.
        path = keras.utils.get_file(
            filename, url, cache_subdir="models", cache_dir=str(cached.parent.parent), file_hash=PUBLISHED_HASHES.get(filename)
        )
        problem = weights_problem(path)
        if problem:
            raise ValueError(problem)
    except Exception as e:  # no network, proxy, HTTP error, a bad download: all end the same way for the user
        if cached.is_file() and weights_problem(cached):
            fileio.remove(cached)  # Keras keeps a download that fails its hash check
        raise MeerkatError(
            f"ImageNet weights {filename} for {name}: {state}, and the download failed ({type(e).__name__}); "
            f"fetch {url} elsewhere and pass --weights PATH or put it in ${WEIGHTS_DIR_ENV}"
        ) from e
    return BackboneSpec(name, alpha, str(path), sha256(path))


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


class Embedder:
    """A frozen backbone as a function: float32 RGB [N, size, size, 3] in [0, 255] -> [N, dim].

    With several devices (GPUs), each holds a copy of the backbone and gets an equal slice of
    every batch; TensorFlow runs the slices at the same time. `embed_here` is the one-device form
    that the exported model is built from, so the SavedModel is not tied to any device.
    """

    def __init__(self, spec: BackboneSpec, devices: list[str] | None = None):
        import tensorflow as tf

        from meerkat.devices import compute_devices

        self.spec = spec
        self.size = spec.arch.image_size
        self.devices = devices or compute_devices()
        self.models = []
        for device in self.devices:
            with tf.device(device):
                self.models.append(build(spec))
        self.model = self.models[0]
        signature = [tf.TensorSpec([None, self.size, self.size, 3], tf.float32)]
        self.embed = tf.function(self._embed, input_signature=signature)

    def embed_here(self, images):
        import tensorflow as tf

        return tf.cast(self.model(self.spec.arch.normalize(images), training=False), tf.float32)

    def _embed(self, images):
        import tensorflow as tf

        n = len(self.models)
        if n == 1:
            return self.embed_here(images)
        total = tf.shape(images)[0]

        def spread():
            sizes = tf.concat([tf.fill([n - 1], total // n), [total - (n - 1) * (total // n)]], 0)
            outputs = []
            for device, model, part in zip(self.devices, self.models, tf.split(images, sizes, num=n)):
                with tf.device(device):
                    outputs.append(tf.cast(model(self.spec.arch.normalize(part), training=False), tf.float32))
            return tf.concat(outputs, 0)

        # A batch smaller than the device count (the last one) would give some device an empty slice.
        return tf.cond(total >= n, spread, lambda: self.embed_here(images))
