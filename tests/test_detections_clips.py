"""`meerkat clips --detections`: crops of MegaDetector's boxes, on scenes the tests make from the
shared sample crops (tests/scenes.py) and on a video they write (tests/videos.py)."""

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_user_error, needs_shared
from scenes import background, detection, results, samples, scene, write_results
from test_detections_crops import expected_crop
from videos import moving_square

pytestmark = needs_shared()


def table(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def pixels(path: Path) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)


def pixel_box(bbox, width, height):
    """The rule of detections/crops.py, written again: floor of left/top, ceiling of right/bottom."""
    x, y, w, h = bbox
    x0, y0 = math.floor(x * width), math.floor(y * height)
    return x0, y0, math.ceil((x + w) * width) - x0, math.ceil((y + h) * height) - y0


@pytest.fixture(scope="module")
def camera(tmp_path_factory):
    """images/: scenes of real sample crops, two of them named IMG_0001.JPG in different folders, plus
    a missing image, a damaged one, one MegaDetector could not open, a low-conf box, a person and a box
    outside its image; md.json (format 1.4) lists them."""
    root = tmp_path_factory.mktemp("camera") / "images"
    pos, neg = samples("Positives", 3), samples("Negatives", 3)
    entries = []
    for i, file in enumerate(["site1/IMG_0001.JPG", "site2/IMG_0001.JPG", "site2/deep/IMG_0002.JPG"]):
        boxes = scene(root / file, [pos[i], neg[i]], seed=i)
        dets = [detection(boxes[0], 0.93), detection(boxes[1], 0.41), detection([0.5, 0.5, 0.1, 0.1], 0.05)]
        entries.append({"file": file, "detections": dets})
    entries[0]["detections"].append(detection([0.0, 0.0, 0.2, 0.5], 0.8, category="2"))  # a person
    entries[2]["detections"].append(detection([0.9, 0.1, 0.5, 0.2], 0.7))  # reaches past the right edge
    (root / "bad.jpg").write_bytes(np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    entries += [
        {"file": "missing.jpg", "detections": [detection([0.1, 0.1, 0.2, 0.2])]},
        {"file": "bad.jpg", "detections": [detection([0.1, 0.1, 0.2, 0.2])]},
        {"file": "unopened.jpg", "failure": "Failure image access", "detections": None},
        {"file": "empty.jpg", "detections": []},
        {"file": "half.jpg", "failure": "Failure image access", "detections": [detection([0.1, 0.1, 0.2, 0.2])]},
        {"file": "nul\u0000.jpg", "detections": [detection([0.1, 0.1, 0.2, 0.2])]},  # names no file
        {"file": "\ud800.jpg", "detections": [detection([0.1, 0.1, 0.2, 0.2])]},  # a lone surrogate: neither
    ]
    md = write_results(root / "md.json", results(entries))
    return root, md, entries


@pytest.fixture(scope="module")
def clipped(camera, tmp_path_factory):
    from typer.testing import CliRunner

    from meerkat.cli import app

    out = tmp_path_factory.mktemp("clips") / "out"
    result = CliRunner().invoke(app, ["clips", "--detections", str(camera[1]), "--output", str(out)])
    assert result.exit_code == 0, result.output
    return out, result


def test_one_crop_per_selected_box_cut_by_the_rule_and_listed_in_crops_csv(camera, clipped):
    root, _, entries = camera
    out, _ = clipped
    rows = table(out / "crops.csv")
    assert list(rows[0]) == ["crop", "file", "frame_number", "detection", "category", "conf", "bbox"]
    # Animal boxes at conf >= 0.2 (the file's typical threshold): two per scene; no person, no 0.05.
    assert [(r["file"], r["detection"]) for r in rows] == [
        ("site1/IMG_0001.JPG", "0"), ("site1/IMG_0001.JPG", "1"), ("site2/IMG_0001.JPG", "0"),
        ("site2/IMG_0001.JPG", "1"), ("site2/deep/IMG_0002.JPG", "0"), ("site2/deep/IMG_0002.JPG", "1"),
    ]  # fmt: skip
    assert [r["crop"] for r in rows] == [
        "site1_IMG_0001_0.jpg", "site1_IMG_0001_1.jpg", "site2_IMG_0001_0.jpg", "site2_IMG_0001_1.jpg",
        "site2_deep_IMG_0002_0.jpg", "site2_deep_IMG_0002_1.jpg",
    ]  # fmt: skip
    assert sorted(p.name for p in (out / "crops").glob("*.jpg")) == sorted(r["crop"] for r in rows)
    for r in rows:
        source = entries[[e["file"] for e in entries].index(r["file"])]["detections"][int(r["detection"])]
        assert json.loads(r["bbox"]) == source["bbox"] and float(r["conf"]) == source["conf"]
        assert (r["category"], r["frame_number"]) == ("1", "")
        image = pixels(root / r["file"])
        box = pixel_box(source["bbox"], image.shape[1], image.shape[0])
        assert (out / "crops" / r["crop"]).read_bytes() == expected_crop(image, box, "deepmeerkat"), r["crop"]


def test_a_box_holds_the_sample_pasted_there(camera):
    """The scenes' boxes are MegaDetector's [x_min, y_min, width, height]: each holds its sample."""
    root, _, entries = camera
    image = pixels(root / "site1" / "IMG_0001.JPG")
    pos, neg = (cv2.imread(str(samples(kind, 1)[0])) for kind in ("Positives", "Negatives"))

    def difference(bbox, sample):
        x, y, w, h = pixel_box(bbox, 1600, 1200)
        inside = cv2.resize(image[y : y + h, x : x + w], (64, 64)).astype(float)
        return np.abs(inside - cv2.resize(sample, (64, 64)).astype(float)).mean()

    first, second = (d["bbox"] for d in entries[0]["detections"][:2])
    assert difference(first, pos) < 10 and difference(second, neg) < 10
    assert difference(first, neg) > 20 and difference(second, pos) > 20


def test_images_that_cannot_be_used_are_listed_and_the_others_go_on(clipped):
    out, result = clipped
    skipped = table(out / "crops.skipped.csv")
    no_name = "its name holds a NUL character, which no file name can hold"
    assert [(s["file"], s["detection"], s["reason"]) for s in skipped] == [  # in the file's order
        ("site2/deep/IMG_0002.JPG", "3", skipped[0]["reason"]),
        ("missing.jpg", "", "file not found"),
        ("bad.jpg", "", "OpenCV cannot decode it: not an image, or a damaged one"),
        ("unopened.jpg", "", "MegaDetector: Failure image access"),
        ("half.jpg", "", "MegaDetector: Failure image access"),
        ("nul\u0000.jpg", "", no_name),
        ("\\ud800.jpg", "", "its name holds characters that no file name here can hold"),
    ]
    assert "lies outside the image" in skipped[0]["reason"]
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: skipped 7 images, videos or boxes (listed in {out / 'crops.skipped.csv'}):"]
    assert "  missing.jpg: file not found" in result.output
    assert "6 crops from 3 files" in result.output and "(6 failed)" in result.output
    assert "md.json: 10 files, 10 boxes of animal (1) at conf >= 0.2 in 7 of them" in result.output
    assert "MegaDetector failed on 2 files" in result.output and "Traceback" not in result.output


def test_categories_and_the_detection_threshold_choose_the_boxes(camera, cli, tmp_path):
    _, md, _ = camera
    result = cli("clips", "--detections", md, "--output", tmp_path, "--categories", "person,1",
                 "--detection-threshold", "0.05")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = table(tmp_path / "crops.csv")
    assert [(r["file"], r["detection"], r["category"]) for r in rows if r["file"] == "site1/IMG_0001.JPG"] == [
        ("site1/IMG_0001.JPG", "0", "1"),
        ("site1/IMG_0001.JPG", "1", "1"),
        ("site1/IMG_0001.JPG", "2", "1"),
        ("site1/IMG_0001.JPG", "3", "2"),
    ]
    assert len(rows) == 4 + 3 + 3  # every box of the three scenes that lies in its image


def test_image_root_says_where_the_files_are(camera, cli, tmp_path):
    root, md, entries = camera
    moved = write_results(tmp_path / "elsewhere" / "md.json", results(entries))
    result = cli("clips", "--detections", moved, "--output", tmp_path / "out", "--image-root", root)
    assert result.exit_code == 0, result.output
    assert len(table(tmp_path / "out" / "crops.csv")) == 6


def test_when_no_image_can_be_read_clips_exits_1_with_one_error(camera, cli, tmp_path):
    _, _, entries = camera
    moved = write_results(tmp_path / "md.json", results(entries))  # beside none of the images
    result = cli("clips", "--detections", moved, "--output", tmp_path / "out")
    assert_user_error(result, 1, "none of the 7 images or videos with boxes", "site1/IMG_0001.JPG: file not found",
                      "--image-root")  # fmt: skip


def test_a_rerun_replaces_meerkats_crops_but_never_a_users_file(camera, cli, tmp_path):
    _, md, _ = camera
    assert cli("clips", "--detections", md, "--output", tmp_path).exit_code == 0
    first = {p.name: p.read_bytes() for p in (tmp_path / "crops").glob("*.jpg")}
    again = cli("clips", "--detections", md, "--output", tmp_path)
    assert again.exit_code == 0, again.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "crops").glob("*.jpg")} == first  # same inputs, same bytes
    (tmp_path / "crops" / "mine.jpg").write_bytes(b"my crop")
    refused = cli("clips", "--detections", md, "--output", tmp_path)
    assert_user_error(refused, 1, str(tmp_path / "crops"))
    assert (tmp_path / "crops" / "mine.jpg").read_bytes() == b"my crop"


