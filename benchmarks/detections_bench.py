#!/usr/bin/env python3
"""MegaDetector's boxes classified in one pass against two (`make bench`).

On full-size camera-trap frames that it makes once (4000x3000 JPEGs of smooth seeded noise with
1 to 5 of DeepMeerkat's sample crops pasted into each, and MegaDetector's results file for them;
cached in build/bench/detections/), it times
  - one pass: `scan MODEL --detections md.json` (each frame decoded once for all its boxes, the
    crops scored in batches, detections.json written);
  - two passes: `clips --detections md.json` (the crops written as JPEG files), then
    `predict MODEL crops/` (read back and scored);
each with --workers 1 and --workers 2 (threads decoding the frames; predict has no such option),
scored by a model of meerkat's default backbone (--backbone: efficientnet_v2_b0, random weights,
which time as trained ones do).
They are timed inside this process, as benchmarks/video_bench.py times clips and scan: the stage
functions are called with configs from meerkat.core.config.build and the model is loaded once,
before any timing, so start-up, the TensorFlow import and loading the model (seconds that a busy
machine makes vary a lot) are not in the figures. After a warm-up round (TensorFlow sets up its
kernels for each new batch shape), rounds are interleaved (each runs every variant once): seconds
are medians (min-max), the ratio two passes / one pass is the median of its per-round ratios, and
must be >= 1. It prints detections a second, and the share of the one pass's CPU time that
decoding the frames takes (meerkat's decoder on one thread, timed alone); it checks that the one
pass gives each box the score `predict` gives the crop `clips` cut for it; it prints where the one
pass's wall time goes (the model's calls, waiting for frames, the rest); and it runs the commands
once each as a user would, start-up included.

    python benchmarks/detections_bench.py              # 32 frames, 5 rounds: about 6 minutes on 2 cores
    python benchmarks/detections_bench.py --quick      # 8 frames, 1 round
"""

import argparse
import contextlib
import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from timing import Timer

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from video_bench import SAMPLES, model  # noqa: E402  (the model video_bench trains once and caches)

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "bench" / "detections"
RUNS = WORK / "runs"  # outputs of the timed runs; removed at the end
WIDTH, HEIGHT = 4000, 3000
FRAMES_VERSION = 2  # bump when frames() changes: the cached frames are named after it


