#!/usr/bin/env python3
"""meerkat's performance, measured in one run and printed as a table (`make bench`).

For each backbone it measures:
  1. the bare forward pass on preloaded, already-resized tensors: the ceiling on this machine;
  2. `meerkat preprocess` (read, check, decode, resize, embed, write) with a cold cache, and its
     ratio to (1); then again on its finished shard, which is reused (every crop read and hashed);
  3. the whole `meerkat run` (docs, preprocess, train, export, report) cold, then again in the same
     folder (finished: nothing to redo), then in a new folder with the cache warm, then after 100
     new crops were added;
  4. the original design: one image per model call with the decode inside, as DeepMeerkat's Beam DoFn did;
  5. peak resident memory of `meerkat preprocess` at N and 4N images;
  6. training the head on 10,000 cached embeddings for 10 epochs;
  7. the ownership check (core.ownership) over a records/ folder of many shards: by name alone, as before
     issue 16, against by name and signature (size, mtime, inode), and what one write there costs.
Figures are medians over --repeats runs, with min-max. The data are synthetic JPEG crops
(80-320 px, made by `meerkat demo-samples`), split like the seed's job: 5000+5000 training,
500+500 testing for N = 11000.

    python benchmarks/bench.py --n 11000
    python benchmarks/bench.py --n 1100 --backbone inception_v3 --precision bfloat16
    python benchmarks/bench.py --ownership-only --shards 5000
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
SHARED_WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_v2_0.35_224_no_top.weights.h5"
WORK = ROOT / "build" / "bench"


def configs(args):
    if args.backbone:
        return [(args.backbone, args.alpha, args.weights, args.precision)]
    mobilenet_weights = str(SHARED_WEIGHTS) if SHARED_WEIGHTS.exists() else "none"
    # Speed does not depend on the weights' values: without the ImageNet files, random ones time the same.
    return [
        ("efficientnet_v2_b0", None, "none", "float32"),
        ("inception_v3", None, "none", "float32"),
        ("inception_v3", None, "none", "bfloat16"),
        ("mobilenet_v2", 0.35, mobilenet_weights, "float32"),
    ]


def samples(n: int, seed: int = 0) -> Path:
    from meerkat.samples.demo import make_demo_samples

    folder = WORK / f"samples-{n}-{seed}"
    if not folder.is_dir():
        train = max(2, round(n * 5000 / 11000))
        test = max(1, round(n * 500 / 11000))
        make_demo_samples(folder, train, test, seed)
    return folder


def stats(values) -> str:
    return f"{statistics.median(values):8.1f}  ({min(values):.1f}-{max(values):.1f})"


def meerkat(*args) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "meerkat", *map(str, args)], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stdout + proc.stderr)
    return time.perf_counter() - start, proc.stdout


def peak_rss_mb(*args) -> float:
    """Peak RSS of one `meerkat` process, measured by a parent that runs nothing else."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, sys.executable, "-m", "meerkat", *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.split()[-1]) / 1024


