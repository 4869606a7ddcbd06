"""meerkat against DeepMeerkat 3.1.4 itself, on real footage (../shared/data/videos/chimp.mp4).

DeepMeerkat runs in its own venv, build/deepmeerkat-venv (`make deepmeerkat-env`; `make test`
builds it), through that venv's python in a subprocess: it is never a dependency of meerkat.
Without the venv or the video these tests skip, except under CI=true, where they fail.

- training mode: the same crop names (minus the frame-2 full-frame artefact unless
  --keep-first-frame), byte for byte the same JPEGs;
- detection mode: the same boxes in every frame, within 2 px;
- DeepMeerkat's review-window loaders open meerkat's clips and scan folders.
"""

import csv
import json
import os
import subprocess
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, SAMPLES, SHARED, WEIGHTS
from typer.testing import CliRunner

from meerkat.cli import app

CI = os.environ.get("CI") == "true"
DM_PYTHON = ROOT / "build" / "deepmeerkat-venv" / "bin" / "python"
CHIMP = SHARED / "data" / "videos" / "chimp.mp4"
ARTEFACT = "chimp_2_0.jpg"  # DeepMeerkat's frame-2 full-frame box, which meerkat drops by default
BOX_TOLERANCE = 2  # px

# Runs DeepMeerkat's motion job on one video; prints its output folder as JSON.
RUN_DEEPMEERKAT = """
import json, sys
from pathlib import Path
from deepmeerkat.config import DetectionMode, JobConfig, MotionSettings
from deepmeerkat.motion_pipeline import run_motion_job
video, output, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
motion = MotionSettings(training_mode=mode == "training")
folder = run_motion_job(JobConfig(input_path=video, output_dir=output, mode=DetectionMode.MOTION, motion=motion))
print(json.dumps({"folder": str(folder)}))
"""

# What DeepMeerkat 3.x's review window reads from a result folder.
REVIEW_WINDOW = """
import json, sys
from pathlib import Path
from deepmeerkat.result_paths import load_annotation_rows, resolve_source_video
folder = Path(sys.argv[1])
video = resolve_source_video(folder)
rows = load_annotation_rows(folder / "annotations.csv")
print(json.dumps({"video": str(video) if video else None, "rows": rows}))
"""


def missing(what: str):
    """Skip, or under CI=true (where `make test` provides everything) fail."""
    if CI:
        pytest.fail(f"CI=true but {what}")
    pytest.skip(what)


@pytest.fixture(scope="module")
def dm_python() -> Path:
    if not DM_PYTHON.exists():
        missing(f"DeepMeerkat's venv is missing ({DM_PYTHON}); `make deepmeerkat-env` builds it")
    return DM_PYTHON


@pytest.fixture(scope="module")
def chimp() -> Path:
    if not CHIMP.exists():
        missing(f"shared test video not found: {CHIMP} (it sits beside the repo)")
    return CHIMP


