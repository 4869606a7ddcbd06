"""Where a backbone's weights come from, and whether the file is whole.

Weights are looked up in this order: a file given with --weights; the folder named by
MEERKAT_WEIGHTS_DIR (images bake weights there); Keras' cache (~/.keras/models); Keras' download.
The last three are checked against the hash Keras publishes (where it publishes none: that the
file is a whole HDF5 file), so a cut-off file is caught here and not as "does not fit".
meerkat downloads into a temporary beside the cached file and renames it into place only once it
checks out, so no kill leaves part of a file under Keras' name. ~/.keras/models is Keras' folder,
not meerkat's: it gets no list of meerkat's (core.ownership marks the file itself). A damaged file of
meerkat's own is removed and fetched again; any other file is only named.
"""

import hashlib
import logging
import os
from pathlib import Path

from meerkat.core import atomic, ownership
from meerkat.core.errors import MeerkatError
from meerkat.core.settings import WEIGHTS_DIR_ENV

log = logging.getLogger(__name__)

KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/"


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# The hashes keras.applications passes to get_file (keras/src/applications/inception_v3.py and
# efficientnet_v2.py, Keras 3.15). Keras publishes none for MobileNetV2.
PUBLISHED_HASHES = {
    "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5": "bcbd6486424b2319ff4ef7d526e38f63",
    "efficientnetv2-b0_notop.h5": "893217f2bb855e2983157299931e43ff",
}


def weights_problem(path, name: str | None = None) -> str | None:
    """Why a Keras ImageNet weights file (named `name` in Keras' cache; by default its own name)
    is unusable (a cut-off or wrong file), or None if it checks out."""
    expected = PUBLISHED_HASHES.get(name or Path(path).name)
    if expected:
        algorithm = "sha256" if len(expected) == 64 else "md5"  # as keras.utils.get_file's "auto"
        with open(path, "rb") as f:
            actual = hashlib.file_digest(f, algorithm).hexdigest()
        return None if actual == expected else f"its {algorithm} is {actual}, Keras publishes {expected}"
    # Without a hash, a cut-off file is still caught: an HDF5 header records the file's full length.
    import h5py

    try:
        h5py.File(path, "r", locking=False).close()  # no lock: a download in progress holds one
    except OSError as e:
        return f"not a whole HDF5 file ({str(e).splitlines()[0]})"
    return None


def _keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def locate(weights: str, remote: str, name: str) -> tuple[str, str | None]:
    """--weights -> (a local weights file, its sha256), or ("none", None) for a random backbone.

    `remote` is the file's path below KERAS_ORIGIN; `name` the backbone, for messages.
    """
    if weights.lower() == "none":
        log.warning(
            "warning: --weights none: the backbone is randomly initialised; the model will NOT be "
            "useful for real data. Use it only for smoke tests."
        )
        return "none", None
    if weights.lower() != "imagenet":
        path = given_file(weights)
        return str(path.resolve()), sha256(path)
    path = _imagenet_file(remote, name)
    return str(path), sha256(path)


def given_file(weights: str) -> Path:
    """The file of --weights PATH, which must exist."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise MeerkatError(f"weights file not found: {path}; pass an existing file, or --weights imagenet")
    return path


def _imagenet_file(remote: str, name: str) -> Path:
    """The checked ImageNet weights file: baked in, else in Keras' cache, else downloaded there."""
    filename = remote.rsplit("/", 1)[1]
    url = KERAS_ORIGIN + remote
    weights_dir = os.environ.get(WEIGHTS_DIR_ENV)
    baked = Path(weights_dir) / filename if weights_dir else None
    if baked and baked.is_file():
        # The user's or the image's file: name it, never delete it.
        problem = weights_problem(baked)
        if problem:
            raise MeerkatError(
                f"weights file {baked} (in ${WEIGHTS_DIR_ENV}) is damaged: {problem}; replace it with {url}"
            )
        return baked

    cached = _keras_cache_dir() / filename
    looked = ", ".join(str(p) for p in (baked, cached) if p)
    why = f"not found (looked in {looked})"
    if cached.is_file():
        problem = weights_problem(cached)
        if not problem:
            return cached
        _remove_damaged(cached, problem, url)
        why = f"the cached file {cached} was corrupt ({problem}) and has been removed"
    _download(url, cached, f"ImageNet weights {filename} for {name}: {why}")
    return cached


def _remove_damaged(cached: Path, problem: str, url: str) -> None:
    """Remove a damaged file from Keras' cache if meerkat downloaded it; name any other one."""
    if ownership.not_ours(cached):
        raise MeerkatError(
            f"weights file {cached} is damaged ({problem}) and meerkat did not download it, so it is left "
            f"alone; delete it to let meerkat download it again, or fetch {url} and pass --weights PATH"
        )
    ownership.remove(cached)  # a download of ours that was cut short
    log.warning("warning: %s is damaged (%s); removed it and downloading it again", cached, problem)


def _download(url: str, cached: Path, what: str) -> None:
    """Download `url` to `cached` through a temporary, checked before it takes the name; `what` names
    the file and why it is fetched, for the error."""
    filename = cached.name
    try:
        import keras

        cached.parent.mkdir(parents=True, exist_ok=True)  # as Keras makes it: Keras' folder, not meerkat's
        with atomic.atomic_path(cached) as tmp:
            # Into the temporary (force: it exists, empty); cache_dir given, as Keras reads $KERAS_HOME
            # only once, when it is imported.
            keras.utils.get_file(
                tmp.name,
                url,
                cache_subdir="",
                cache_dir=str(tmp.parent),
                file_hash=PUBLISHED_HASHES.get(filename),
                force_download=True,
            )
            problem = weights_problem(tmp, filename)
            if problem:
                raise ValueError(problem)
    except MeerkatError:
        raise  # a file of the user's in the way, an unwritable folder: already one line naming it
    except Exception as e:  # no network, proxy, HTTP error, a bad download: all end the same way for the user
        raise MeerkatError(
            f"{what}, and the download failed ({type(e).__name__}); "
            f"fetch {url} elsewhere and pass --weights PATH or put it in ${WEIGHTS_DIR_ENV}"
        ) from e
