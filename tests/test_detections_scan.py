"""`meerkat scan MODEL --detections`: MegaDetector's boxes classified by conftest's tiny model, on
scenes the tests make from the shared sample crops (tests/scenes.py) and on a video they write.
Its scores mean nothing, but they are deterministic: the tests take thresholds from them."""

import csv
import json
from pathlib import Path

import megadetector_tools
import numpy as np
import pytest
from conftest import assert_user_error, in_fresh_process, needs_shared
from scenes import detection, results, samples, scene, write_results
from typer.testing import CliRunner
from videos import moving_square

from meerkat.cli import app
from meerkat.detections import parts

pytestmark = [needs_shared(), pytest.mark.usefixtures("outside_slurm")]
EPOCH = {"SOURCE_DATE_EPOCH": "1767225600"}  # 2026-01-01: every run writes the same completion time


def invoke(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env={**EPOCH, **(env or {})})


def scan(model, md, out, *args, env=None):
    result = invoke("scan", model, "--detections", md, "--output", out, *args, env=env)
    assert result.exit_code == 0, result.output
    return result


def table(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def positive(det: dict) -> float:
    return dict(det["classifications"])["0"]


@pytest.fixture(scope="module")
def model(tiny_run):
    return tiny_run / "model"


@pytest.fixture(scope="module")
def camera(tmp_path_factory):
    """images/: seven 800x600 scenes of two sample crops each (a bird and foliage), a damaged image
    and one MegaDetector could not open; md.json (format 1.3, integer category ids as old files have)."""
    root = tmp_path_factory.mktemp("camera") / "images"
    pos, neg = samples("Positives", 7), samples("Negatives", 7)
    entries = []
    for i in range(7):
        file = f"site{i % 3}/IMG_{i:04d}.JPG"
        boxes = scene(root / file, [pos[i], neg[i]], size=(800, 600), seed=10 + i)
        entries.append({"file": file, "detections": [detection(boxes[0], 0.9), detection(boxes[1], 0.6),
                                                     detection([0.1, 0.1, 0.1, 0.1], 0.01)]})  # fmt: skip
    entries[3]["detections"].append({**detection([0.4, 0.4, 0.2, 0.2], 0.8, category=2)})  # a person
    (root / "bad.jpg").write_bytes(np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    entries.insert(4, {"file": "bad.jpg", "detections": [detection([0.1, 0.1, 0.2, 0.2])]})
    scene(root / "empty.jpg", [], size=(800, 600), seed=9)
    entries.append({"file": "empty.jpg", "detections": []})
    md = write_results(root / "md.json", results(entries, version="1.3"))
    return root, md


@pytest.fixture(scope="module")
def scanned(model, camera, tmp_path_factory):
    """One process, threshold 0: its detections.json and scan.csv are the reference."""
    out = tmp_path_factory.mktemp("scan") / "out"
    result = invoke("scan", model, "--detections", camera[1], "--output", out, "--threshold", "0")
    assert result.exit_code == 0, result.output
    return out, result


def test_detections_json_is_the_input_with_meerkats_classes(camera, scanned):
    root, md = camera
    out, _ = scanned
    source, data = json.loads(md.read_text()), json.loads((out / "detections.json").read_text())
    assert data["info"]["format_version"] == "1.6" and data["info"]["classifier"].startswith("meerkat ")
    assert data["info"]["classification_completion_time"] == "2026-01-01 00:00:00"
    assert data["classification_categories"] == {"0": "positive", "1": "negative"}
    assert [im["file"] for im in data["images"]] == [im["file"] for im in source["images"]]
    classified = 0
    for before, after in zip(source["images"], data["images"], strict=True):
        for j, det in enumerate(after["detections"] or []):
            original = before["detections"][j]
            assert det["bbox"] == original["bbox"] and det["conf"] == original["conf"]
            if original["conf"] >= 0.2 and str(original["category"]) == "1" and after["file"] != "bad.jpg":
                probabilities = [p for _, p in det["classifications"]]
                assert probabilities == sorted(probabilities, reverse=True) and abs(sum(probabilities) - 1) < 2e-6
                classified += 1
            else:
                assert "classifications" not in det, (after["file"], j)
    assert classified == 14
    bad = data["images"][4]
    assert bad["file"] == "bad.jpg" and bad["classification_failure"].startswith("OpenCV cannot decode it")


def test_a_task_with_nothing_left_to_score_merges_without_loading_tensorflow(camera, scanned, model, tmp_path):
    """Every part done: the rerun (or an array's last task) only writes the two files, in seconds."""
    out = tmp_path / "out"
    scan(model, camera[1], out, "--threshold", "0")
    args = ["scan", model, "--detections", camera[1], "--output", out, "--threshold", "0"]
    imported, (output,) = in_fresh_process((args, 0), env=EPOCH)
    assert "Reusing 1 finished parts" in output and not imported
    assert (out / "detections.json").read_bytes() == (scanned[0] / "detections.json").read_bytes()


def test_a_file_without_images_gives_empty_results(model, tmp_path):
    md = write_results(tmp_path / "md.json", results([]))
    scan(model, md, tmp_path / "scan")
    assert table(tmp_path / "scan" / "scan.csv") == []
    assert json.loads((tmp_path / "scan" / "detections.json").read_text())["images"] == []
    clipped = invoke("clips", "--detections", md, "--output", tmp_path / "clips")
    assert clipped.exit_code == 0 and "0 crops from 0 files" in clipped.output, clipped.output
    assert table(tmp_path / "clips" / "crops.csv") == [] and not list((tmp_path / "clips" / "crops").glob("*.jpg"))


def test_scan_csv_has_a_row_per_file_and_keeps_those_with_a_box_over_the_threshold(camera, scanned, model, tmp_path):
    out, result = scanned
    rows = table(out / "scan.csv")
    assert list(rows[0]) == ["file", "status", "reason", "detections", "classified", "max_score_positive", "kept"]
    assert [(r["file"], r["status"], r["detections"], r["classified"]) for r in rows] == [
        ("site0/IMG_0000.JPG", "done", "3", "2"), ("site1/IMG_0001.JPG", "done", "3", "2"),
        ("site2/IMG_0002.JPG", "done", "3", "2"), ("site0/IMG_0003.JPG", "done", "4", "2"),
        ("bad.jpg", "failed", "1", "0"), ("site1/IMG_0004.JPG", "done", "3", "2"),
        ("site2/IMG_0005.JPG", "done", "3", "2"), ("site0/IMG_0006.JPG", "done", "3", "2"),
        ("empty.jpg", "done", "0", "0"),
    ]  # fmt: skip
    data = json.loads((out / "detections.json").read_text())
    best = {im["file"]: max(positive(d) for d in im["detections"] if "classifications" in d)
            for im in data["images"] if any("classifications" in d for d in im["detections"] or [])}  # fmt: skip
    assert {r["file"]: float(r["max_score_positive"]) for r in rows if r["max_score_positive"]} == best
    assert [r["kept"] for r in rows] == ["True"] * 4 + ["False"] + ["True"] * 3 + ["False"]  # threshold 0
    # A threshold between the scores keeps the files whose best box reaches it; the parts are reused.
    scores = sorted(best.values())
    threshold = f"{(scores[3] + scores[4]) / 2:.7f}"
    again = scan(model, camera[1], out, "--threshold", threshold)
    assert "Reusing 1 finished parts" in again.output
    kept = {r["file"] for r in table(out / "scan.csv") if r["kept"] == "True"}
    assert kept == {f for f, s in best.items() if s >= float(threshold)} and len(kept) == 3


def test_a_boxs_score_is_predicts_score_of_the_crop_clips_cuts(camera, scanned, model, tmp_path):
    """The same crop bytes: scan's probabilities are the model's on the very files clips writes."""
    from meerkat.apply.scorer import Scorer
    from meerkat.megadetector import merge

    root, md = camera
    out, _ = scanned
    clipped = invoke("clips", "--detections", md, "--output", tmp_path / "clips")
    assert clipped.exit_code == 0, clipped.output
    crops = table(tmp_path / "clips" / "crops.csv")
    predicted = invoke("predict", model, tmp_path / "clips" / "crops", "--output", tmp_path / "scores.csv")
    assert predicted.exit_code == 0, predicted.output
    served = {Path(r["path"]).name: float(r["score_positive"]) for r in table(tmp_path / "scores.csv")}
    data = json.loads((out / "detections.json").read_text())
    index = {im["file"]: i for i, im in enumerate(data["images"])}
    mine = {c["crop"]: positive(data["images"][index[c["file"]]]["detections"][int(c["detection"])]) for c in crops}
    assert len(mine) == len(served) == 14
    worst = max(abs(mine[name] - served[name]) for name in mine)
    assert worst <= 1e-6, worst  # both printed to 6 decimals; predict's batches differ from scan's
    # Exactly: the model on clips' files, in scan's one model call (14 boxes < --batch-size 64), gives
    # the very floats scan stored.
    (part,) = sorted((out / "detections-parts").glob("part-*.json"))
    _, stored = merge.loads_part(part.read_bytes(), part)
    files = [tmp_path / "clips" / "crops" / c["crop"] for c in crops]
    exact = Scorer(model).probabilities([f.read_bytes() for f in files])
    for c, p in zip(crops, exact, strict=True):
        at = (index[c["file"]], int(c["detection"]))
        assert stored.classifications[at] == tuple(float(v) for v in p), c["crop"]


def test_clips_model_presorts_the_crops_by_the_scores_scan_gives(camera, scanned, model, tmp_path):
    root, md = camera
    data = json.loads((scanned[0] / "detections.json").read_text())
    scores = sorted(positive(d) for im in data["images"] for d in im["detections"] or [] if "classifications" in d)
    threshold = f"{(scores[6] + scores[7]) / 2:.7f}"
    result = invoke("clips", "--detections", md, "--output", tmp_path, "--model", model, "--threshold", threshold)
    assert result.exit_code == 0, result.output
    crops = table(tmp_path / "crops.csv")
    assert list(crops[0])[-2:] == ["score_positive", "suggested"]
    index = {im["file"]: im for im in data["images"]}
    for c in crops:
        assert float(c["score_positive"]) == positive(index[c["file"]]["detections"][int(c["detection"])])
        assert c["suggested"] == ("positive" if float(c["score_positive"]) >= float(threshold) else "negative")
    suggested = table(tmp_path / "suggested" / "scores.csv")
    assert list(suggested[0]) == ["file", "crop", "score_positive", "suggested"]
    assert [(r["file"], r["crop"], r["suggested"]) for r in suggested] == [
        (c["file"], c["crop"], c["suggested"]) for c in crops
    ]
    for c in crops:
        folder = "Positives" if c["suggested"] == "positive" else "Negatives"
        copy = tmp_path / "suggested" / folder / c["crop"]
        assert copy.read_bytes() == (tmp_path / "crops" / c["crop"]).read_bytes()
    assert len(list((tmp_path / "suggested" / "Positives").glob("*.jpg"))) == 7


def test_the_output_passes_megadetectors_validator_and_tools(camera, scanned, tmp_path):
    root, _ = camera
    out, _ = scanned
    (found,) = megadetector_tools.validate([(out / "detections.json", root)])
    assert found["errors"] == [] and found["classification_category_id_to_count"]
    rows = megadetector_tools.to_csv(out / "detections.json", tmp_path / "md.csv")
    assert {"max_classification_conf_positive", "max_classification_conf_negative"} <= set(rows[0]), list(rows[0])


# --- array tasks, merge and resume --------------------------------------------------------------------


@pytest.fixture
def small_parts(monkeypatch):
    """Parts of one batch each, and batches of two boxes (one scene, or bad.jpg): eight parts."""
    monkeypatch.setattr(parts, "PART_BATCHES", 1)
    return ["--batch-size", "2", "--threshold", "0.3"]


@pytest.fixture
def reference(model, camera, small_parts, tmp_path):
    out = tmp_path / "one"
    scan(model, camera[1], out, *small_parts)
    return out


def outputs(folder: Path) -> tuple[bytes, bytes]:
    return (folder / "detections.json").read_bytes(), (folder / "scan.csv").read_bytes()


def test_three_array_tasks_write_the_bytes_of_one_process(model, camera, small_parts, reference, tmp_path):
    out = tmp_path / "three"
    assert len(list((reference / "detections-parts").glob("part-*-of-00008.json"))) == 8
    for i in range(3):
        result = scan(model, camera[1], out, *small_parts, "--shard-index", i, "--num-shards", 3)
        if i < 2:
            assert not (out / "detections.json").exists() and "the task that finishes the last" in result.output
    assert outputs(out) == outputs(reference)


def test_a_killed_task_reruns_alone_and_reuses_its_finished_parts(model, camera, small_parts, reference, tmp_path):
    out = tmp_path / "killed"
    for i in (0, 2):
        scan(model, camera[1], out, *small_parts, "--shard-index", i, "--num-shards", 3)
    # Task 1 scores parts 1, 4 and 7; it fails after writing part 4 (a bug, a kill: the same for the parts).
    failed = invoke("scan", model, "--detections", camera[1], "--output", out, *small_parts, "--shard-index", 1,
                    "--num-shards", 3, env={"MEERKAT_FAIL_AT": "detections:part:4"})  # fmt: skip
    assert failed.exit_code != 0 and not (out / "detections.json").exists()
    again = scan(model, camera[1], out, *small_parts, "--shard-index", 1, "--num-shards", 3)
    assert "Reusing 2 finished parts of this task" in again.output
    assert outputs(out) == outputs(reference)
    forced = scan(model, camera[1], out, *small_parts, "--shard-index", 1, "--num-shards", 3, "--force")
    assert "Reusing" not in forced.output and outputs(out) == outputs(reference)


def test_parts_of_other_settings_are_done_again(model, camera, small_parts, reference):
    before = outputs(reference)
    again = scan(model, camera[1], reference, *small_parts)
    assert "Reusing 8 finished parts" in again.output and outputs(reference) == before
    other = scan(model, camera[1], reference, *small_parts, "--padding", "box")  # other crops, other scores
    assert "Reusing" not in other.output
    assert outputs(reference)[0] != before[0] and json.loads(outputs(reference)[0])["images"]


def test_slurm_array_variables_pick_the_task(model, camera, small_parts, reference, tmp_path):
    out = tmp_path / "slurm"
    array = {"SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "2", "SLURM_ARRAY_TASK_COUNT": "2"}
    scan(model, camera[1], out, *small_parts, env={**array, "SLURM_ARRAY_TASK_ID": "2"})
    assert sorted(p.name for p in (out / "detections-parts").glob("part-*")) == [
        f"part-{k:05d}-of-00008.json" for k in (1, 3, 5, 7)
    ]
    scan(model, camera[1], out, *small_parts, env={**array, "SLURM_ARRAY_TASK_ID": "1"})
    assert outputs(out) == outputs(reference)


# --- videos and failures ------------------------------------------------------------------------------


def test_a_video_entry_is_classified_frame_by_frame(model, tmp_path):
    video, drawn = moving_square(tmp_path / "cam" / "clip.avi")
    frames = [3, 10, 25]  # 0-based
    dets = [detection([x / 240, y / 160, w / 240, h / 160], 0.9, frame_number=n)
            for n in frames for x, y, w, h in [drawn[n + 1]]]  # fmt: skip
    old = {"file": "cam/clip.avi", "detections": dets}  # format 1.3: no frame_rate, no frames_processed
    md = write_results(tmp_path / "md.json", results([old], version="1.3"))
    scan(model, md, tmp_path / "out")
    (entry,) = json.loads((tmp_path / "out" / "detections.json").read_text())["images"]
    assert entry["frame_rate"] == 25.0 and [d["frame_number"] for d in entry["detections"]] == frames
    assert all(len(d["classifications"]) == 2 for d in entry["detections"])
    (found,) = megadetector_tools.validate([(tmp_path / "out" / "detections.json", tmp_path)])
    assert found["errors"] == []
    (row,) = table(tmp_path / "out" / "scan.csv")
    assert (row["file"], row["status"], row["classified"]) == ("cam/clip.avi", "done", "3")


def test_every_kind_of_video_entry_passes_megadetectors_validator(model, tmp_path):
    """A season of videos in an old (1.3) file: most are empty, some hold only people, some cannot be
    read, MegaDetector failed on some, and some came as frame-level entries. Format 1.6 wants a frame
    rate on every video: meerkat reads it from each video it can open, and writes one it cannot
    open as MegaDetector writes a failed video, the detector's boxes set aside."""
    cam = tmp_path / "cam"
    _, drawn = moving_square(cam / "clip.avi")
    moving_square(cam / "empty.avi")
    moving_square(cam / "people.avi")
    (cam / "broken.avi").write_bytes(np.random.default_rng(5).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (cam / "other.avi").mkdir()  # MegaDetector's frame-level layout: the frames of other.avi, as JPEGs
    scene(cam / "other.avi" / "frame000010.jpg", [samples("Positives", 1)[0]], size=(240, 160), seed=4)
    box = [drawn[11][0] / 240, drawn[11][1] / 160, drawn[11][2] / 240, drawn[11][3] / 160]
    old = [
        {"file": "cam/clip.avi", "detections": [detection(box, 0.9, frame_number=10)]},
        {"file": "cam/empty.avi", "detections": []},
        {"file": "cam/people.avi", "detections": [detection(box, 0.9, category="2", frame_number=10)]},
        {"file": "cam/broken.avi", "detections": [detection(box, 0.9, frame_number=10)]},
        {"file": "cam/broken.avi", "detections": []},
        {"file": "cam/failed.avi", "failure": "Failure processing video", "detections": None},
        {"file": "cam/other.avi/frame000010.jpg", "detections": [detection([0.1, 0.1, 0.5, 0.5], 0.9)]},
    ]
    (cam / "failed.avi").write_bytes(b"")
    md = write_results(tmp_path / "md.json", results(old, version="1.3"))
    scan(model, md, tmp_path / "out")
    (found,) = megadetector_tools.validate([(tmp_path / "out" / "detections.json", tmp_path)])
    assert found["errors"] == [] and found["classification_category_id_to_count"] == {"0": 2, "1": 2}
    images = json.loads((tmp_path / "out" / "detections.json").read_text())["images"]
    rates = {im["file"]: im["frame_rate"] for im in images if "frame_rate" in im}
    assert rates == {f"cam/{n}.avi": 25.0 for n in ("clip", "empty", "people")} | {
        "cam/broken.avi": -1.0, "cam/failed.avi": -1.0
    }  # fmt: skip
    broken = images[3]
    assert broken["detections"] is None and broken["prev_detections"] == old[3]["detections"]
    assert broken["failure"].startswith("meerkat could not read the video")
    rows = table(tmp_path / "out" / "scan.csv")
    assert [r["status"] for r in rows] == ["done", "done", "done", "failed", "failed", "failed", "done"]


def test_when_no_image_can_be_read_scan_exits_1_with_one_error(model, camera, tmp_path):
    moved = write_results(tmp_path / "md.json", json.loads(camera[1].read_text()))  # beside none of the images
    result = invoke("scan", model, "--detections", moved, "--output", tmp_path / "out")
    assert_user_error(result, 1, "none of the 8 images or videos with boxes", "file not found", "--image-root")
    assert len(table(tmp_path / "out" / "scan.csv")) == 9  # listed all the same