def bench(backbone, alpha, weights, precision, args):
    import tensorflow as tf

    from meerkat.core.config import BackboneConfig, DocsConfig, PreprocessConfig
    from meerkat.embed import backbones
    from meerkat.embed.decode import decode_and_resize
    from meerkat.embed.embedder import embedder_for
    from meerkat.embed.preprocess import preprocess
    from meerkat.samples.createdocs import createdocs

    name = f"{backbone}{f' {alpha}' if alpha else ''} {precision}"
    spec = backbones.resolve(BackboneConfig(backbone, alpha, weights, precision))
    embedder = embedder_for(spec)  # the one preprocess uses: built once, as in `meerkat run`
    data = samples(args.n)
    work = WORK / name.replace(" ", "-")
    shutil.rmtree(work, ignore_errors=True)
    docs = createdocs(DocsConfig(data, work / "docs-out", balance=False))
    paths = [line.rsplit(",", 1)[0] for line in docs.training_csv.read_text().splitlines()]
    flags = ["--backbone", backbone, "--weights", weights, "--precision", precision] + (
        ["--alpha", alpha] if alpha else []
    )
    table = [f"\n{name}: N = {args.n} ({len(paths)} training crops), batch {args.batch}, {args.repeats} repeats"]

    # 1. Bare forward pass: the same tf.function preprocess calls, on preloaded resized batches.
    batch = tf.stack([decode_and_resize(open(p, "rb").read(), embedder.size) for p in paths[: args.batch]])
    embedder.embed(batch)  # trace
    steps = args.batches
    bare = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(steps):
            embedder.embed(batch).numpy()
        bare.append(steps * args.batch / (time.perf_counter() - start))
    table.append(f"  1. bare forward pass              images/s {stats(bare)}")

    # 2. preprocess, cold cache each time, in this process (backbone already built, as in `meerkat run`).
    rates = []
    for r in range(args.repeats):
        start = time.perf_counter()
        shard = PreprocessConfig(
            docs.training_csv, docs.dict_txt, str(work / f"pre{r}" / "train"), args.batch, work / f"pre{r}" / "cache"
        )
        preprocess(shard, spec)
        rates.append(len(paths) / (time.perf_counter() - start))
    ratio = statistics.median(rates) / statistics.median(bare)
    table.append(f"  2. meerkat preprocess            images/s {stats(rates)}   ratio to (1): {ratio:.2f}")
    # Again on its finished shard: every crop read and hashed (the shard's key), the shard's sha256 checked.
    reused = [ms / 1000 for ms in timed(lambda: preprocess(shard, spec), args.repeats)]
    table.append(f"     the same, shard reused         seconds  {stats(reused)}")

    # 3. the whole job: cold, again when finished, warm cache (new output folder), then 100 crops added.
    cold, finished, warm, added = [], [], [], []
    for r in range(args.run_repeats):
        cache = work / f"run{r}" / "cache"
        cold.append(meerkat("run", data, work / f"run{r}" / "cold", *flags, "--cache-dir", cache, "--no-balance")[0])
        finished.append(
            meerkat("run", data, work / f"run{r}" / "cold", *flags, "--cache-dir", cache, "--no-balance")[0]
        )
        warm.append(meerkat("run", data, work / f"run{r}" / "warm", *flags, "--cache-dir", cache, "--no-balance")[0])
        grown = WORK / f"grown-{args.n}-{r}"
        shutil.rmtree(grown, ignore_errors=True)
        shutil.copytree(data, grown)
        extra = samples(110, seed=1000 + r)  # 100 training crops, 10 testing
        for f in (extra / "Training").rglob("*.jpg"):
            shutil.copy(f, grown / "Training" / f.parent.name / f"extra-{f.name}")
        seconds, out = meerkat("run", grown, work / f"run{r}" / "grown", *flags, "--cache-dir", cache, "--no-balance")
        added.append(seconds)
        computed = sum(
            int(line.split(" to compute")[0].rsplit(", ", 1)[1]) for line in out.splitlines() if " to compute" in line
        )
    table.append(f"  3. meerkat run, cold              seconds  {stats(cold)}")
    table.append(f"     meerkat run, again: finished   seconds  {stats(finished)}")
    table.append(f"     meerkat run, warm cache        seconds  {stats(warm)}")
    table.append(f"     meerkat run, +100 crops         seconds  {stats(added)}   embeddings computed: {computed}")

    # 4. The original design: one image per call, decode inside the call.
    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def one(image_bytes):
        return embedder.embed(decode_and_resize(image_bytes, embedder.size)[None])

    one(open(paths[0], "rb").read())
    sample = paths[: args.single_n]
    single = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for p in sample:
            one(tf.constant(open(p, "rb").read())).numpy()
        single.append(len(sample) / (time.perf_counter() - start))
    speedup = statistics.median(rates) / statistics.median(single)
    table.append(
        f"  4. one image per call (original)  images/s {stats(single)}   meerkat preprocess is {speedup:.1f}x faster"
    )

    # 5. Peak memory of preprocess at N and 4N (distinct crops, cold cache).
    rss = {}
    for n in (args.rss_n, 4 * args.rss_n):
        d = createdocs(DocsConfig(samples(n, seed=7), work / f"rss-docs-{n}", balance=False))
        rss[n] = peak_rss_mb(
            "preprocess",
            "--input-path",
            d.training_csv,
            "--input-dict",
            d.dict_txt,
            "--output-path",
            work / f"rss-{n}" / "train",
            "--cache-dir",
            work / f"rss-{n}" / "cache",
            *flags,
        )
    small, big = rss[args.rss_n], rss[4 * args.rss_n]
    table.append(
        f"  5. preprocess peak RSS            MB       N={args.rss_n}: {small:.0f}   "
        f"4N={4 * args.rss_n}: {big:.0f}   ratio {big / small:.2f}"
    )
    print("\n".join(table), flush=True)
    shutil.rmtree(work, ignore_errors=True)


def head_training(n=10000, dim=1280, epochs=10):
    """6. Training the head on n cached embeddings: read the shards, then `epochs` passes."""
    import numpy as np
    import tensorflow as tf

    from meerkat.core.config import TrainConfig
    from meerkat.embed import tfrecords
    from meerkat.train import data, fit

    folder = WORK / "head"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shard = tfrecords.shard_path(folder / "train", 0, 1)
    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(str(shard), options="GZIP") as w:
        for i in range(n):
            w.write(tfrecords.encode_example(f"img{i}.jpg", i % 2, rng.normal(i % 2, 1, dim).astype(np.float32)))
    labels = ["positive", "negative"]
    manifest = {"backbone": {}, "embedding_dim": dim, "labels": labels, "embedding_code": "", "input_key": ""}
    tfrecords.manifest_path(shard).write_text(__import__("json").dumps(manifest))
    reads, fits = [], []
    for r in range(3):
        start = time.perf_counter()
        embeddings = data.load(str(folder / "train"), "train")
        reads.append(time.perf_counter() - start)
        start = time.perf_counter()
        fit.train(embeddings, TrainConfig(epochs=epochs), folder / f"logs{r}", folder / f"ckpt{r}.npz", "bench")
        fits.append(time.perf_counter() - start)
    print(f"\nhead training on {n} embeddings ({dim}-d), batch 32:")
    print(f"  6. read the shards into memory     seconds  {stats(reads)}")
    print(f"     {epochs} epochs, validation every epoch seconds  {stats(fits)}")
    shutil.rmtree(folder, ignore_errors=True)


