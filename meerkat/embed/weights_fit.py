"""Whether a --weights file holds the weights of the backbone asked for, told from the file alone.

Keras would say so only when it builds the backbone, after every crop is hashed, and then in words
cut mid-sentence. The file says it first: an HDF5 weights file records every weight's shape. The
sorted shapes of the convolution kernels tell meerkat's backbones, and MobileNetV2's widths, apart,
and a dense kernel shows a classifier on top, which the backbones meerkat builds have not. h5py reads
them without TensorFlow.

Keras picks its reader by the file's name: `.keras` is a zip holding Keras 3's model.weights.h5,
`.weights.h5` is Keras 3's layout (layers/<kind>/vars/<i>), `.h5` and `.hdf5` Keras 2's (layer
names and weight names, as Keras publishes its ImageNet files). A file in one layout under the
other's name fails to load, so that is refused here too.
"""

import hashlib
import io
import zipfile
from pathlib import Path

from meerkat.core.errors import MeerkatError

# The signature of each backbone's convolution kernels, by (backbone, alpha). tests/test_backbones.py checks each
# against the model keras.applications builds, and that no two are alike.
SIGNATURES = {
    ("efficientnet_v2_b0", None): "8d2e0c3b1a354dd6",
    ("inception_v3", None): "f8e4e80b1ee20ef9",
    ("mobilenet_v2", 0.35): "beab8ea1562075b0",
    ("mobilenet_v2", 0.5): "e1c4d56d36f93a95",
    ("mobilenet_v2", 0.75): "9a90debebc7a8fc7",
    ("mobilenet_v2", 1.0): "a078be6decf1fb82",
    ("mobilenet_v2", 1.3): "701ad46c0eefa6f8",
    ("mobilenet_v2", 1.4): "fd04173e9dff98f5",
}

# The layouts a weights file can be in, and the name ending Keras reads each from (keras.saving.load_weights).
KERAS_2, KERAS_3, KERAS_ZIP = "Keras 2's layout", "Keras 3's layout", "a .keras zip"
ENDINGS = {KERAS_ZIP: ".keras", KERAS_3: ".weights.h5", KERAS_2: ".h5"}


def signature(shapes) -> str:
    """Of a model's or a file's weight shapes: the sha256 of its convolution kernels' shapes, sorted."""
    kernels = sorted(tuple(int(n) for n in s) for s in shapes if len(s) == 4)
    return hashlib.sha256(repr(kernels).encode()).hexdigest()[:16]


def named(backbone: str, alpha: float | None) -> str:
    """A backbone and its width: `mobilenet_v2 --alpha 0.5`, `inception_v3`."""
    return backbone + (f" --alpha {alpha}" if alpha is not None else "")


def _name_layout(name: str) -> str | None:
    if name.endswith(".keras"):
        return KERAS_ZIP
    if name.endswith(".weights.h5"):
        return KERAS_3
    return KERAS_2 if name.endswith((".h5", ".hdf5")) else None


class _NoWeights(Exception):
    """The file holds no Keras weights; the message says what it is instead."""


def _read(path: Path) -> tuple[str, tuple[str, float | None] | None, bool]:
    """The layout a weights file is in, the (backbone, alpha) its convolutions fit (if any), and whether
    it has a classifier on top."""
    import h5py  # only here: `meerkat --help` need not load it

    layout = KERAS_ZIP if zipfile.is_zipfile(path) else KERAS_2  # KERAS_2 until the file shows Keras 3's
    try:
        if layout == KERAS_ZIP:
            with zipfile.ZipFile(path) as z:
                source = io.BytesIO(z.read("model.weights.h5"))  # where a .keras file keeps its weights
        elif not h5py.is_hdf5(path):
            raise _NoWeights("is neither an HDF5 file nor a .keras zip")
        else:
            source = path
        shapes = []
        with h5py.File(source, "r", locking=False) as f:
            if "layer_names" not in f.attrs and "model_weights" in f:
                f = f["model_weights"]  # a whole Keras 2 model: Keras reads its weights from here
            if "layer_names" not in f.attrs:
                if "layers" not in f:
                    raise _NoWeights("is an HDF5 file without Keras weights")
                layout = layout if layout == KERAS_ZIP else KERAS_3

            def collect(_, item):
                if isinstance(item, h5py.Dataset):
                    shapes.append(item.shape)

            f.visititems(collect)
    except KeyError:
        raise _NoWeights("is a zip without model.weights.h5, so no .keras file") from None
    except (OSError, zipfile.BadZipFile) as e:
        raise _NoWeights(f"is a damaged weights file ({str(e).splitlines()[0]})") from None
    found = signature(shapes)
    holds = next((choice for choice, s in SIGNATURES.items() if s == found), None)
    return layout, holds, any(len(s) == 2 for s in shapes)


def check(path: Path, backbone: str, alpha: float | None) -> None:
    """Raise, naming the file, what it holds and what was asked, unless Keras can load it into `backbone`."""
    wanted = f"--backbone {named(backbone, alpha)}"
    try:
        layout, holds, top = _read(path)
    except _NoWeights as e:
        raise MeerkatError(
            f"weights file {path} {e}, not the weights of {wanted}; "
            f"pass {backbone}'s Keras weights file, or --weights imagenet"
        ) from None
    if holds is None:
        raise MeerkatError(
            f"weights file {path} holds the weights of none of meerkat's backbones (mobilenet_v2 at any --alpha, "
            f"inception_v3, efficientnet_v2_b0), not those of {wanted}; pass {backbone}'s Keras weights file, "
            "or --weights imagenet"
        )
    if holds != (backbone, alpha):
        use = f"--alpha {holds[1]}" if holds[0] == backbone else f"--backbone {named(*holds)}"
        raise MeerkatError(
            f"weights file {path} holds the weights of {named(*holds)}, not those of {wanted}; "
            f"pass {use} to use it, or --weights imagenet"
        )
    if top:
        raise MeerkatError(
            f"weights file {path} holds the weights of {named(backbone, alpha)} with a classifier on top "
            "(include_top=True), which meerkat's backbone has not; pass the file without it (Keras' *_no_top.h5 "
            "or *_notop.h5), or --weights imagenet"
        )
    if _name_layout(path.name) != layout:
        stem = Path(path.name.removesuffix(".weights.h5")).stem
        raise MeerkatError(
            f"weights file {path} holds the weights of {named(backbone, alpha)} in {layout}, which Keras reads "
            f"only from a name ending in {ENDINGS[layout]}; rename it, e.g. to {stem}{ENDINGS[layout]}"
        )
