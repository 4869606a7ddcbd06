"""What this machine or container offers meerkat: versions, CUDA, GPUs, weights, mounts, image.

`check_mounts` runs before TensorFlow is imported, so `meerkat run` in the image refuses a bad or
missing mount in a fraction of a second, with the fix for Docker and Apptainer in the message.

An image cannot hold its own id (the id is a digest over the image's config, which lists its
layers). What a container can show is written at build time into /opt/meerkat/image.json: the
revision, version and date it was built from, and a digest of its files (`files_digest`). The build
prints that digest on its last line next to the image id (scripts/image-id.sh), so a doctor output
can be matched to the id a user cites. `python -P -m meerkat.doctor --verify` recomputes it
(docs/containers-reproducible.md).
"""

import argparse
import hashlib
import json
import logging
import os
import platform
import re
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from meerkat import __version__
from meerkat.core import atomic
from meerkat.core.errors import MeerkatError
from meerkat.core.settings import WEIGHTS_DIR_ENV
from meerkat.embed.devices import GPU_FLAGS, cuda_build_and_gpus

log = logging.getLogger(__name__)


# Written at build time by the Dockerfile's last RUN (python -P -m meerkat.doctor --write ...): its
# presence says meerkat runs from its image, where a folder it writes must be a mount to outlive it.
IMAGE_INFO = Path("/opt/meerkat/image.json")
MOUNTINFO = Path("/proc/self/mountinfo")
_OCTAL = re.compile(rb"\\([0-7]{3})")


def mount_points(mountinfo: Path) -> list[str] | None:
    """The mount points /proc/self/mountinfo lists (its fifth field, octal escapes undone); None when unreadable."""
    try:
        lines = mountinfo.read_bytes().splitlines()
    except OSError:
        return None
    points = [line.split(b" ")[4] for line in lines if line.count(b" ") >= 4]
    return [os.fsdecode(_OCTAL.sub(lambda m: bytes([int(m[1], 8)]), p)) for p in points]


def container_mounts() -> list[str] | None:
    """Inside meerkat's image, its mount points; None elsewhere, where any folder lasts."""
    return mount_points(MOUNTINFO) if IMAGE_INFO.is_file() else None


def _on_a_mount(path: Path, mounts: list[str]) -> bool:
    """Whether `path` (links resolved) lies on a file system mounted below /, not on the container's own."""
    real = os.path.realpath(path)
    return any(m != "/" and (real == m or real.startswith(m.rstrip("/") + "/")) for m in mounts)


def check_mounts(
    samples: Path | None, output: Path | None, mounts: list[str] | None = None, name: str = "Output"
) -> None:
    """Refuse a missing Samples folder, an empty one, and an output that cannot be written; with
    `mounts` (container_mounts() in the image), an output that is not on a mount too. `name`: what
    the output folder is called (sort writes into Samples and its crops' folder)."""
    if samples is not None:
        if not samples.is_dir():
            raise MeerkatError(
                f"Samples folder {samples} not found: mount your crops there "
                f"(docker run -v /path/to/Samples:{samples}:ro, apptainer --bind /path/to/Samples:{samples})"
            )
        if not any(samples.iterdir()):
            raise MeerkatError(
                f"Samples folder {samples} is empty: the mount source is probably wrong; it must hold "
                "Training/Positives and Training/Negatives (or a folder a class)"
            )
    if output is not None:
        if mounts is not None and not _on_a_mount(output, mounts):
            raise MeerkatError(
                f"{name} folder {output} is not a mount: what meerkat writes there would be lost with the "
                f"container; mount a host folder on it (docker run -v $PWD/{name}:{output}, "
                f"apptainer run --bind $PWD/{name}:{output})"
            )
        try:
            atomic.ensure_dir(output)
        except MeerkatError as e:
            raise MeerkatError(
                f"{e}. Mount a writable host folder (docker run -v $PWD/{name}:{output}, apptainer run --bind "
                f"$PWD/{name}:{output}) and run as its owner (--user $(id -u):$(id -g)); uid here is {os.getuid()}"
            ) from e


def _weights() -> list[tuple[str, str]]:
    from meerkat.embed.weights import sha256

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


# The programs of the image: Python and its libraries (/usr), the venv, weights and entrypoint (/opt).
# Not /etc, /var, /tmp, /data: engines mount over parts of them (/etc/hosts; Apptainer's /etc/passwd).
IMAGE_ROOTS = ("/opt", "/usr")


def _file_sha256(path: bytes) -> bytes:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest().encode()


