#!/usr/bin/env python3
"""MegaDetector's results file at a season's scale: memory and seconds of read, merge and write (`make bench`).

The task that finishes a scan --detections last reads the whole results file, merges every task's
part and writes detections.json back: on a project's file (a million images, 300 MB) that task
must not need many times the file in memory. This bench generates a file of --images images, two
animal boxes each (MegaDetector 1.4 as its v5 writes it, indent 1: about 60 MB for 200,000
images), and the parts a scan of it leaves (every box's probabilities, as scan plans its parts),
then measures each step in a fresh process:
  - read: megadetector.read.load (the entries found, selected and counted);
  - merge: read, then every part loaded and combined (merge.combine);
  - write: read and merge, then detections.json written (write.write), as the last task does.
Peak RSS is the process's high-water mark during the steps above what it held after its imports
(Linux's VmHWM, reset through /proc/self/clear_refs), and is compared with the file's size: the
target is at most 3x for read + merge + write. Seconds are wall time of each step, median of
--repeats processes.

    python benchmarks/season_bench.py                    # 200,000 images, 3 repeats: about 3 minutes
    python benchmarks/season_bench.py --images 1000000   # a project's file
"""

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "bench" / "season"
STEPS = ("read", "merge", "write")


def generate(images: int, seed: int = 0) -> Path:
    """FOLDER/md.json and FOLDER/parts/, made once."""
    from meerkat.detections import parts
    from meerkat.megadetector import merge, read
    from meerkat.megadetector.write import Scores

    folder = WORK / f"images-{images}-seed{seed}"
    if (folder / "parts" / "done").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    entries = []
    for i in range(images):
        dets = [
            {"category": "1", "conf": round(rng.uniform(0.2, 1), 3),
             "bbox": [round(rng.uniform(0, 0.5), 4), round(rng.uniform(0, 0.5), 4), round(rng.uniform(0.05, 0.5), 4),
                      round(rng.uniform(0.05, 0.5), 4)]}
            for _ in range(2)
        ]  # fmt: skip
        entries.append({"file": f"site{i % 40:02d}/cam{i % 3}/{i // 120:05d}/IMG_{i % 10000:04d}.JPG",
                        "max_detection_conf": max(d["conf"] for d in dets), "detections": dets})  # fmt: skip
    info = {"format_version": "1.4", "detector": "md_v5a.0.0.pt", "detection_completion_time": "2025-06-01 12:00:00",
            "detector_metadata": {"megadetector_version": "v5a.0.0", "typical_detection_threshold": 0.2}}  # fmt: skip
    data = {"images": entries, "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"}, "info": info}
    (folder / "md.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    del data, entries
    results = read.load(folder / "md.json")
    planned = parts.split(parts.batches(results.entries.boxes, results.entries.failed, 64))
    (folder / "parts").mkdir(exist_ok=True)
    for k, part in enumerate(planned):
        found = {}
        for batch in part:
            for entry in results.entries[batch.start : batch.stop]:
                for d in entry.detections:
                    p = rng.random()
                    found[entry.index, d.index] = (p, 1 - p)
        raw = merge.dumps_part(Scores(classifications=found), "bench")
        (folder / "parts" / f"part-{k:05d}.json").write_bytes(raw)
    (folder / "parts" / "done").touch()
    return folder


def _status(field: str) -> int:
    """A /proc/self/status figure, in bytes."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(folder: Path, step: str) -> None:
    """One step in this fresh process; prints {seconds: {step: s}, peak: bytes above the start}."""
    from meerkat.megadetector import merge, read, write

    base = _status("VmRSS")
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # VmHWM := VmRSS: the peak from here on
    seconds = {}
    start = time.perf_counter()
    results = read.load(folder / "md.json")
    seconds["read"] = time.perf_counter() - start
    if step in ("merge", "write"):
        start = time.perf_counter()
        found = (merge.loads_part(p.read_bytes(), p)[1] for p in sorted((folder / "parts").glob("part-*.json")))
        scores = merge.combine(found)
        seconds["merge"] = time.perf_counter() - start
    if step == "write":
        start = time.perf_counter()
        classifier = write.Classifier(labels=("positive", "negative"), threshold=0.5)
        with open(folder / "out.json", "wb") as f:
            write.write(results, scores, classifier, f, when="2026-01-01 00:00:00")
        seconds["write"] = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak": _status("VmHWM") - base}))


def measure(folder: Path, step: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", step, "--folder", str(folder)],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode:
        sys.exit(f"the {step} step failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=200_000, help="images in the file (default 200,000)")
    p.add_argument("--repeats", type=int, default=3, help="processes per step (default 3)")
    p.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.folder, args.child)
    print(f"Generating {args.images} images' results and a scan's parts (once; cached) ...", flush=True)
    folder = generate(args.images)
    size = (folder / "md.json").stat().st_size
    parts = len(list((folder / "parts").glob("part-*.json")))
    runs = {step: [measure(folder, step) for _ in range(args.repeats)] for step in STEPS}
    mb = 2**20
    lines = [
        "",
        f"meerkat MegaDetector season benchmark: {args.images} images, 2 boxes each, {size / mb:.0f} MB "
        f"(format 1.4, indent 1), {parts} parts; medians of {args.repeats} processes per step.",
        "Peak RSS: the high-water mark above what the process held after its imports.",
        "",
        f"  {'steps in one process':<28}{'seconds of the last step':>26}{'peak RSS':>14}{'/ file size':>14}",
    ]
    for step, label in zip(STEPS, ("read", "read + merge", "read + merge + write"), strict=True):
        seconds = statistics.median(r["seconds"][step] for r in runs[step])
        peak = statistics.median(r["peak"] for r in runs[step])
        lines.append(f"  {label:<28}{seconds:>24.1f} s{peak / mb:>11.0f} MB{peak / size:>13.2f}x")
    whole = statistics.median(r["peak"] for r in runs["write"])
    verdict = "ok" if whole <= 3 * size else "OVER the 3x target"
    lines.append(f"  the merging task's peak: {whole / size:.2f}x the file's size: {verdict} (target <= 3x)")
    print("\n".join(lines), flush=True)
    (folder / "out.json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