@pytest.mark.parametrize(
    "args, code, words",
    [
        ([], 2, ["give VIDEO... or --detections FILE"]),
        (["videos/", "--detections", "md.json"], 2, ["give VIDEO... or --detections FILE, not both"]),
        (["--detections", "md.json", "--roi", "0,0,10,10"], 2, ["--roi is for videos scanned for motion"]),
        (["--detections", "md.json", "--stride", "2"], 2, ["--stride is for videos"]),
        (["--detections", "md.json", "--max-crops-per-video", "2"], 2, ["--max-crops-per-video is for videos"]),
        (["videos/", "--categories", "animal"], 2, ["--categories needs --detections FILE"]),
        (["videos/", "--workers", "2"], 2, ["--workers in clips needs --detections FILE"]),
        (["--detections", "md.json", "--categories", ","], 2, ["--categories takes ids or names"]),
        (["--detections", "md.json", "--path-prefix", "=/data"], 2, ["--path-prefix takes PREFIX=FOLDER"]),
        (["--detections", "md.json", "--path-prefix", "C:\\cams"], 2, ["--path-prefix takes PREFIX=FOLDER"]),
        (["videos/", "--path-prefix", "C:\\cams=/data"], 2, ["--path-prefix needs --detections FILE"]),
        (["--detections", "nothing.json"], 1, ["nothing.json does not exist"]),
        (["--detections", "notjson.json"], 1, ["notjson.json is not JSON"]),
        (["--detections", "v9.json"], 1, ['format_version "9.9" is not one meerkat reads']),
        (["--detections", "md.json", "--categories", "bird"], 1, ["has no detection category 'bird'"]),
    ],
)
def test_bad_options_and_files_are_one_line(cli, tmp_path, monkeypatch, args, code, words):
    monkeypatch.chdir(tmp_path)
    write_results(tmp_path / "md.json", results([]))
    write_results(tmp_path / "v9.json", results([], version="9.9"))
    (tmp_path / "notjson.json").write_text("<html></html>", encoding="utf-8")
    result = cli("clips", *args, "--output", tmp_path / "out")
    assert_user_error(result, code, *words)