def files_digest(roots=IMAGE_ROOTS, skip=(IMAGE_INFO,)) -> tuple[str, int]:
    """A sha256 over every folder, file and link under `roots` (`skip` left out): path, kind,
    permissions, owner, and a file's sha256 or a link's target. Not times: the same files give the
    same digest in Docker, Podman and Apptainer. Returns ("sha256:HEX", number of entries)."""
    skipped = {os.fsencode(str(p)) for p in skip}
    paths = []
    for root in roots:
        root = os.fsencode(os.path.abspath(root))
        if not os.path.lexists(root):
            continue
        paths.append(root)
        for folder, dirs, files in os.walk(root):
            paths += [os.path.join(folder, name) for name in dirs + files]
    entries = [(path, os.lstat(path)) for path in sorted(set(paths) - skipped)]
    regular = [path for path, st in entries if stat.S_ISREG(st.st_mode)]
    # hashlib lets go of the GIL on large reads: threads use every core on the big venv.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        contents = dict(zip(regular, pool.map(_file_sha256, regular), strict=True))
    digest = hashlib.sha256()
    for path, st in entries:
        if stat.S_ISREG(st.st_mode):
            kind, content = b"f", contents[path]
        elif stat.S_ISLNK(st.st_mode):
            kind, content = b"l", os.readlink(path)
        else:
            kind, content = (b"d" if stat.S_ISDIR(st.st_mode) else b"o"), b""
        fields = [kind, b"%04o" % stat.S_IMODE(st.st_mode), b"%d:%d" % (st.st_uid, st.st_gid), path, content]
        digest.update(b"\0".join(fields) + b"\n")
    count = len(entries)
    return f"sha256:{digest.hexdigest()}", count


def image_info(path: Path = IMAGE_INFO) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _containerenv(path: Path = Path("/run/.containerenv")) -> dict[str, str]:
    """Podman's /run/.containerenv: empty, except under --privileged (then engine, image, imageid)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line)
    return {k.strip(): v.strip().strip('"') for k, v in pairs}


def image_lines(info_path: Path = IMAGE_INFO, containerenv: Path = Path("/run/.containerenv")) -> list[str]:
    """What the container knows of its image: what its build wrote (image.json), and the engine's id
    where the engine tells it (podman --privileged); Apptainer names its SIF file."""
    info = image_info(info_path)
    if info is None:
        lines = ["image: none (meerkat is not running from its container image)"]
    else:
        lines = [
            f"image: meerkat {info.get('version', '?')} {info.get('variant', '?')}, "
            f"revision {info.get('revision', '?')}, created {info.get('created', '?')}",
            f"image files: {info.get('files', '?')} ({info.get('count', '?')} entries in "
            f"{' '.join(info.get('roots', []))} at build time; check: python -P -m meerkat.doctor --verify)",
        ]
    engine = _containerenv(containerenv)
    if engine.get("imageid"):
        lines.append(
            f"image id: sha256:{engine['imageid'].removeprefix('sha256:')} "
            f"({engine.get('engine', 'podman')}, {engine.get('image', '?')})"
        )
    sif = os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER")
    if sif:
        lines.append(f"SIF: {sif} (its own sha256: sha256sum on the host)")
    return lines


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
    lines += image_lines()
    from meerkat.core import codeversion

    keys = ", ".join(f"{part} {codeversion.key(part)}" for part in codeversion.PARTS)
    lines.append(f"code keys (a change redoes that output): {keys}; revision {codeversion.revision()}")
    weights = _weights()
    lines += [f"weights: {p} sha256 {h}" for p, h in weights] or ["weights: none baked in or cached"]
    default = os.environ.get("MEERKAT_BACKBONE")
    if default:
        lines.append(f"default backbone: {default} (alpha {os.environ.get('MEERKAT_ALPHA') or '-'})")
    for name, kwargs in (
        ("Samples", {"samples": samples, "output": None}),
        ("Output", {"samples": None, "output": output, "mounts": container_mounts()}),
    ):
        path = kwargs["samples"] or kwargs["output"]
        if path is not None:
            try:
                check_mounts(**kwargs)
                lines.append(f"{name}: {path} ok")
            except MeerkatError as e:
                lines.append(f"{name}: problem: {e}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """`--write FILE`: record the image's files at build time (the Dockerfile's last RUN).
    `--verify`: recompute the digest of the image's files and compare it with the recorded one."""
    parser = argparse.ArgumentParser(prog="python -P -m meerkat.doctor", description=main.__doc__)
    parser.add_argument("--write", type=Path, metavar="FILE")
    parser.add_argument("--verify", action="store_true")
    for name in ("revision", "created", "variant"):
        parser.add_argument(f"--{name}", default="unknown")
    args = parser.parse_args(argv)
    if args.write:
        files, count = files_digest(skip=(args.write,))
        info = {"files": files, "count": count, "roots": list(IMAGE_ROOTS), "version": __version__}
        info |= {"revision": args.revision, "created": args.created, "variant": args.variant}
        args.write.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        print(f"image files: {files} ({count} entries under {' '.join(IMAGE_ROOTS)})")
        return 0
    if args.verify:
        info = image_info()
        if info is None:
            print(f"error: no {IMAGE_INFO}: not a meerkat image", file=sys.stderr)
            return 1
        try:
            files, count = files_digest(roots=info["roots"])
        except PermissionError as e:
            print(f"error: {e}: run the check as root (--user 0)", file=sys.stderr)
            return 1
        if files != info["files"]:
            print(
                f"image files: {files} ({count} entries), but the build recorded {info['files']} "
                f"({info['count']} entries): the files have changed since the build",
                file=sys.stderr,
            )
            return 1
        print(f"image files: {files} ({count} entries): as built")
        return 0
    parser.print_usage(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