def frames(count: int, seed: int) -> Path:
    """FOLDER/md.json and the frames it names, made once: MegaDetector's format 1.4, as its v5 writes it."""
    import cv2
    import numpy as np

    folder = WORK / f"frames-v{FRAMES_VERSION}-{count}-seed{seed}"
    if (folder / "md.json").is_file():
        return folder
    crops = sorted((SAMPLES / "Training" / "Positives").glob("*.jpg")) + sorted(
        (SAMPLES / "Training" / "Negatives").glob("*.jpg")
    )
    if not crops:
        sys.exit(f"the sample crops are missing: {SAMPLES} (the shared data sits beside the repo)")
    print(f"Making {count} frames of {WIDTH}x{HEIGHT} in {folder} ...", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "cam").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        # A scene's texture (smooth noise in a green-brown tint) and a sensor's grain: JPEGs of about
        # 3 MB, as camera traps write them.
        small = rng.integers(40, 220, (HEIGHT // 60, WIDTH // 60), dtype=np.uint8)
        tint = rng.uniform(0.6, 1.0, 3) * (0.8, 1.0, 0.9)  # BGR
        texture = cv2.resize(small, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR)  # no overshoot: 40..219
        image = (texture[..., None] * tint).astype(np.uint8)
        image += rng.integers(0, 16, (HEIGHT, WIDTH, 1), dtype=np.uint8)  # at most 234: no overflow
        detections = []
        n = int(rng.integers(1, 6))
        slot = WIDTH // n
        for k in range(n):
            pixels = cv2.imread(str(crops[int(rng.integers(len(crops)))]))
            w = int(rng.integers(slot // 3, slot * 3 // 4))
            h = max(1, round(pixels.shape[0] * w / pixels.shape[1]))
            if h > HEIGHT * 3 // 4:
                h = HEIGHT * 3 // 4
                w = max(1, round(pixels.shape[1] * h / pixels.shape[0]))
            x, y = k * slot + int(rng.integers(0, slot - w)), int(rng.integers(0, HEIGHT - h))
            image[y : y + h, x : x + w] = cv2.resize(pixels, (w, h), interpolation=cv2.INTER_AREA)
            bbox = [round(x / WIDTH, 4), round(y / HEIGHT, 4), round(w / WIDTH, 4), round(h / HEIGHT, 4)]
            detections.append({"category": "1", "conf": round(float(rng.uniform(0.3, 0.97)), 3), "bbox": bbox})
        name = f"cam/IMG_{i:04d}.JPG"
        (folder / name).write_bytes(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())
        images.append({"file": name, "detections": detections})
    results = {
        "images": images,
        "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
        "info": {
            "format_version": "1.4",
            "detector": "md_v5a.0.0.pt",
            "detection_completion_time": "2024-05-01 10:00:00",
            "detector_metadata": {
                "megadetector_version": "v5a.0.0",
                "typical_detection_threshold": 0.2,
                "conservative_detection_threshold": 0.05,
            },  # fmt: skip
        },
    }
    (folder / ".md.json.tmp").write_text(json.dumps(results, indent=1), encoding="utf-8")
    (folder / ".md.json.tmp").replace(folder / "md.json")
    return folder


def bench_model(backbone: str) -> Path:
    """The model to score with: one of `backbone` with random weights, trained once on the sample
    crops (its speed does not depend on its weights), or video_bench's MobileNetV2-0.35."""
    if backbone == "mobilenet_v2":
        return model()
    out = WORK / f"model-{backbone}"
    if not (out / "model" / "saved_model.pb").is_file():
        print(f"Training a {backbone} model with random weights (once; cached) ...", flush=True)
        proc = subprocess.run([sys.executable, "-m", "meerkat", "run", SAMPLES, out, "--backbone", backbone,
                               "--weights", "none", "--epochs", "2"], capture_output=True, text=True)  # fmt: skip
        if proc.returncode:
            sys.exit(f"training the {backbone} model failed:\n{proc.stdout}{proc.stderr}")
    return out / "model"


class Shares:
    """Where the one pass's wall time goes: the model's calls, and the waits for frames to decode
    (the main thread's; the decoding threads run beside it)."""

    def __init__(self):
        self.model = self.waiting = 0.0

    @contextlib.contextmanager
    def watching(self):
        from meerkat.detections.scan import Task
        from meerkat.detections.sources import Cuts

        calls, nexts = Task._classify, Cuts.__next__

        def classify(task, model, crops, into):
            with Timer() as t:
                calls(task, model, crops, into)
            self.model += t.wall

        def next_cut(cuts):
            with Timer() as t:
                found = nexts(cuts)
            self.waiting += t.wall
            return found

        Task._classify, Cuts.__next__ = classify, next_cut
        try:
            yield self
        finally:
            Task._classify, Cuts.__next__ = calls, nexts


def load_model_once(model_dir: Path) -> float:
    """Make meerkat's Scorer load each model once, before any timing, and hand that one out again
    (as a long-running process would): the seconds the first load takes."""
    from meerkat.apply import predict, scorer

    real, loaded = scorer.Scorer, {}

    class Once(real):
        def __new__(cls, model_dir):
            key = Path(model_dir).resolve()
            if key not in loaded:
                loaded[key] = real(model_dir)
            return loaded[key]

        def __init__(self, model_dir):
            pass

    scorer.Scorer = predict.Scorer = Once
    with Timer() as t:
        Once(model_dir)
    return t.wall


def one_pass(model_dir: Path, md: Path, workers: int) -> dict:
    from meerkat.core import config
    from meerkat.core.video_config import ScanConfig
    from meerkat.detections.scan import scan

    out = RUNS / f"scan-w{workers}"
    cfg = config.build(ScanConfig, {"model": model_dir, "detections": md, "output": out, "workers": workers,
                                    "force": True})  # fmt: skip
    with Shares().watching() as shares, Timer() as t:
        scan(cfg)
    return {"total": t.wall, "cpu": t.cpu, "model": shares.model, "waiting": shares.waiting}


def two_passes(model_dir: Path, md: Path, workers: int) -> dict:
    from meerkat.apply.predict import predict
    from meerkat.core import config
    from meerkat.core.video_config import ClipsConfig
    from meerkat.detections.clips import clips

    out = RUNS / f"clips-w{workers}"
    cfg = config.build(ClipsConfig, {"detections": md, "output": out, "workers": workers, "force": True})
    with Timer() as cut:
        clips(cfg)
    with Timer() as scored, contextlib.redirect_stdout(io.StringIO()):  # its note and summary
        predict(model_dir, [out / "crops"], output=RUNS / f"predict-w{workers}.csv")
    return {"total": cut.wall + scored.wall, "cpu": cut.cpu + scored.cpu, "clips": cut.wall, "predict": scored.wall}


def cli(model_dir: Path, md: Path, workers: int) -> tuple[float, float]:
    """(one pass, two passes) as commands: wall seconds, start-up and loading the model included."""

    def meerkat(*args) -> float:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "meerkat", *map(str, args)], capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"meerkat {' '.join(map(str, args))} failed:\n{proc.stdout}{proc.stderr}")
        return time.perf_counter() - start

    out = RUNS / f"cli-w{workers}"
    one = meerkat("scan", model_dir, "--detections", md, "--output", out / "scan", "--workers", workers)
    two = meerkat("clips", "--detections", md, "--output", out / "clips", "--workers", workers)
    two += meerkat("predict", model_dir, out / "clips" / "crops", "--output", out / "predict.csv")
    return one, two


def decoding(md: Path) -> Timer:
    """Wall and CPU seconds to decode every frame once with meerkat's decoder, on one thread."""
    from meerkat.detections.sources import decode

    files = [md.parent / e["file"] for e in json.loads(md.read_text(encoding="utf-8"))["images"]]
    with Timer() as t:
        for path in files:
            decode(path)
    return t


def agreement(workers: int) -> tuple[int, int, float]:
    """(boxes, those whose one-pass score equals predict's on clips' crop to 6 decimals, the largest difference)."""
    data = json.loads((RUNS / f"scan-w{workers}" / "detections.json").read_text(encoding="utf-8"))
    one = {
        (im["file"], j): dict(det["classifications"])["0"]
        for im in data["images"]
        for j, det in enumerate(im.get("detections") or [])
        if "classifications" in det
    }
    with open(RUNS / f"predict-w{workers}.csv", newline="", encoding="utf-8") as f:
        predicted = {Path(r["path"]).name: float(r["score_positive"]) for r in csv.DictReader(f)}
    with open(RUNS / f"clips-w{workers}" / "crops.csv", newline="", encoding="utf-8") as f:
        two = {(r["file"], int(r["detection"])): predicted[Path(r["crop"]).name] for r in csv.DictReader(f)}
    if set(one) != set(two):
        sys.exit(f"the one pass classified {len(one)} boxes, the two passes {len(two)}: not the same boxes")
    diffs = [abs(one[k] - two[k]) for k in one]
    return len(one), sum(d == 0 for d in diffs), max(diffs, default=0.0)


def stats(values) -> str:
    return f"{statistics.median(values):.1f} s ({min(values):.1f}-{max(values):.1f})"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=None, help="frames of 4000x3000 (default 32; 8 with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 5; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="8 frames and 1 round")
    p.add_argument("--seed", type=int, default=0, help="seed of the frames")
    p.add_argument("--keep", action="store_true", help=f"keep the timed runs' outputs in {RUNS}")
    p.add_argument(
        "--backbone",
        choices=("mobilenet_v2", "efficientnet_v2_b0", "inception_v3"),
        default="efficientnet_v2_b0",
        help="the scoring model's backbone: meerkat's default, efficientnet_v2_b0 (the default here too), or "
        "inception_v3, with random weights; or the video bench's mobilenet_v2 (0.35, trained on the sample crops)",
    )
    args = p.parse_args()
    count = args.frames or (8 if args.quick else 32)
    repeats = args.repeats or (1 if args.quick else 5)
    load = os.getloadavg()[0]

    from meerkat.core.quiet import hush

    hush()  # TensorFlow's start-up lines
    folder = frames(count, args.seed)
    md = folder / "md.json"
    boxes = sum(len(e["detections"]) for e in json.loads(md.read_text(encoding="utf-8"))["images"])
    megabytes = sum(p.stat().st_size for p in (folder / "cam").iterdir()) / 1e6
    model_dir = bench_model(args.backbone)
    shutil.rmtree(RUNS, ignore_errors=True)
    RUNS.mkdir(parents=True)
    load_seconds = load_model_once(model_dir)
    variants = {(kind, w): (run, w) for w in (1, 2) for kind, run in (("one", one_pass), ("two", two_passes))}
    times: dict = {key: [] for key in variants}
    decode_seconds = []
    print(f"Measuring {count} frames, {boxes} boxes: a warm-up round, then {repeats} rounds ...", flush=True)
    for run, workers in variants.values():  # not counted: TensorFlow sets up its kernels for each batch shape
        run(model_dir, md, workers)
    for r in range(repeats):  # interleaved: each round runs every variant once
        for key, (run, workers) in variants.items():
            times[key].append(run(model_dir, md, workers))
        decode_seconds.append(decoding(md))
        cells = ", ".join(f"{kind} pass{'es' if kind == 'two' else ''} w{w} {t[-1]['total']:.1f} s"
                          for (kind, w), t in times.items())  # fmt: skip
        print(f"  round {r + 1}: {cells}, decoding {decode_seconds[-1].wall:.1f} s", flush=True)
    checks = {w: agreement(w) for w in (1, 2)}
    decode = statistics.median(t.wall for t in decode_seconds)
    decode_cpu = statistics.median(t.cpu for t in decode_seconds)
    print("Running the commands once each ...", flush=True)
    commands = {w: cli(model_dir, md, w) for w in (1, 2)}

    import cv2
    import tensorflow as tf

    lines = [
        "",
        f"meerkat MegaDetector benchmark: {os.cpu_count()} CPUs, OpenCV {cv2.__version__}, TensorFlow {tf.__version__}",
        f"{count} JPEG frames of {WIDTH}x{HEIGHT} ({megabytes / count:.1f} MB each), {boxes} boxes "
        f"({boxes / count:.1f} a frame) scored by a {args.backbone} model, {repeats} interleaved rounds: "
        "medians (min-max) of wall time.",
        "Timed inside this process (the stage functions, with configs from meerkat.core.config.build): interpreter "
        f"start-up, the TensorFlow import and loading the model ({load_seconds:.1f} s) are not in the figures.",
        "",
        f"  {'':<44}{'--workers 1':>26}{'--workers 2':>26}",
    ]

    def row(label, cell):
        lines.append(f"  {label:<44}" + "".join(f"{cell(w):>26}" for w in (1, 2)))

    def total(kind, w):
        return statistics.median(t["total"] for t in times[kind, w])

    def cpu_time(kind, w):
        return statistics.median(t["cpu"] for t in times[kind, w])

    pairs = {w: list(zip(times["one", w], times["two", w], strict=True)) for w in (1, 2)}
    ratios = {w: [two["total"] / one["total"] for one, two in pairs[w]] for w in (1, 2)}
    cpu = {w: [two["cpu"] / one["cpu"] for one, two in pairs[w]] for w in (1, 2)}
    row("one pass: scan --detections", lambda w: stats([t["total"] for t in times["one", w]]))
    row("two passes: clips --detections + predict", lambda w: stats([t["total"] for t in times["two", w]]))
    row("  of which clips --detections", lambda w: stats([t["clips"] for t in times["two", w]]))
    row("  of which predict", lambda w: stats([t["predict"] for t in times["two", w]]))
    row("two passes / one pass (>= 1)", lambda w: f"{statistics.median(ratios[w]):.2f}x ({min(ratios[w]):.2f}-"
                                                  f"{max(ratios[w]):.2f})")  # fmt: skip
    row("  the same by CPU time", lambda w: f"{statistics.median(cpu[w]):.2f}x")
    row("detections a second, one pass", lambda w: f"{boxes / total('one', w):.1f}")
    row("detections a second, two passes", lambda w: f"{boxes / total('two', w):.1f}")
    row("decoding the frames / one pass, CPU time", lambda w: f"{100 * decode_cpu / cpu_time('one', w):.0f} %")

    def share(key, w):
        return f"{100 * statistics.median(t[key] / t['total'] for t in times['one', w]):.0f} %"

    row("one pass's wall time: in the model's calls", lambda w: share("model", w))
    row("  waiting for frames to decode", lambda w: share("waiting", w))
    row(
        "  the rest (cutting, parts, detections.json)",
        lambda w: (
            f"{100 * statistics.median(1 - (t['model'] + t['waiting']) / t['total'] for t in times['one', w]):.0f} %"
        ),
    )
    row("scores equal to predict's (6 decimals)", lambda w: f"{checks[w][1]} of {checks[w][0]}, max {checks[w][2]:.1g}")
    row("as commands (once): one pass", lambda w: f"{commands[w][0]:.1f} s")
    row("as commands (once): two passes", lambda w: f"{commands[w][1]:.1f} s ({commands[w][1] / commands[w][0]:.2f}x)")
    after = os.getloadavg()[0]
    lines += [
        f"  decoding: every frame once with meerkat's decoder (cv2.imdecode), on one thread, alone: "
        f"{decode:.1f} s, {1000 * decode / count:.0f} ms a frame",
        "  as commands: each a process of its own, start-up, the TensorFlow import and loading the model included "
        "(predict loads it, clips does not import TensorFlow)",
        f"  load average (1 min) before and after the run: {load:.1f}, {after:.1f} on {os.cpu_count()} CPUs",
    ]
    for w in (1, 2):
        if statistics.median(ratios[w]) >= 1:
            verdict = "ok: the one pass is not slower than the two"
        elif max(ratios[w]) >= 1:
            verdict = "the one pass is slower by the median, not in every round: within this machine's noise"
        else:
            verdict = "SLOWER: the one pass took longer than the two in every round"
        lines.append(f"  --workers {w}: two passes / one pass {statistics.median(ratios[w]):.3f}x: {verdict}")
    print("\n".join(lines), flush=True)
    if not args.keep:
        shutil.rmtree(RUNS, ignore_errors=True)


if __name__ == "__main__":
    main()