@pytest.mark.slow
def test_a_video_entry_gives_the_crops_of_its_frames(cli, tmp_path):
    """Format 1.5: frame_rate, frames_processed, 0-based frame_number on each detection."""
    video, drawn = moving_square(tmp_path / "cam" / "clip.avi")  # the square drawn from frame 3 (counted from 1)
    width, height = 240, 160
    wanted = [3, 10, 25]  # 0-based: frames 4, 11 and 26 counted from 1
    dets = []
    for n in wanted:
        x, y, w, h = drawn[n + 1]
        dets.append(detection([x / width, y / height, w / width, h / height], 0.9, frame_number=n))
    entry = {"file": "cam/clip.avi", "frame_rate": 25.0, "frames_processed": list(range(0, 40, 1)), "detections": dets}
    md = write_results(tmp_path / "md.json", results([entry], version="1.5"))
    result = cli("clips", "--detections", md, "--output", tmp_path / "out", "--padding", "box")
    assert result.exit_code == 0, result.output
    rows = table(tmp_path / "out" / "crops.csv")
    assert [(r["crop"], r["frame_number"]) for r in rows] == [
        ("cam_clip_frame000003_0.jpg", "3"), ("cam_clip_frame000010_1.jpg", "10"), ("cam_clip_frame000025_2.jpg", "25"),
    ]  # fmt: skip
    cap, frames = cv2.VideoCapture(str(video)), []
    while (read := cap.read())[0]:
        frames.append(read[1])
    for r, n in zip(rows, wanted, strict=True):
        assert (tmp_path / "out" / "crops" / r["crop"]).read_bytes() == expected_crop(frames[n], drawn[n + 1], "box")