def timed(call, repeats: int) -> list[float]:
    """Milliseconds of each of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def ownership(shards: int, repeats: int = 21):
    """7. core.ownership's check over a records/ folder of `shards` shards (a .tfrecord.gz and a
    .json each, written by core.atomic): by name alone as before issue 16, and by name and signature."""
    from meerkat.core import atomic, ownership, temporaries

    folder = WORK / "ownership" / "records"
    shutil.rmtree(folder.parent, ignore_errors=True)
    atomic.ensure_dir(folder)
    names = [f"train-{i:05d}-of-{shards:05d}{ext}" for i in range(shards) for ext in (".tfrecord.gz", ".json")]
    start = time.perf_counter()
    for name in names:
        atomic.write_text(folder / name, "x" * 64)
    setup = time.perf_counter() - start
    legacy = folder.parent / "names-only"  # the same list in the format before issue 16: names alone
    legacy.write_text("".join(f"{n}\n" for n in names))
    old_temp = re.compile(r"^\..+\.[^.]+\.\d+\.tmp$")

    def folder_by_name():  # ownership.not_ours of a folder with its list, before issue 16
        listed = set(legacy.read_text().splitlines())
        for child in sorted(folder.iterdir()):
            if child.name == ownership.OWNED or old_temp.match(child.name):
                continue
            if child.name not in listed or (child.is_dir() and not child.is_symlink()):
                return child  # (the old check went on into a listed folder; records/ holds none)
        return None

    def file_by_name():  # ownership.not_ours of one file, before issue 16
        return None if names[-1] in set(legacy.read_text().splitlines()) else folder / names[-1]

    assert ownership.not_ours(folder) is None and folder_by_name() is None
    rows = [
        ("not_ours(records/), by name (before)", timed(folder_by_name, repeats)),
        ("not_ours(records/), by name + signature", timed(lambda: ownership.not_ours(folder), repeats)),
        ("not_ours(one shard), by name (before)", timed(file_by_name, repeats)),
        ("not_ours(one shard), by name + signature", timed(lambda: ownership.not_ours(folder / names[-1]), repeats)),
        ("one write_text into records/ (whole)", timed(lambda: atomic.write_text(folder / names[-1], "y"), repeats)),
        ("  of which its cleanup of dead temporaries", timed(lambda: temporaries.remove_stale(folder), repeats)),
    ]
    print(f"\nownership check on records/ with {shards} shards ({len(names)} files, {setup:.1f} s to write them):")
    for label, times in rows:
        print(f"  7. {label:42s} ms {stats(times)}")
    by_name, signed = (statistics.median(t) for _, t in rows[:2])
    print(f"     the folder check by name + signature takes {signed / by_name:.2f}x the time by name alone")
    shutil.rmtree(folder.parent, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=11000, help="crops in the job (default: the seed's 11000)")
    p.add_argument("--backbone", help="one backbone instead of the default set")
    p.add_argument("--alpha", type=float)
    p.add_argument("--weights", default="none")
    p.add_argument("--precision", default="float32")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--run-repeats", type=int, default=1, help="repeats of the whole-run figures (slow)")
    p.add_argument("--batches", type=int, default=8, help="batches per bare-forward repeat")
    p.add_argument("--single-n", type=int, default=200, help="images in the one-per-call measurement")
    p.add_argument("--rss-n", type=int, default=1000)
    p.add_argument("--head-only", action="store_true", help="only the head-training figures (6)")
    p.add_argument("--no-head", action="store_true", help="skip the head-training figures (6)")
    p.add_argument("--shards", type=int, default=2000, help="shards in the ownership check's records/ folder (7)")
    p.add_argument("--ownership-only", action="store_true", help="only the ownership-check figures (7)")
    args = p.parse_args()
    ownership(args.shards)
    if args.ownership_only:
        return
    import platform

    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    print(f"meerkat benchmark: {cpu}, {os.cpu_count()} CPUs, TensorFlow {tf.__version__}")
    if not args.head_only:
        for config in configs(args):
            bench(*config, args)
    if not args.no_head:
        head_training()


if __name__ == "__main__":
    main()
