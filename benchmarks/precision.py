#!/usr/bin/env python3
"""How far bfloat16 and float16 embeddings are from float32, and what that does to accuracy.

Embeds DeepMeerkat's sample crops (../shared/data) in each precision with the same backbone, then
prints the cosine similarity of every crop's embedding to its float32 one (mean and minimum) and
the eval accuracy of `meerkat run` in each precision. `--precision auto` picks a reduced precision
only where the measured figures meet the tolerance stated in the README (mean cosine >= 0.999,
minimum >= 0.99, accuracy within 0.02 of float32).

    python benchmarks/precision.py --backbone mobilenet_v2 --alpha 0.35 --weights ../shared/weights/...
    python benchmarks/precision.py --backbone inception_v3 --weights none    # numerics only
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "data" / "deepmeerkat_samples"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--alpha")
    p.add_argument("--weights", default="none")
    p.add_argument("--samples", type=Path, default=SAMPLES)
    args = p.parse_args()
    from meerkat.embed import tfrecords

    flags = ["--backbone", args.backbone, "--weights", args.weights] + (["--alpha", args.alpha] if args.alpha else [])
    vectors, accuracy = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("float32", "bfloat16", "float16"):
            out = Path(tmp) / precision
            cmd = [
                sys.executable,
                "-m",
                "meerkat",
                "run",
                str(args.samples),
                str(out),
                *flags,
                "--precision",
                precision,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(proc.stderr)
            shards, manifest = tfrecords.find_shards(str(out / "records" / "train"))
            uris, _, v = tfrecords.read_shards(shards, manifest["embedding_dim"])
            vectors[precision] = v[np.argsort(uris)]
            accuracy[precision] = json.loads((out / "report" / "metrics.json").read_text())["accuracy"]
    base = vectors["float32"]
    print(
        f"{args.backbone}{' ' + args.alpha if args.alpha else ''}, weights {Path(args.weights).name}, {len(base)} crops"
    )
    for precision, v in vectors.items():
        cos = (v * base).sum(1) / np.linalg.norm(v, axis=1) / np.linalg.norm(base, axis=1)
        print(
            f"  {precision:9s} cosine to float32: mean {cos.mean():.5f}  min {cos.min():.5f}   "
            f"eval accuracy {accuracy[precision]:.4f}"
        )


if __name__ == "__main__":
    main()