@pytest.mark.slow  # writes a video
def test_a_scan_of_videos_and_one_of_detections_never_share_an_output_folder(cli, tmp_path):
    # Both write OUTPUT/scan.csv and OUTPUT/detections.json: the second would replace the first's.
    md = write_results(tmp_path / "md.json", results([{"file": "a.jpg", "detections": []}]))
    videos_scanned = tmp_path / "videos-out"
    (videos_scanned / "scan-parts").mkdir(parents=True)
    result = cli("scan", tmp_path / "no-model", "--detections", md, "--output", videos_scanned)
    assert_user_error(result, 1, str(videos_scanned), "scan of videos", "another --output")

    boxes_scanned = tmp_path / "boxes-out"
    (boxes_scanned / "detections-parts").mkdir(parents=True)
    video, _ = moving_square(tmp_path / "v.mp4")
    result = cli("scan", tmp_path / "no-model", video, "--output", boxes_scanned)
    assert_user_error(result, 1, str(boxes_scanned), "MegaDetector's detections", "another --output")


def test_every_detection_gets_a_crop_of_its_own(cli, tmp_path):
    """q.jpg listed twice (concatenated shards and checkpoints do this), and a frame-level entry
    beside its video's entry: no crop takes another's name, and each row names its own crop."""
    image = background((400, 300), seed=2)
    image[:100, :100] = (0, 0, 255)  # the top-left box is red, the bottom-right one green
    image[200:, 300:] = (0, 255, 0)
    cv2.imwrite(str(tmp_path / "q.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    video, drawn = moving_square(tmp_path / "v.mp4")
    x, y, w, h = drawn[11]
    frame_box = [x / 240, y / 160, w / 240, h / 160]
    entries = [
        {"file": "q.jpg", "detections": [detection([0.0, 0.0, 0.25, 1 / 3], 0.9)]},
        {"file": "q.jpg", "detections": [detection([0.75, 2 / 3, 0.25, 1 / 3], 0.8)]},
        {"file": "v.mp4", "frame_rate": 25.0, "detections": [detection(frame_box, 0.9, frame_number=10)]},
        {"file": "v.mp4/frame000010.jpg", "detections": [detection(frame_box, 0.7)]},
    ]
    md = write_results(tmp_path / "md.json", results(entries, version="1.5"))
    result = cli("clips", "--detections", md, "--output", tmp_path / "out")
    assert result.exit_code == 0, result.output
    rows = table(tmp_path / "out" / "crops.csv")
    assert len(rows) == 4 and len({r["crop"].casefold() for r in rows}) == 4
    assert sorted(p.name for p in (tmp_path / "out" / "crops").glob("*.jpg")) == sorted(r["crop"] for r in rows)
    first, second = (pixels(tmp_path / "out" / "crops" / r["crop"]) for r in rows[:2])
    assert first[150, 150, 2] > 200 > first[150, 150, 1]  # red at the centre: the top-left box
    assert second[150, 150, 1] > 200 > second[150, 150, 2]  # green: the bottom-right one
    assert [r["conf"] for r in rows[:2]] == ["0.9", "0.8"]


@pytest.fixture
def small_parts(monkeypatch):
    """Batches of two boxes and parts of one batch: the camera's boxes in five parts."""
    from meerkat.apply import suggest
    from meerkat.detections import parts

    monkeypatch.setattr(parts, "PART_BATCHES", 1)
    monkeypatch.setattr(suggest, "SCORE_BATCH", 2)


def crops_of(out: Path) -> dict[str, bytes]:
    found = {p.name: p.read_bytes() for p in (out / "crops").iterdir() if p.suffix == ".jpg"}
    return found | {name: (out / name).read_bytes() for name in ("crops.csv", "crops.skipped.csv")}


def test_a_killed_run_resumes_with_the_parts_it_finished(camera, cli, small_parts, tmp_path):
    _, md, _ = camera
    assert cli("clips", "--detections", md, "--output", tmp_path / "one").exit_code == 0
    parts = sorted(p.name for p in (tmp_path / "one" / "clips-parts").iterdir() if p.name.startswith("part-"))
    assert parts == [f"part-{k:05d}-of-00005" for k in range(5)]
    failed = cli("clips", "--detections", md, "--output", tmp_path / "two",
                 env={"MEERKAT_FAIL_AT": "detections:clips-part:2"})  # fmt: skip
    assert failed.exit_code != 0 and not (tmp_path / "two" / "crops.csv").exists()
    again = cli("clips", "--detections", md, "--output", tmp_path / "two")
    assert again.exit_code == 0, again.output
    assert "Reusing 3 finished parts" in again.output
    assert crops_of(tmp_path / "two") == crops_of(tmp_path / "one")
    other = cli("clips", "--detections", md, "--output", tmp_path / "two", "--padding", "box")
    assert other.exit_code == 0 and "Reusing" not in other.output  # other crops: every part cut again
    assert crops_of(tmp_path / "two") != crops_of(tmp_path / "one")


@pytest.mark.parametrize(
    "there, prefix",
    [
        ("C:\\Users\\me\\cams", "c:\\users\\ME\\cams\\"),  # Windows (MegaDetector's default): case does not count
        ("\\\\nas\\traps\\cams", "//nas/traps/cams"),  # a share: either separator
        ("/home/me/cams", "/home/me/cams"),
    ],
)
def test_absolute_paths_from_another_machine_map_onto_a_folder_here(camera, cli, tmp_path, there, prefix):
    root, _, entries = camera
    sep = "/" if there.startswith("/") else "\\"
    moved = [{**e, "file": there + sep + e["file"].replace("/", sep)} for e in entries[:3]]
    md = write_results(tmp_path / "md.json", results(moved))
    refused = cli("clips", "--detections", md, "--output", tmp_path / "out")
    assert_user_error(refused, 1, "none of the 3 images", "its path is absolute",
                      f"--path-prefix '{there}=/folder/here'")  # fmt: skip
    result = cli("clips", "--detections", md, "--output", tmp_path / "out", "--path-prefix", f"{prefix}={root}")
    assert result.exit_code == 0, result.output
    rows = table(tmp_path / "out" / "crops.csv")
    assert [r["file"] for r in rows] == [e["file"] for e in moved for _ in range(2)]  # as MegaDetector wrote it
    assert len(list((tmp_path / "out" / "crops").glob("*.jpg"))) == 6


@pytest.mark.parametrize("command", ["clips", "scan"])
def test_an_output_inside_an_input_or_holding_one_is_refused(camera, cli, tmp_path, command):
    """The crops and frames meerkat writes are images: inside the images' folder, MegaDetector run
    there again takes them for the camera's. Refused before any work, one line naming both."""
    root, md, entries = camera
    model = ["model/"] if command == "scan" else []  # refused before the model is read
    cases = [
        (["--image-root", root, "--output", root / "crops"], "--output", "lies inside --image-root"),
        (["--path-prefix", f"C:\\cams={root}", "--output", root / "site1" / "out"], "--path-prefix's FOLDER",
         "lies inside"),
        (["--output", md.parent], "--detections", "lies inside --output"),  # it would overwrite detections.json
        (["--output", root / "beside"], None, None),  # beside the file, its folder not named: allowed
        (["--image-root", root / "site1", "--output", root / "site1" / "deep"], "--output", "lies inside --image-root"),
        (["--image-root", root / "site1", "--output", root], "lies inside --output", "where meerkat writes"),
    ]  # fmt: skip
    for args, *words in cases:
        result = cli(command, *model, "--detections", md, *args)
        if words[0] is None:
            assert "lies inside" not in result.output
        else:
            assert_user_error(result, 2, *words)
    assert not (root / "crops").exists() and not (root / "site1" / "out").exists()
    link = tmp_path / "link"
    link.symlink_to(root)
    hidden = cli(command, *model, "--detections", md, "--image-root", root, "--output", link / "crops")
    assert_user_error(hidden, 2, "lies inside --image-root")
