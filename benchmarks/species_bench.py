#!/usr/bin/env python3
"""Species models (`make bench`): a whole multi-class run's seconds, and meerkat's top-1 against a plain
Keras softmax head trained on the same frozen embeddings.

Two real multi-class sets, made here from files that need no download:
  - ena24: the 21 ENA24 camera-trap images of ../shared/data/ena24_small (7 species), cut at their
    MegaDetector boxes by `meerkat clips --detections` and sorted by labels.csv. Three images a
    species are too few to train and test on: Testing holds the same crops as Training, so its
    figures are timings only (the run, as a user starts one, from crops to report).
  - digits: scikit-learn's bundled handwritten digits (1,797 8x8 images of 10 classes, read from the
    MegaDetector test venv, whose lock pins scikit-learn), written as 64x64 JPEGs; Testing is held
    out by meerkat (1 in 6 a class). Not wildlife, but real, many-class and large enough for top-1.
For each, `meerkat run` with the shared MobileNetV2-0.35 weights (seconds: median of --repeats
runs into fresh folders, the embedding cache cold each time), then the plain head: keras Dense(k,
softmax) on meerkat's own train shards, Adam (1e-3), batch 32, 30 epochs, top-1 on the eval shards.

    python benchmarks/species_bench.py              # both sets, 1 repeat: about 2 minutes here
    python benchmarks/species_bench.py --repeats 3
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WORK = ROOT / "build" / "bench" / "species"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_0.35_224_no_top.weights.h5"
TINY = ["--backbone", "mobilenet_v2", "--alpha", "0.35", "--weights", str(WEIGHTS)]
MEERKAT = [sys.executable, "-m", "meerkat"]
MD_PYTHON = ROOT / "build" / "megadetector-venv" / "bin" / "python"

DIGITS = """
import sys, cv2, numpy as np
from pathlib import Path
from sklearn.datasets import load_digits
d = load_digits()
for i, (img, y) in enumerate(zip(d.images, d.target)):
    big = cv2.resize((img * 255 / 16).astype(np.uint8), (64, 64), interpolation=cv2.INTER_CUBIC)
    path = Path(sys.argv[1]) / "Training" / f"digit {y}" / f"{i:04d}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(big, cv2.COLOR_GRAY2BGR))
"""


def _run(*args) -> str:
    done = subprocess.run([*map(str, args)], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        sys.exit(f"failed: {' '.join(map(str, args))}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout + done.stderr


def ena24_samples() -> Path:
    """Samples/{Training,Testing}/<species>/ of ena24_small's MegaDetector crops (the same in both)."""
    import csv

    samples = WORK / "ena24-samples"
    if (samples / "Testing").is_dir():
        return samples
    data = SHARED / "data" / "ena24_small"
    crops = WORK / "ena24-clips"
    shutil.rmtree(crops, ignore_errors=True)
    _run(*MEERKAT, "clips", "--detections", data / "md_annotations.json", "--image-root", data, "--output", crops)
    with open(data / "labels.csv", newline="") as f:
        species = {Path(row["filepath"]).stem: row["label"] for row in csv.DictReader(f)}
    with open(crops / "crops.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    tmp = WORK / "ena24-samples.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for row in rows:
        name = Path(row["crop"]).name
        label = species[Path(row["file"]).stem]
        for split in ("Training", "Testing"):
            (tmp / split / label).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(crops / "crops" / name, tmp / split / label / name)
    tmp.rename(samples)
    return samples


def digits_samples() -> Path:
    samples = WORK / "digits-samples"
    if not samples.is_dir():
        if not MD_PYTHON.exists():
            sys.exit(f"{MD_PYTHON} not found: run `make megadetector-env` (its scikit-learn holds the digits)")
        tmp = WORK / "digits-samples.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        _run(MD_PYTHON, "-c", DIGITS, tmp)
        tmp.rename(samples)
    return samples


def plain_head_top1(run: Path, epochs: int = 30) -> float:
    """Top-1 on the eval shards of a plain Keras softmax head trained on the train shards."""
    import keras
    import numpy as np

    from meerkat.embed import tfrecords

    def load(name):
        shards, manifest = tfrecords.find_shards(str(run / "records" / f"{name}-*.tfrecord.gz"))
        _, labels, vectors = tfrecords.read_shards(shards, manifest["embedding_dim"])
        return vectors, labels, len(manifest["labels"])

    (x, y, k), (xe, ye, _) = load("train"), load("eval")
    keras.utils.set_random_seed(0)
    head = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(k, activation="softmax")])
    head.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    head.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    return float((np.argmax(head.predict(xe, verbose=0), axis=1) == ye).mean())


def bench(name: str, samples: Path, repeats: int) -> None:
    seconds, metrics = [], {}
    for i in range(repeats):
        out = WORK / f"{name}-run-{i}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        _run(*MEERKAT, "run", samples, out, *TINY)
        seconds.append(time.perf_counter() - start)
        metrics = json.loads((out / "report" / "metrics.json").read_text())
    train = len((out / "docs" / "trainingdata.csv").read_text().splitlines())
    test = len((out / "docs" / "testingdata.csv").read_text().splitlines())
    k = len((out / "docs" / "dict.txt").read_text().splitlines())
    plain = plain_head_top1(out)
    top1 = metrics.get("top1", metrics.get("accuracy"))
    median = statistics.median(seconds)
    print(
        f"{name}: {k} classes, {train} training and {test} testing crops; meerkat run median {median:.1f} s "
        f"of {repeats}; top-1 meerkat {top1:.4f}, plain Keras softmax head {plain:.4f} "
        f"(ratio {top1 / plain if plain else float('nan'):.3f}); macro-F1 {metrics.get('macro_f1', float('nan')):.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sets", nargs="+", default=["ena24", "digits"], choices=["ena24", "digits"])
    args = parser.parse_args()
    if not WEIGHTS.exists():
        sys.exit(f"{WEIGHTS} not found: the bench needs the shared MobileNetV2-0.35 weights")
    WORK.mkdir(parents=True, exist_ok=True)
    makers = {"ena24": ena24_samples, "digits": digits_samples}
    for name in args.sets:
        bench(name, makers[name](), args.repeats)


if __name__ == "__main__":
    main()
