"""`meerkat scan MODEL VIDEO...` in MegaDetector's format (video/detections_file.py): OUTPUT/detections.json
and each video's OUTPUT/<stem>/detections.json, checked by MegaDetector's own validator, preview page and
CSV converter (tests/megadetector_tools.py) and against annotations.csv, across array tasks, workers
and reruns. The model is conftest's `tiny_run`: its scores mean nothing, but they are deterministic."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SHARED, SLURM, needs_shared
from megadetector_tools import preview, to_csv, validate
from scenes import detection, results, samples, scene, write_results
from typer.testing import CliRunner
from videos import bad_videos, moving_square, truncated_copy

from meerkat.apply import card
from meerkat.cli import app

# The same instant in every run, so that runs split in different ways can give the same bytes.
ENV = {"SOURCE_DATE_EPOCH": "1700000000", **dict.fromkeys(SLURM)}
CHIMP = SHARED / "data" / "videos" / "chimp.mp4"


def scan(model, *args) -> str:
    result = CliRunner().invoke(app, ["scan", str(model), *map(str, args)], env=ENV)
    assert result.exit_code == 0, result.output
    return result.output


def run_scan(*args) -> subprocess.CompletedProcess:
    """`python -m meerkat scan ARGS` as a real process (workers are spawned)."""
    env = {k: v for k, v in os.environ.items() if k not in SLURM} | {"SOURCE_DATE_EPOCH": ENV["SOURCE_DATE_EPOCH"]}
    cmd = [sys.executable, "-m", "meerkat", "scan", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def annotations(folder: Path) -> list[dict]:
    with open(folder / "annotations.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def table(path: Path) -> dict[str, dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return {Path(r["video"]).name: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def model(tiny_run):
    return tiny_run / "model"


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """vids/{a.avi, b.avi, c.mkv, sub/d.avi}: one moving square each; d at 30 fps, in a sub-folder."""
    folder = tmp_path_factory.mktemp("videos") / "vids"
    moving_square(folder / "a.avi")
    moving_square(folder / "b.avi", frames=24, speed=(8, 0))
    moving_square(folder / "c.mkv", frames=30, start=(100, 10), speed=(0, 3))
    moving_square(folder / "sub" / "d.avi", frames=20, fps=30, size=(320, 240), start=(200, 120), speed=(-5, 2))
    return folder


@pytest.fixture(scope="module")
def one(model, videos, tmp_path_factory) -> Path:
    """The four videos scanned by one process, at threshold 0."""
    out = tmp_path_factory.mktemp("one") / "out"
    scan(model, videos, "--output", out, "--threshold", "0", "--no-frames")
    return out


def test_detections_json_passes_megadetectors_validator(one, videos):
    files = [(one / "detections.json", videos)]
    files += [(one / stem / "detections.json", videos / sub) for stem, sub in (("a", ""), ("b", ""), ("d", "sub"))]
    found = validate(files)  # raise_errors and check_image_existence: any error fails here
    assert all(f["errors"] == [] and f["warnings"] == [] for f in found), found
    boxes = sum(len(annotations(one / stem)) for stem in "abcd")
    assert found[0]["detection_category_id_to_count"] == {"4": boxes}


def test_each_video_is_one_entry_with_the_boxes_and_scores_of_annotations_csv(one, model):
    data = load(one / "detections.json")
    assert data["info"]["format_version"] == "1.6" and data["info"]["classifier"].startswith("meerkat ")
    assert data["detection_categories"] == {"4": "motion"}
    assert data["classification_categories"] == {"0": "positive", "1": "negative"}
    recommended = card.recommended(model)
    threshold = data["info"]["classifier_metadata"]["typical_classification_threshold"]
    assert threshold == (round(recommended["threshold"], 6) if recommended else 0.0)
    entries = {e["file"]: e for e in data["images"]}
    assert list(entries) == ["a.avi", "b.avi", "c.mkv", "sub/d.avi"]  # relative to the folder scanned
    sizes = {"a": (240, 160, 40, 25.0), "b": (240, 160, 24, 25.0), "c": (240, 160, 30, 25.0), "d": (320, 240, 20, 30.0)}
    for file, entry in entries.items():
        stem = Path(file).stem
        width, height, frames, fps = sizes[stem]
        assert entry["frame_rate"] == fps
        assert entry["frames_processed"] == list(range(1, frames))  # 0-based; frame 1 (0) only starts the video
        rows = annotations(one / stem)
        assert len(rows) == len(entry["detections"]) > 10
        for row, det in zip(rows, entry["detections"], strict=True):
            assert det["frame_number"] == int(row["frame"]) - 1  # DeepMeerkat counts frames from 1
            assert det["frame_number"] in entry["frames_processed"]
            x, y, w, h = (int(row[k]) for k in "xywh")
            assert det["bbox"] == [round(x / width, 6), round(y / height, 6), round(w / width, 6), round(h / height, 6)]
            assert (det["category"], det["conf"]) == ("4", 1.0)
            scores = dict(det["classifications"])
            assert scores["0"] == float(row["score"]) and abs(scores["0"] + scores["1"] - 1) < 1e-5
            assert det["classifications"][0][1] >= det["classifications"][1][1]  # highest first
        alone = load(one / stem / "detections.json")
        assert entry.pop("meerkat_folder") == stem  # the folder of OUTPUT that holds the video's results
        assert alone["images"] == [{**entry, "file": Path(file).name}]
        assert {k: alone[k] for k in ("info", "classification_categories")} == {
            k: data[k] for k in ("info", "classification_categories")
        }


def test_megadetectors_preview_page_and_csv_read_it(one, videos, tmp_path):
    page = preview(one / "detections.json", videos, tmp_path / "preview", threshold=0.5)
    assert page["rows"] == 4 and Path(page["html"]).is_file()
    rows = to_csv(one / "detections.json", tmp_path / "out.csv")
    assert len(rows) == 4
    assert {"max_classification_conf_positive", "max_classification_conf_negative"} <= set(rows[0]), list(rows[0])


def test_array_tasks_and_workers_give_the_bytes_of_one_process(one, model, videos, tmp_path):
    """Task 1 of 2 first (with two workers: spawned processes), then task 0: the union, byte for byte."""
    out = tmp_path / "out"
    second = run_scan(model, videos, "--output", out, "--threshold", "0", "--no-frames", "--shard-index", "1",
                      "--num-shards", "2", "--workers", "2")  # fmt: skip
    assert second.returncode == 0, second.stderr
    half = load(out / "detections.json")
    assert [e["file"] for e in half["images"]] == ["b.avi", "sub/d.avi"]  # every 2nd video, a valid file already
    validate([(out / "detections.json", videos)])
    first = scan(model, videos, "--output", out, "--threshold", "0", "--no-frames", "--shard-index", "0",
                 "--num-shards", "2")  # fmt: skip
    assert "detections.json: 4 videos, from 2 of 2 tasks" in first
    assert (out / "detections.json").read_bytes() == (one / "detections.json").read_bytes()
    assert sorted(p.name for p in (out / "scan-parts").glob("*.json")) == ["00000-of-00002.json", "00001-of-00002.json"]


def test_a_rerun_that_reuses_the_folders_writes_the_same_file(one, model, videos, tmp_path):
    out = tmp_path / "out"
    options = (videos, "--output", out, "--threshold", "0", "--no-frames")
    scan(model, *options)
    again = scan(model, *options)
    assert all(f"Reusing the finished scan of {name}" in again for name in ("a.avi", "b.avi", "c.mkv", "d.avi"))
    assert (out / "detections.json").read_bytes() == (one / "detections.json").read_bytes()
    (out / "b" / "detections.json").unlink()  # a folder without it is not finished: b is scanned again
    third = scan(model, *options)
    assert "Reusing the finished scan of b.avi" not in third and "Reusing the finished scan of a.avi" in third
    assert (out / "detections.json").read_bytes() == (one / "detections.json").read_bytes()


def test_bad_and_truncated_videos_are_entries_that_say_why(model, videos, tmp_path):
    folder = tmp_path / "in"
    bad = bad_videos(folder)
    shutil.copy(videos / "a.avi", folder / "a.avi")
    truncated_copy(videos / "a.avi", folder / "cut.avi")  # the first 19 of its 40 frames still decode
    scan(model, folder, "--output", tmp_path / "out", "--threshold", "0", "--no-frames")
    validate([(tmp_path / "out" / "detections.json", folder)])
    entries = {e["file"]: e for e in load(tmp_path / "out" / "detections.json")["images"]}
    rows = table(tmp_path / "out" / "scan.csv")
    assert sorted(entries) == sorted(rows) == sorted(["a.avi", "cut.avi", *(p.name for p in bad.values())])
    for path in bad.values():
        entry = entries[path.name]  # as MegaDetector writes a video it could not open
        assert entry == {"file": path.name, "frame_rate": -1.0, "frames_processed": [],
                         "failure": rows[path.name]["reason"], "detections": None}  # fmt: skip
    cut = entries["cut.avi"]  # the boxes of the frames that decoded stay
    assert (
        cut["classification_failure"] == rows["cut.avi"]["reason"] == "truncated: decoded 19 of the 40 frames it states"
    )
    assert cut["frames_processed"] == list(range(1, 19))
    assert [d["frame_number"] for d in cut["detections"]] == [
        int(r["frame"]) - 1 for r in annotations(tmp_path / "out" / "cut")
    ]
    assert "failure" not in entries["a.avi"] and "classification_failure" not in entries["a.avi"]


def test_a_name_that_is_not_utf8_is_written_so_that_python_finds_the_file(model, videos, tmp_path):
    """OpenCV cannot open such a name (scan.csv lists it as failed), but its entry names the file on disk."""
    folder = tmp_path / "in"
    folder.mkdir()
    latin1 = os.fsdecode(bytes(folder) + b"/caf\xe9.avi")  # a Latin-1 name: Python holds \xe9 as "\udce9"
    shutil.copy(videos / "b.avi", latin1)
    shutil.copy(videos / "a.avi", folder / "a.avi")
    scan(model, folder, "--output", tmp_path / "out", "--no-frames")
    raw = (tmp_path / "out" / "detections.json").read_bytes()
    assert b'"file": "caf\\udce9.avi"' in raw  # JSON's escape: the file stays UTF-8
    entries = {os.fsencode(e["file"]): e for e in json.loads(raw)["images"]}
    assert sorted(entries) == [b"a.avi", b"caf\xe9.avi"]
    assert "not UTF-8" in entries[b"caf\xe9.avi"]["failure"] and entries[b"a.avi"]["detections"]
    validate([(tmp_path / "out" / "detections.json", folder)])  # check_image_existence finds both


@pytest.mark.skipif(not CHIMP.exists(), reason=f"{CHIMP} not found (the shared data sits beside the repo)")
def test_real_footage_passes_the_validator_with_its_frame_numbers(model, tmp_path):
    """chimp.mp4 (450 frames at 30 fps), every 2nd frame, passed as a file: paths relative to its folder."""
    out = tmp_path / "out"
    scan(model, CHIMP, "--output", out, "--threshold", "0", "--no-frames", "--stride", "2")
    validate([(out / "detections.json", CHIMP.parent), (out / "chimp" / "detections.json", CHIMP.parent)])
    (entry,) = load(out / "detections.json")["images"]
    assert entry["file"] == "chimp.mp4" and entry["frame_rate"] == 30.0
    assert entry["frames_processed"] == list(range(2, 450, 2))  # frames 3, 5, ... 449 as DeepMeerkat counts
    rows = annotations(out / "chimp")
    assert rows and sorted(d["frame_number"] for d in entry["detections"]) == sorted(int(r["frame"]) - 1 for r in rows)


# --- the SLURM example of scan --detections, run by hand ------------------------------------------------


def camera_trap(folder: Path, count: int) -> Path:
    """FOLDER/cam/*.jpg, `count` small scenes of one sample crop each, and FOLDER/md.json for them:
    at --batch-size 1, each scene is a batch, and every 50 batches a part (detections/parts.py)."""
    crops = samples("Positives", count // 2) + samples("Negatives", count - count // 2)
    images = []
    for i, crop in enumerate(crops):
        (bbox,) = scene(folder / "cam" / f"{i:03d}.jpg", [crop], size=(320, 240), seed=i)
        images.append({"file": f"cam/{i:03d}.jpg", "detections": [detection(bbox)]})
    return write_results(folder / "md.json", results(images))


@needs_shared()
def test_the_detections_sbatch_example_splits_the_parts_between_array_tasks(model, tmp_path):
    """examples/slurm/detections.sbatch run by hand as the two tasks of an array (60 scenes at
    --batch-size 1: two parts), with the meerkat on PATH: the bytes of one process."""
    md = camera_trap(tmp_path / "images", 60)
    out = tmp_path / "Classified"
    env = {k: v for k, v in os.environ.items() if k not in SLURM}
    env.update(
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
        SOURCE_DATE_EPOCH=ENV["SOURCE_DATE_EPOCH"],
        MEERKAT_SIF="",
        MEERKAT_SCAN_MODEL=str(model),
        MEERKAT_DETECTIONS=str(md),
        MEERKAT_SCAN_OUTPUT=str(out),
        MEERKAT_SCAN_FLAGS="--batch-size 1",
    )
    names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_COUNT")
    tasks = [
        dict(zip(names, ("1", "0", "1", "2"), strict=True)),  # task 1 first: task 0 writes the file
        {**dict(zip(names, ("0", "0", "0", "1"), strict=True)), "MEERKAT_TASKS": "2"},
    ]  # rerun alone, as submit.sh
    script = ROOT / "examples" / "slurm" / "detections.sbatch"
    for task in tasks:
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env={**env, **task}, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in (out / "detections-parts").glob("*.json")) == [
        "part-00000-of-00002.json", "part-00001-of-00002.json"
    ]  # fmt: skip
    single = tmp_path / "single"
    scan(model, "--detections", md, "--output", single, "--batch-size", "1")
    for name in ("detections.json", "scan.csv"):
        assert (out / name).read_bytes() == (single / name).read_bytes(), name
