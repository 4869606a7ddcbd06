"""Which devices compute: all visible GPUs (or the first --gpus of them), else the CPU."""

import logging

from meerkat.core.errors import UsageError

log = logging.getLogger(__name__)

GPU_FLAGS = "docker run --gpus all, podman run --device nvidia.com/gpu=all, apptainer --nv"


def select_gpus(limit: int | None) -> list[str]:
    """Hide all but the first `limit` GPUs (0: run on the CPU); return the GPUs in use.

    Call before TensorFlow computes anything.
    """
    if limit is None:
        return gpus_in_use()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")[: max(0, limit)]
    tf.config.set_visible_devices(gpus, "GPU")
    return [g.name for g in gpus]


def gpus_in_use() -> list[str]:
    """The visible GPUs. Not list_physical_devices: that also lists the GPUs hidden by --gpus."""
    import tensorflow as tf

    return [g.name for g in tf.config.get_visible_devices("GPU")]


def batch_size(requested: int | None, gpus: list[str] | None = None) -> int:
    """Images per backbone call: as asked, else 128 with GPUs in use and 32 on the CPU."""
    if requested:
        return requested
    if gpus is None:
        gpus = gpus_in_use()
    return 128 if gpus else 32


def compute_devices() -> list[str]:
    """Logical devices to spread preprocess batches over: every visible GPU, or the CPU."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return [g.name for g in gpus] or ["/CPU:0"]


def cuda_build_and_gpus() -> tuple[bool, list[str]]:
    """(TensorFlow built with CUDA, names of the visible GPUs)."""
    import tensorflow as tf

    return tf.test.is_built_with_cuda(), gpus_in_use()


def log_devices(limit: int | None) -> None:
    """Say where meerkat computes, once --gpus (`limit`) has been applied (select_gpus)."""
    cuda, gpus = cuda_build_and_gpus()
    if gpus:
        log.info("Using %d GPU(s): %s", len(gpus), ", ".join(gpus))
    elif limit == 0:
        log.info("Running on the CPU (--gpus 0).")
    elif cuda:
        log.warning(
            "warning: this is a CUDA build of TensorFlow but no GPU is visible, so meerkat runs on the CPU. "
            "To use a GPU: %s",
            GPU_FLAGS,
        )
    else:
        log.info("Running on the CPU (TensorFlow without CUDA).")


PRECISIONS = ("float32", "bfloat16", "float16")


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
