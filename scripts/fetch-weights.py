#!/usr/bin/env python3
"""Put one backbone weights file into a folder, checksummed: copied from a local folder when it is
there (offline builds), else downloaded. Standard library only: it runs in a bare build stage.

    fetch-weights.py --file F --url URL --hash sha256:HEX|md5:HEX --local DIR --dest DIR
"""

import argparse
import hashlib
import os
import shutil
import ssl
import sys
import urllib.request
from pathlib import Path


def digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--file", required=True)
    p.add_argument("--url", default="")
    p.add_argument("--hash", required=True, help="sha256:HEX or md5:HEX (Keras publishes md5 for some files)")
    p.add_argument("--local", type=Path, required=True)
    p.add_argument("--dest", type=Path, required=True)
    a = p.parse_args()

    algorithm, _, expected = a.hash.partition(":")
    a.dest.mkdir(parents=True, exist_ok=True)
    target, local = a.dest / a.file, a.local / a.file
    tmp = target.with_suffix(".part")
    if local.is_file():
        print(f"weights: copying {local}")
        shutil.copyfile(local, tmp)
    elif a.url:
        print(f"weights: downloading {a.url}")
        cafile = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
        context = ssl.create_default_context(cafile=cafile)
        with urllib.request.urlopen(a.url, context=context, timeout=300) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
    else:
        print(
            f"error: {a.file} is not in {a.local} and no URL was given; "
            "put the file in the build context's weights/ folder",
            file=sys.stderr,
        )
        return 1
    actual = digest(tmp, algorithm)
    if actual != expected:
        tmp.unlink()
        print(f"error: {a.file}: expected {algorithm} {expected}, received {actual}", file=sys.stderr)
        return 1
    tmp.replace(target)
    target.chmod(0o644)
    with open(a.dest / "SHA256SUMS", "a") as f:
        f.write(f"{digest(target, 'sha256')}  {a.file}\n")
    print(f"weights: {target} verified ({algorithm} {expected})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
