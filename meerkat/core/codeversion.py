"""Which code made an output: meerkat's release, its source revision, and a code key per output.

A rerun reuses an earlier result only when its inputs, its options and its code key match. The
code key of an output is a hash of the code that produces it, so an upgrade that changes that code
redoes the work, and one that does not (a new command, a help text, the docs) reuses it:

- the source of the modules the output's entry modules import, transitively (any edit counts, a
  comment too: reading it takes milliseconds, parsing it would take a noticeable part of a second),
  less the modules that decide how files are written or what is printed, never what they hold
  (NO_EFFECT);
- the versions of the libraries that compute it (TensorFlow and Keras for embeddings and models,
  OpenCV for motion detection).

The outputs and their entry modules are PARTS. `meerkat doctor` prints the keys.
"""

import hashlib
import json
import os
import re
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent  # meerkat/

# output -> (the modules that make it, the libraries whose versions count)
PARTS = {
    # The embedding of a crop: the cache's entries and the shards' vectors.
    "embedding": (
        ("embed.decode", "embed.backbones", "embed.embedder", "samples.imagefiles"),
        ("tensorflow", "keras", "opencv", "pillow"),
    ),
    # A shard of records: the embeddings, which files are skipped, how records are encoded.
    "shards": (("embed.preprocess", "embed.tfrecords"), ("tensorflow", "keras", "opencv", "pillow")),
    # The trained head, the exported model and metrics.json / predictions.csv / thresholds.csv
    # (the shards it is trained on have keys of their own).
    "model": (("train.fit", "train.export", "report.metrics"), ("tensorflow", "keras", "numpy")),
    # The page, the TensorBoard eval summaries and the model card: a change here redoes only them.
    "report": (("report.publish",), ("matplotlib", "tensorflow", "tensorboard")),
    # A video's crops (clips) and its scan results.
    "clips": (("video.clips",), ("opencv", "tensorflow")),
    "scan": (("video.scan",), ("opencv", "tensorflow")),
    # The scores of MegaDetector's boxes (scan --detections): its task parts.
    "detection-scan": (("detections.scan",), ("opencv", "tensorflow")),
    # The crops of MegaDetector's boxes (clips --detections): its parts, with --model their scores.
    "detection-clips": (("detections.clips",), ("opencv", "tensorflow")),
}

# Modules that shape how results are written, checked or reported on the terminal, never their
# content; the values they choose (options, precision, the weights file's hash) are in the keys.
NO_EFFECT = frozenset(
    {"__init__", "__main__", "cli", "doctor", "tensorboard", "core.atomic", "core.codeversion", "core.config",
     "core.errors", "core.faults", "core.locks", "core.logs", "core.ownership", "core.progress", "core.quiet",
     "core.slurm", "core.temporaries", "core.video_config", "embed.devices", "embed.weights"}
)  # fmt: skip

DISTRIBUTIONS = {
    "tensorflow": ("tensorflow-cpu", "tensorflow"),
    "keras": ("keras",),
    "numpy": ("numpy",),
    "opencv": ("opencv-python-headless", "opencv-python"),
    "pillow": ("pillow",),
    "matplotlib": ("matplotlib",),
    "tensorboard": ("tensorboard",),
}


def _module_path(name: str) -> Path | None:
    """meerkat.a.b -> its file (a module, or a package's __init__.py); None outside meerkat."""
    parts = name.split(".")
    if parts[0] != "meerkat":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


# `import meerkat.a`, `from meerkat.a import b, c` and `from meerkat import (a, b)`, anywhere in a file.
_IMPORT = re.compile(
    r"^[ \t]*(?:import[ \t]+(meerkat[\w.]*)|from[ \t]+(meerkat[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|.*))", re.M
)


@cache
def _imports(path: Path) -> frozenset[str]:
    """The meerkat modules `path` imports anywhere (top level or inside functions)."""
    found = set()
    for module, package, names in _IMPORT.findall(path.read_text(encoding="utf-8")):
        if module:
            found.add(module)
            continue
        for name in re.findall(r"\w+", names.split("#")[0]):
            # `from meerkat.p import x`: x is a module when it has a file, else a name in the module p.
            found.add(f"{package}.{name}" if _module_path(f"{package}.{name}") else package)
    return frozenset(n for n in found if _module_path(n))


def _is_package(name: str) -> bool:
    # A package's __init__ holds only its docstring: what it says of its part makes nothing.
    return name != "meerkat" and _module_path(name).name == "__init__.py"


def _short(name: str) -> str:
    return name.removeprefix("meerkat.") if name != "meerkat" else "__init__"


def modules(part: str) -> list[str]:
    """The modules whose code makes `part`'s output, by their name in the package."""
    entry, _ = PARTS[part]
    todo, seen = [f"meerkat.{m}" for m in entry], set()
    while todo:
        name = todo.pop()
        if name in seen or _short(name) in NO_EFFECT or _is_package(name):
            continue
        seen.add(name)
        todo += sorted(_imports(_module_path(name)))
    return sorted(_short(n) for n in seen)


def _library_version(library: str) -> str:
    for dist in DISTRIBUTIONS[library]:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "missing"


@cache
def key(part: str) -> str:
    """The code key of `part`: 16 hex digits, the same for the same code and libraries."""
    _, libraries = PARTS[part]
    h = hashlib.sha256(json.dumps({lib: _library_version(lib) for lib in libraries}, sort_keys=True).encode())
    for name in modules(part):
        path = _module_path(f"meerkat.{name}" if name != "__init__" else "meerkat")
        h.update(f"\0{name}\0".encode() + path.read_bytes())
        for data in sorted(path.parent.glob(f"{path.stem}.*")):  # its own data files: page.py's page.css
            if data.suffix not in (".py", ".pyc"):
                h.update(f"\0{data.name}\0".encode() + data.read_bytes())
    return h.hexdigest()[:16]


def revision() -> str:
    """The source revision: $MEERKAT_REVISION (an image sets it from its REVISION build arg), else
    `git rev-parse HEAD` of a source checkout (with "+modified" when tracked files differ), else unknown."""
    env = os.environ.get("MEERKAT_REVISION", "").strip()
    if env:
        return env
    source = PACKAGE.parent
    if not (source / ".git").exists():
        return "unknown"
    quiet = {"capture_output": True, "text": True, "timeout": 10, "env": {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}}
    try:
        head = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], check=True, **quiet).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(source), "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
            check=True,
            **quiet,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+modified" if status.strip() else head
