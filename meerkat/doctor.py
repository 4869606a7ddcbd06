"""What this machine or container offers meerkat: versions, CUDA, GPUs, weights, mounts.

`check_mounts` runs before TensorFlow is imported, so the container entrypoint can refuse a bad
mount in a fraction of a second, with the fix for Docker and Apptainer in the message.
"""

import logging
import os
import platform
from pathlib import Path

from meerkat import __version__, fileio
from meerkat.devices import GPU_FLAGS, cuda_build_and_gpus
from meerkat.errors import MeerkatError
from meerkat.settings import WEIGHTS_DIR_ENV

log = logging.getLogger(__name__)


def check_mounts(samples: Path | None, output: Path | None) -> None:
    if samples is not None:
        if not samples.is_dir():
            raise MeerkatError(
                f"Samples folder {samples} not found: mount your crops there "
                f"(docker run -v /path/to/Samples:{samples}:ro, apptainer --bind /path/to/Samples:{samples})"
            )
        if not any(samples.iterdir()):
            raise MeerkatError(
                f"Samples folder {samples} is empty: the mount source is probably wrong; it must hold "
                "Training/Positives and Training/Negatives"
            )
    if output is not None:
        try:
            fileio.ensure_dir(output)
        except MeerkatError as e:
            raise MeerkatError(
                f"{e}. Mount a writable host folder (-v $PWD/Output:{output}) and run as its owner "
                f"(--user $(id -u):$(id -g)); uid here is {os.getuid()}"
            ) from e


def _weights() -> list[tuple[str, str]]:
    from meerkat.weights import sha256

    found = []
    for d in filter(
        None,
        {os.environ.get(WEIGHTS_DIR_ENV), str(Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models")},
    ):
        for f in sorted(Path(d).glob("*.h5")) if Path(d).is_dir() else []:
            found.append((str(f), sha256(f)))
    explicit = os.environ.get("MEERKAT_WEIGHTS", "")
    if explicit and explicit.lower() not in ("imagenet", "none") and not any(p == explicit for p, _ in found):
        found.append((explicit, sha256(explicit) if Path(explicit).is_file() else "MISSING"))
    return found


def report(samples: Path | None, output: Path | None) -> list[str]:
    """Lines describing the environment, a problem with a folder included (never raises for it)."""
    import keras
    import tensorflow as tf

    build = tf.sysconfig.get_build_info()
    cuda, gpus = cuda_build_and_gpus()
    lines = [
        f"meerkat {__version__}, Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}",
        f"TensorFlow CUDA build: {'yes' if cuda else 'no'}"
        + (f" (CUDA {build.get('cuda_version')}, cuDNN {build.get('cudnn_version')})" if cuda else ""),
        f"GPUs visible: {', '.join(gpus) if gpus else 'none'}"
        + ("" if gpus or not cuda else f" - running on the CPU; to use a GPU: {GPU_FLAGS}"),
        f"user: uid {os.getuid()} gid {os.getgid()}, HOME={os.environ.get('HOME', '')}",
    ]
    weights = _weights()
    lines += [f"weights: {p} sha256 {h}" for p, h in weights] or ["weights: none baked in or cached"]
    default = os.environ.get("MEERKAT_BACKBONE")
    if default:
        lines.append(f"default backbone: {default} (alpha {os.environ.get('MEERKAT_ALPHA') or '-'})")
    for name, kwargs in (
        ("Samples", {"samples": samples, "output": None}),
        ("Output", {"samples": None, "output": output}),
    ):
        path = kwargs["samples"] or kwargs["output"]
        if path is not None:
            try:
                check_mounts(**kwargs)
                lines.append(f"{name}: {path} ok")
            except MeerkatError as e:
                lines.append(f"{name}: problem: {e}")
    return lines