def deepmeerkat(python: Path, script: str, *args) -> dict:
    proc = subprocess.run(
        [str(python), "-c", script, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert proc.returncode == 0, f"DeepMeerkat failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def meerkat(*args) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def runs(dm_python, chimp, tmp_path_factory) -> dict[str, Path]:
    """The video, and each tool's output folder for it: DeepMeerkat in training and detection
    mode, meerkat clips with defaults and with --keep-first-frame."""
    root = tmp_path_factory.mktemp("deepmeerkat")
    folders = {"video": chimp}
    for mode in ("training", "detection"):
        done = deepmeerkat(dm_python, RUN_DEEPMEERKAT, chimp, root / f"dm-{mode}", mode)
        folders[f"dm-{mode}"] = Path(done["folder"])
    meerkat("clips", chimp, "--output", root / "clips")
    meerkat("clips", chimp, "--output", root / "clips-first", "--keep-first-frame")
    folders["clips"] = root / "clips" / chimp.stem
    folders["clips-first"] = root / "clips-first" / chimp.stem
    return folders


def crops(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.jpg"))}


def max_pixel_difference(a: bytes, b: bytes) -> int:
    decoded = [cv2.imdecode(np.frombuffer(x, np.uint8), cv2.IMREAD_UNCHANGED) for x in (a, b)]
    if decoded[0].shape != decoded[1].shape:
        return 255
    return int(np.abs(decoded[0].astype(np.int16) - decoded[1].astype(np.int16)).max())


def annotation_boxes(path: Path) -> dict[int, list[tuple[int, int, int, int]]]:
    """frame -> [(x, y, w, h)] in file order, from an annotations.csv (columns frame,clock,x,y,h,w,...)."""
    boxes = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            boxes[int(row["frame"])].append(tuple(int(row[k]) for k in ("x", "y", "w", "h")))
    return dict(boxes)


@pytest.mark.parametrize("variant", ["clips", "clips-first"])
def test_training_crops_are_deepmeerkats(runs, variant, capsys):
    """Same names (default: all but the frame-2 artefact) and byte-identical JPEGs."""
    theirs, ours = crops(runs["dm-training"]), crops(runs[variant])
    assert len(theirs) == 26 and ARTEFACT in theirs, sorted(theirs)
    expected = set(theirs) if variant == "clips-first" else set(theirs) - {ARTEFACT}
    only_theirs, only_ours = sorted(expected - set(ours)), sorted(set(ours) - expected)
    assert not only_theirs and not only_ours, f"only DeepMeerkat: {only_theirs}; only meerkat: {only_ours}"
    differences = {name: max_pixel_difference(theirs[name], ours[name]) for name in ours}
    different = sorted(name for name in ours if ours[name] != theirs[name])
    with capsys.disabled():
        print(
            f"\n[deepmeerkat] chimp.mp4, {variant}: DeepMeerkat {len(theirs)} crops, meerkat {len(ours)}; "
            f"{len(ours) - len(different)} byte-identical, max pixel difference {max(differences.values())}"
        )
    assert not different, "crops differ from DeepMeerkat's (max pixel difference): " + ", ".join(
        f"{name} ({differences[name]})" for name in different
    )


@pytest.mark.parametrize("variant", ["clips", "clips-first"])
def test_boxes_are_deepmeerkats(runs, variant, capsys):
    """Detection mode's boxes, frame by frame and in order, within 2 px of meerkat's annotations.csv."""
    theirs = annotation_boxes(runs["dm-detection"] / "annotations.csv")
    ours = annotation_boxes(runs[variant] / "annotations.csv")
    assert 2 in theirs, "DeepMeerkat's frame-2 full-frame box is gone: has DeepMeerkat changed?"
    if variant == "clips":
        theirs.pop(2)
    only_theirs, only_ours = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
    assert not only_theirs and not only_ours, f"frames only DeepMeerkat has: {only_theirs}; only meerkat: {only_ours}"
    worst, where = 0, None
    for frame, boxes in theirs.items():
        assert len(ours[frame]) == len(boxes), f"frame {frame}: DeepMeerkat {boxes}, meerkat {ours[frame]}"
        for a, b in zip(boxes, ours[frame], strict=True):
            difference = max(abs(p - q) for p, q in zip(a, b, strict=True))
            if difference > worst:
                worst, where = difference, (frame, a, b)
    with capsys.disabled():
        print(
            f"\n[deepmeerkat] chimp.mp4 boxes, {variant}: {sum(map(len, theirs.values()))} boxes in {len(theirs)} "
            f"frames; max difference {worst} px"
        )
    assert worst <= BOX_TOLERANCE, f"frame {where[0]}: DeepMeerkat {where[1]}, meerkat {where[2]} (x, y, w, h)"


def test_review_window_opens_a_clips_folder(dm_python, chimp, runs):
    folder = runs["clips"]
    seen = deepmeerkat(dm_python, REVIEW_WINDOW, folder)
    assert seen["video"] is not None and Path(seen["video"]) == chimp.resolve(), seen["video"]
    with open(folder / "annotations.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(crops(folder)) == 25
    assert seen["rows"] == rows


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A model trained on DeepMeerkat's sample crops with the small offline MobileNetV2 (~10 s)."""
    if not SAMPLES.exists() or not WEIGHTS.exists():
        missing(f"shared test data not found: {SAMPLES}, {WEIGHTS} (it sits beside the repo)")
    out = tmp_path_factory.mktemp("model") / "run"
    meerkat("run", SAMPLES, out, "--backbone", "mobilenet_v2", "--alpha", "0.35", "--weights", WEIGHTS)
    return out / "model"


@pytest.mark.slow
@pytest.mark.parametrize("threshold", [0.5, 0.0])
def test_scan_folder_in_the_review_window(dm_python, runs, model, threshold, tmp_path, capsys):
    """A scan keeps only frames with motion (all of them at threshold 0), and DeepMeerkat's review
    window opens its folder."""
    chimp = runs["video"]
    meerkat("scan", model, chimp, "--output", tmp_path, "--threshold", threshold)
    folder = tmp_path / chimp.stem
    boxes = annotation_boxes(folder / "annotations.csv")
    motion = set(boxes)
    # Scan's motion is clips' motion, which is DeepMeerkat's (test_boxes_are_deepmeerkats).
    assert boxes == annotation_boxes(runs["clips"] / "annotations.csv")
    with open(folder / "annotations.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    positive = {int(r["frame"]) for r in rows if r["label"] == "positive"}
    kept = {int(p.stem) for p in (folder / "frames").glob("*.jpg")}
    with open(folder / "parameters.csv", newline="", encoding="utf-8") as f:
        params = dict(csv.reader(f))
    with open(tmp_path / "scan.csv", newline="", encoding="utf-8") as f:
        (summary,) = list(csv.DictReader(f))
    with capsys.disabled():
        print(f"\n[deepmeerkat] chimp.mp4 scan, threshold {threshold}: {len(motion)} motion frames, {len(kept)} kept")
    assert kept <= motion, f"kept frames without motion: {sorted(kept - motion)}"
    assert kept == positive
    assert int(params["kept_frames"]) == int(summary["kept_frames"]) == len(kept)
    assert int(params["motion_events"]) == int(summary["motion_frames"]) == len(motion)
    if threshold == 0.0:
        assert kept == motion

    seen = deepmeerkat(dm_python, REVIEW_WINDOW, folder)
    assert seen["video"] is not None and Path(seen["video"]) == chimp.resolve(), seen["video"]
    assert seen["rows"] == rows and len(rows) == sum(map(len, boxes.values()))
