"""`meerkat clips` on real videos that the tests write (tests/videos.py): which frames, which boxes,
which crops, exactly; the options; resume; the user's files; bad videos."""

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_user_error
from videos import Square, bad_videos, moving_square, moving_squares, truncated_copy

HEADER = "frame,clock,x,y,h,w,label,score"
SIDE = 299
MARGIN = (math.sqrt(2) - 1) / 2

# The default square of tests/videos.py: 40x40, drawn from frame 3 at (20, 60), 4 px right a frame,
# in a 240x160 video of 40 frames at 25 fps (FFV1, lossless). MOG2 finds it as exactly the rectangle drawn
# (worked out in tests/videos.py, and checked against the subtractor once, frame by frame): frame 1
# never reaches the subtractor, frame 2 is its first frame (the full-frame box, dropped by default),
# the square is absent from frames 1-2 and found at frames 3..40.
PINNED = {n: (20 + 4 * (n - 3), 60, 40, 40) for n in range(3, 41)}


def annotations(folder: Path) -> list[dict]:
    with open(folder / "annotations.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def boxes_of(rows) -> dict[int, list[tuple[int, int, int, int]]]:
    """{frame: [(x, y, w, h), ...]} of annotations rows (note the file's h-before-w order)."""
    out: dict[int, list] = {}
    for r in rows:
        out.setdefault(int(r["frame"]), []).append((int(r["x"]), int(r["y"]), int(r["w"]), int(r["h"])))
    return out


def only_boxes(rows) -> dict[int, tuple[int, int, int, int]]:
    found = boxes_of(rows)
    assert all(len(b) == 1 for b in found.values()), found
    return {n: b[0] for n, b in found.items()}


def parameters(folder: Path) -> dict[str, str]:
    return dict(line.split(",", 1) for line in (folder / "parameters.csv").read_text(encoding="utf-8").splitlines())


def crops(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.jpg"))


def frames_of(path: Path) -> dict[int, "cv2.typing.MatLike"]:
    """Every frame of the video, decoded as meerkat decodes it, numbered from 1."""
    cap = cv2.VideoCapture(str(path))
    out, n = {}, 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        n += 1
        out[n] = image
    cap.release()
    return out


def expected_crop(image, box, padding="deepmeerkat") -> bytes:
    """The crop as ../shared/notes/deepmeerkat-motion.md defines it (written here independently of
    meerkat/video/motion.py), encoded as meerkat encodes it."""
    x, y, w, h = box
    height, width = image.shape[:2]
    if padding == "deepmeerkat":  # a fraction of each edge's coordinate
        top, bottom = int(y - y * MARGIN), int((y + h) + (y + h) * MARGIN)
        left, right = int(x - x * MARGIN), int((x + w) + (x + w) * MARGIN)
    else:  # a fraction of the box's own size
        top, bottom = int(y - h * MARGIN), int(y + h + h * MARGIN)
        left, right = int(x - w * MARGIN), int(x + w + w * MARGIN)
    top, bottom = (min(max(v, 0), height) for v in (top, bottom))
    left, right = (min(max(v, 0), width) for v in (left, right))
    return cv2.imencode(".jpg", cv2.resize(image[top:bottom, left:right], (SIDE, SIDE)))[1].tobytes()


def warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("warning:")]


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    path, drawn = moving_square(tmp_path_factory.mktemp("videos") / "sq.avi")
    assert drawn == PINNED  # the helper draws what the tests pin
    return path


@pytest.fixture(scope="module")
def default_run(square, tmp_path_factory):
    from typer.testing import CliRunner

    from meerkat.cli import app

    out = tmp_path_factory.mktemp("clips") / "out"
    result = CliRunner().invoke(app, ["clips", str(square), "--output", str(out)])
    assert result.exit_code == 0, result.output
    return out / "sq", result


# --- which frames, which boxes, which crops -------------------------------------------------------


@pytest.mark.parametrize("fourcc, ext", [("FFV1", ".avi"), ("FFV1", ".mkv"), ("MJPG", ".avi"), ("mp4v", ".mp4")])
def test_this_opencv_writes_and_reads_the_test_codecs_and_finds_the_drawn_boxes(cli, tmp_path, fourcc, ext):
    video, drawn = moving_square(tmp_path / f"v{ext}", fourcc=fourcc)
    assert len(frames_of(video)) == 40
    result = cli("clips", video, "--output", tmp_path / "out")
    assert result.exit_code == 0, result.output
    found = only_boxes(annotations(tmp_path / "out" / "v"))
    assert parameters(tmp_path / "out" / "v")["total_frames"] == "40"
    assert drawn == PINNED and sorted(found) == sorted(PINNED)
    if fourcc == "FFV1":  # lossless: exactly the rectangles drawn
        assert found == PINNED
    else:  # lossy: JPEG/MPEG-4 ringing at the square's edges may add a row
        for n, box in found.items():
            assert all(abs(u - v) <= 1 for u, v in zip(box, PINNED[n], strict=True)), (n, box, PINNED[n])


def test_frames_boxes_and_crops_are_exactly_deepmeerkats(default_run, square):
    folder, _ = default_run
    rows = annotations(folder)
    text = (folder / "annotations.csv").read_text(encoding="utf-8").splitlines()
    assert text[0] == HEADER
    assert text[1] == "3,0:00:00,20,60,40,40,motion,1.0"  # frame 1 never used, frame 2 (first) no crop
    assert text[23] == "25,0:00:01,108,60,40,40,motion,1.0"  # 25 / 25 fps = 1 s
    assert text[-1] == "40,0:00:01,168,60,40,40,motion,1.0"
    assert only_boxes(rows) == PINNED
    assert [int(r["frame"]) for r in rows] == sorted(PINNED)  # one row a crop, in frame order
    assert {r["label"] for r in rows} == {"motion"} and {r["score"] for r in rows} == {"1.0"}
    assert crops(folder) == sorted(f"sq_{n}_0.jpg" for n in PINNED)
    frames = frames_of(square)
    for n, box in PINNED.items():
        data = (folder / f"sq_{n}_0.jpg").read_bytes()
        assert data[:3] == b"\xff\xd8\xff", "a JPEG"
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (SIDE, SIDE, 3)
        assert data == expected_crop(frames[n], box), f"crop of frame {n}"


def test_frame_1_never_reaches_the_subtractor(cli, tmp_path):
    # A square flashed in frame 1 only: a subtractor that saw frame 1 would see it vanish at frame 2.
    flash = Square((40, 40), (160, 20), (0, 0), first=1, last=1)
    video, (drawn, flashed) = moving_squares(tmp_path / "flash.avi", [Square(), flash])
    assert flashed == {1: (160, 20, 40, 40)}
    for out, extra in (("default", []), ("first", ["--keep-first-frame"])):
        result = cli("clips", video, "--output", tmp_path / out, *extra)
        assert result.exit_code == 0, result.output
        found = only_boxes(annotations(tmp_path / out / "flash"))
        assert found == ({2: (0, 0, 240, 160)} if extra else {}) | drawn, out
        assert "flash_1_0.jpg" not in crops(tmp_path / out / "flash")


def test_keep_first_frame_keeps_the_full_frame_box_of_frame_2(cli, square, tmp_path):
    result = cli("clips", square, "--output", tmp_path, "--keep-first-frame")
    assert result.exit_code == 0, result.output
    found = only_boxes(annotations(tmp_path / "sq"))
    assert found == {2: (0, 0, 240, 160), **PINNED}
    assert "sq_2_0.jpg" in crops(tmp_path / "sq") and "sq_1_0.jpg" not in crops(tmp_path / "sq")
    assert (tmp_path / "sq" / "sq_2_0.jpg").read_bytes() == expected_crop(frames_of(square)[2], (0, 0, 240, 160))


def test_parameters_csv_is_sorted_key_value_rows_with_the_absolute_source(cli, square, tmp_path, monkeypatch):
    monkeypatch.chdir(square.parent)
    result = cli("clips", square.name, "--output", tmp_path / "out")  # a relative path in, absolute out
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "out" / "sq" / "parameters.csv").read_text(encoding="utf-8").splitlines()
    keys = [line.split(",", 1)[0] for line in lines]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert "frame" not in keys and "key" not in keys  # no header
    p = parameters(tmp_path / "out" / "sq")
    assert p["source_video"] == str(square.resolve()) and Path(p["source_video"]).is_absolute()
    assert p["video_fps"] == "25" and p["total_frames"] == "40"
    assert p["motion_events"] == "38" and p["crops"] == "38" and p["status"] == "done"
    assert p["mode"] == "motion" and p["training_mode"] == "True"


# --- options ----------------------------------------------------------------------------------------


def test_stride_and_fps_choose_the_frames(cli, square, tmp_path):
    # --stride 3: frames 1, 4, 7, ...; 1 is dropped, 4 is the subtractor's first: crops from frame 7.
    # --fps 5 at 25 fps: every 5th frame, 1, 6, 11, ...: crops from frame 11.
    for opts, wanted in ((["--stride", "3"], range(7, 41, 3)), (["--fps", "5"], range(11, 41, 5))):
        out = tmp_path / opts[0].strip("-")
        result = cli("clips", square, "--output", out, *opts)
        assert result.exit_code == 0, result.output
        found = only_boxes(annotations(out / "sq"))
        assert sorted(found) == list(wanted), opts
        assert crops(out / "sq") == sorted(f"sq_{n}_0.jpg" for n in wanted)
        assert parameters(out / "sq")["total_frames"] == "40"
        step = int(opts[1]) if opts[0] == "--stride" else 5
        for n, (x, y, w, h) in found.items():  # the square now, at most joined to where it was last seen
            dx, dy, dw, dh = PINNED[n]
            assert x <= dx and x + w >= dx + dw and dx - x <= 4 * step + 1 and x + w - dx - dw <= 1, (opts, n)
            assert abs(y - dy) <= 1 and abs(y + h - dy - dh) <= 1, (opts, n)


def test_min_area_is_a_fraction_of_the_frame(cli, square, tmp_path):
    # The square is 1600 px² of a 38400 px² frame: 0.041666...
    kept = cli("clips", square, "--output", tmp_path / "kept", "--min-area", "0.0416")
    dropped = cli("clips", square, "--output", tmp_path / "dropped", "--min-area", "0.0417")
    assert kept.exit_code == 0 and dropped.exit_code == 0, kept.output + dropped.output
    assert only_boxes(annotations(tmp_path / "kept" / "sq")) == PINNED
    assert annotations(tmp_path / "dropped" / "sq") == [] and crops(tmp_path / "dropped" / "sq") == []
    assert parameters(tmp_path / "dropped" / "sq")["motion_events"] == "0"


def test_roi_finds_boxes_only_inside_and_cuts_crops_from_the_region(cli, tmp_path):
    video, drawn = moving_square(tmp_path / "sq.avi")
    roi = (60, 40, 120, 100)
    result = cli("clips", video, "--output", tmp_path / "out", "--roi", ",".join(map(str, roi)), "--keep-first-frame")
    assert result.exit_code == 0, result.output

    def inside(box):
        x0, y0 = max(box[0], roi[0]), max(box[1], roi[1])
        x1, y1 = min(box[0] + box[2], roi[0] + roi[2]), min(box[1] + box[3], roi[1] + roi[3])
        return (x0, y0, x1 - x0, y1 - y0)

    # The square enters the region at frame 4 (a 4-px sliver, which the 9x9 opening removes) and is
    # found from frame 5 on as its part inside the region; frame 2's full box is the region itself.
    wanted = {2: roi, **{n: inside(b) for n, b in drawn.items() if n >= 5}}
    assert inside(drawn[4])[2] == 4
    found = only_boxes(annotations(tmp_path / "out" / "sq"))
    assert found == wanted
    frames = frames_of(video)
    x, y, w, h = roi
    for n, (bx, by, bw, bh) in found.items():
        region = frames[n][y : y + h, x : x + w]
        data = (tmp_path / "out" / "sq" / f"sq_{n}_0.jpg").read_bytes()
        assert data == expected_crop(region, (bx - x, by - y, bw, bh)), f"crop of frame {n}"


@pytest.mark.slow
def test_exclude_ignores_an_object_moving_inside_the_excluded_rectangle(cli, tmp_path):
    # A 40x40 square along the top, and a 30x30 one moving left along the bottom, 110 px below it
    # (farther than the 75 px within which boxes merge).
    top, bottom = Square((40, 40), (20, 20), (4, 0)), Square((30, 30), (250, 170), (-4, 0))
    video, (a, b) = moving_squares(tmp_path / "two.avi", [top, bottom], size=(320, 240))
    both = cli("clips", video, "--output", tmp_path / "both")
    one = cli("clips", video, "--output", tmp_path / "one", "--exclude", "0,150,320,90")
    split = cli(
        "clips", video, "--output", tmp_path / "split", "--exclude", "0,150,100,90", "--exclude", "100,150,220,90"
    )
    assert both.exit_code == one.exit_code == split.exit_code == 0, both.output + one.output + split.output
    found = boxes_of(annotations(tmp_path / "both" / "two"))
    assert {n: sorted(v) for n, v in found.items()} == {n: sorted([a[n], b[n]]) for n in a}
    for out in ("one", "split"):
        assert only_boxes(annotations(tmp_path / out / "two")) == a, out
        assert crops(tmp_path / out / "two") == sorted(f"two_{n}_0.jpg" for n in a)


def test_motion_scale_keeps_boxes_at_full_resolution_and_crops_299(cli, square, default_run, tmp_path):
    result = cli("clips", square, "--output", tmp_path, "--motion-scale", "0.5")
    assert result.exit_code == 0, result.output
    found = only_boxes(annotations(tmp_path / "sq"))
    full = only_boxes(annotations(default_run[0]))
    assert sorted(found) == sorted(full)
    for n, box in found.items():
        assert all(abs(u - v) <= 2 for u, v in zip(box, full[n], strict=True)), (n, box, full[n])
    for name in crops(tmp_path / "sq"):
        assert cv2.imread(str(tmp_path / "sq" / name)).shape == (SIDE, SIDE, 3)
    assert parameters(tmp_path / "sq")["motion_scale"] == "0.5"


def test_max_crops_per_video_stops_the_video(cli, square, tmp_path):
    result = cli("clips", square, "--output", tmp_path, "--max-crops-per-video", "5")
    assert result.exit_code == 0, result.output
    assert crops(tmp_path / "sq") == sorted(f"sq_{n}_0.jpg" for n in range(3, 8))
    assert only_boxes(annotations(tmp_path / "sq")) == {n: PINNED[n] for n in range(3, 8)}
    assert "stopped at --max-crops-per-video 5 (frame 7)" in result.output
    p = parameters(tmp_path / "sq")
    assert p["crops"] == "5" and p["status"] == "done" and p["max_crops_per_video"] == "5"


def test_max_crops_per_video_reports_a_deterministic_frame_count(cli, square, tmp_path):
    result = cli("clips", square, "--output", tmp_path, "--max-crops-per-video", "5")
    assert result.exit_code == 0, result.output
    # Either the frames it went through (stopped at frame 7) or the frames the video holds.
    assert parameters(tmp_path / "sq")["total_frames"] in ("7", "40")


def test_padding_box_and_deepmeerkat_cut_different_crops_near_the_bottom_right(cli, tmp_path):
    # A square that stays near the bottom-right corner (its shade flickers, so it is found each frame).
    video, drawn = moving_square(tmp_path / "corner.avi", start=(190, 110), speed=(0, 0))
    runs = {}
    for padding in ("deepmeerkat", "box"):
        result = cli("clips", video, "--output", tmp_path / padding, "--padding", padding)
        assert result.exit_code == 0, result.output
        assert only_boxes(annotations(tmp_path / padding / "corner")) == drawn
        runs[padding] = tmp_path / padding / "corner"
    frames = frames_of(video)
    for n, box in drawn.items():
        name = f"corner_{n}_0.jpg"
        dm, bx = ((runs[p] / name).read_bytes() for p in ("deepmeerkat", "box"))
        assert dm == expected_crop(frames[n], box, "deepmeerkat")  # rows 87:160, columns 150:240
        assert bx == expected_crop(frames[n], box, "box")  # rows 101:158, columns 181:238
        assert dm != bx


# --- an earlier model's suggestions ---------------------------------------------------------------


@pytest.fixture(scope="module")
def scored(tiny_run, square, tmp_path_factory):
    """clips --model at 0.5 once, for its scores; and a threshold that splits them."""
    from typer.testing import CliRunner

    from meerkat.cli import app

    out = tmp_path_factory.mktemp("scored") / "out"
    model = tiny_run / "model"
    result = CliRunner().invoke(app, ["clips", str(square), "--output", str(out), "--model", str(model)])
    assert result.exit_code == 0, result.output
    scores = sorted({float(r["score"]) for r in annotations(out / "sq")})
    assert len(scores) > 2, "a model that gives every crop one score would make these checks meaningless"
    return model, out, f"{scores[len(scores) // 2]:.6f}"


def test_model_sorts_copies_of_every_crop_into_suggested(cli, scored, square, tmp_path):
    model, _, threshold = scored
    result = cli("clips", square, "--output", tmp_path, "--model", model, "--threshold", threshold)
    assert result.exit_code == 0, result.output
    rows = annotations(tmp_path / "sq")
    t = float(threshold)
    wanted = {f"sq_{r['frame']}_0.jpg": "positive" if float(r["score"]) >= t else "negative" for r in rows}
    assert {r["label"] for r in rows} == {"positive", "negative"}
    assert all(r["label"] == wanted[f"sq_{r['frame']}_0.jpg"] for r in rows)
    assert all(0.0 <= float(r["score"]) <= 1.0 and r["score"] != "1.0" for r in rows)
    suggested = tmp_path / "suggested"
    pos, neg = (crops(suggested / c) for c in ("Positives", "Negatives"))
    assert pos == sorted(c for c, label in wanted.items() if label == "positive")
    assert neg == sorted(c for c, label in wanted.items() if label == "negative")
    for cls, names in (("Positives", pos), ("Negatives", neg)):
        for name in names:
            assert (suggested / cls / name).read_bytes() == (tmp_path / "sq" / name).read_bytes()
    with open(suggested / "scores.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["video", "crop", "score_positive", "suggested"]
    assert sorted(r["crop"] for r in table) == sorted(wanted)
    assert all(r["suggested"] == wanted[r["crop"]] for r in table)
    by_frame = {f"sq_{r['frame']}_0.jpg": float(r["score"]) for r in rows}
    assert all(abs(float(r["score_positive"]) - by_frame[r["crop"]]) < 1e-6 for r in table)
    assert f"Suggested (score_positive >= {t:g}): {len(pos)} Positives, {len(neg)} Negatives in" in result.output


def test_a_rerun_with_another_threshold_splits_by_the_new_one(cli, scored, square, tmp_path):
    model, _, threshold = scored
    first = cli("clips", square, "--output", tmp_path, "--model", model, "--threshold", "0.5")
    again = cli("clips", square, "--output", tmp_path, "--model", model, "--threshold", threshold)
    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    rows = annotations(tmp_path / "sq")
    pos = crops(tmp_path / "suggested" / "Positives")
    assert pos == sorted(f"sq_{r['frame']}_0.jpg" for r in rows if float(r["score"]) >= float(threshold))
    assert all(r["label"] == ("positive" if float(r["score"]) >= float(threshold) else "negative") for r in rows)


# --- reruns, kills and the user's files -------------------------------------------------------------


def test_a_rerun_reuses_the_finished_video(cli, square, tmp_path):
    first = cli("clips", square, "--output", tmp_path)
    assert first.exit_code == 0, first.output
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "sq").iterdir()}
    again = cli("clips", square, "--output", tmp_path)
    assert again.exit_code == 0, again.output
    assert "Reusing the finished crops of sq.avi" in again.output
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "sq").iterdir()} == before
    other = cli("clips", square, "--output", tmp_path, "--min-area", "0.02")  # other settings: redone
    assert other.exit_code == 0 and "Reusing" not in other.output, other.output
    assert parameters(tmp_path / "sq")["min_area"] == "0.02"


def run_clips(*args, kill_at: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "MEERKAT_KILL_AT": kill_at}
    cmd = [sys.executable, "-m", "meerkat", "clips", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def tree(folder: Path) -> dict[str, bytes]:
    """Every visible file under `folder` with its bytes, parameters.csv without its timing."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts):
            data = p.read_bytes()
            if p.name == "parameters.csv":
                data = b"\n".join(line for line in data.splitlines() if not line.startswith(b"minutes,"))
            out[str(p.relative_to(folder))] = data
    return out


@pytest.fixture(scope="module")
def killed(square, tmp_path_factory):
    """Two videos; a kill at frame 12 of the second, then the same command again."""
    root = tmp_path_factory.mktemp("killed")
    second, _ = moving_square(root / "b.avi", frames=24, speed=(8, 0))
    videos = [square, second]
    reference = run_clips(*videos, "--output", root / "reference")
    assert reference.returncode == 0, reference.stderr
    out = root / "out"
    kill = run_clips(*videos, "--output", out, kill_at="clips:b:12")
    after_kill = sorted(p.name for p in out.iterdir())
    again = run_clips(*videos, "--output", out)
    return root, kill, after_kill, again


@pytest.mark.slow
def test_a_kill_mid_video_leaves_no_half_folder_and_the_rerun_finishes_identically(killed):
    root, kill, after_kill, again = killed
    assert kill.returncode == -9, kill.stdout + kill.stderr
    assert "sq" in after_kill and "b" not in after_kill, after_kill  # the first whole, the second absent
    assert again.returncode == 0, again.stderr
    assert "Reusing the finished crops of sq.avi" in again.stdout
    assert tree(root / "out") == tree(root / "reference")
    assert sorted(tree(root / "out")) == sorted(tree(root / "reference"))


def test_a_rerun_after_a_kill_leaves_no_temporaries(killed):
    root, _, _, again = killed
    assert again.returncode == 0, again.stderr
    assert not list((root / "out").rglob(".*.meerkat-tmp")), "no temporaries may survive the rerun"


def test_a_users_file_in_a_video_folder_is_never_deleted(cli, square, tmp_path):
    assert cli("clips", square, "--output", tmp_path).exit_code == 0
    notes = tmp_path / "sq" / "my_notes.txt"
    notes.write_text("frames 10-20: a heron\n", encoding="utf-8")
    before = crops(tmp_path / "sq")
    # Same settings: the finished folder is reused, the file stays.
    same = cli("clips", square, "--output", tmp_path)
    assert same.exit_code == 0 and "Reusing" in same.output, same.output
    # Other settings, or --force: the folder would be replaced, so the command stops and names the file.
    for extra in (["--min-area", "0.02"], ["--force"]):
        refused = cli("clips", square, "--output", tmp_path, *extra)
        assert_user_error(refused, 1, str(notes), "meerkat did not write it", "sq.avi")
        assert notes.read_text(encoding="utf-8") == "frames 10-20: a heron\n"
        assert crops(tmp_path / "sq") == before
        assert parameters(tmp_path / "sq")["min_area"] == "0.01"
        assert not list(tmp_path.rglob(".*.meerkat-tmp"))


# --- bad videos -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_folder(square, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    files = bad_videos(folder)
    files["truncated"] = truncated_copy(square, folder / "cut.avi")  # the first 19 frames still decode
    return folder, files


def test_bad_videos_get_one_warning_each_and_the_others_still_give_crops(cli, bad_folder, square, tmp_path):
    folder, files = bad_folder
    result = cli("clips", folder, square, "--output", tmp_path)
    assert result.exit_code == 0, result.output
    lines = warnings(result.output)
    reasons = {
        "empty": "empty file (0 bytes); skipped",
        "text": "OpenCV cannot open it",
        "garbage": "OpenCV cannot open it",
        "truncated": "truncated: decoded 19 of the 40 frames it states",
    }
    assert len(lines) == len(reasons), result.output
    for name, reason in reasons.items():
        mine = [line for line in lines if str(files[name]) in line]
        assert len(mine) == 1 and reason in mine[0], (name, lines)
    assert crops(tmp_path / "sq") == sorted(f"sq_{n}_0.jpg" for n in PINNED)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["cut", "sq"]
    cut = parameters(tmp_path / "cut")  # what could be decoded is cropped, and marked failed
    assert cut["status"] == "failed" and cut["total_frames"] == "19"
    assert crops(tmp_path / "cut") and all(int(r["frame"]) <= 19 for r in annotations(tmp_path / "cut"))


def test_when_every_video_is_bad_clips_exits_1_with_one_error(cli, bad_folder, tmp_path):
    folder, files = bad_folder
    result = cli("clips", files["empty"], files["text"], files["garbage"], "--output", tmp_path)
    assert_user_error(result, 1, "no video could be read", str(files["empty"]), "empty file (0 bytes)")
    assert len(warnings(result.output)) == 3


def test_a_folder_without_videos_is_a_user_error(cli, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("no video here", encoding="utf-8")
    assert_user_error(cli("clips", tmp_path / "in", "--output", tmp_path / "out"), 1, "no videos in")


@pytest.mark.slow
def test_a_real_process_prints_only_meerkats_warnings_for_bad_videos(bad_folder, square, tmp_path):
    folder, _ = bad_folder
    proc = run_clips(folder, square, "--output", tmp_path)
    assert proc.returncode == 0, proc.stderr
    noise = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert noise == [], proc.stderr


# --- regions that do not fit, decoding errors, names with commas, writes that fail -------------------


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory):
    """small.avi, 240x160, and big.avi, 320x240: the default square in each."""
    folder = tmp_path_factory.mktemp("sizes")
    small, _ = moving_square(folder / "small.avi")
    big, drawn = moving_square(folder / "big.avi", size=(320, 240))
    assert drawn == PINNED
    return small, big


@pytest.mark.parametrize(
    "option, region, reason",
    [
        ("--roi", "200,100,60,60", "--roi 200,100,60,60 does not fit its 240x160 frame; give x,y,w,h with x+w <= 240"),
        ("--exclude", "250,0,60,60", "--exclude 250,0,60,60 lies outside its 240x160 frame"),
    ],
)
def test_a_region_that_does_not_fit_one_video_fails_that_video_and_the_others_go_on(
    cli, two_sizes, tmp_path, option, region, reason
):
    small, big = two_sizes
    result = cli("clips", small, big, "--output", tmp_path, option, region)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    lines = warnings(result.output)
    assert len(lines) == 1 and str(small) in lines[0] and reason in lines[0], result.output
    assert "crops from 1 videos" in result.output and "(1 failed)" in result.output, result.output
    assert not (tmp_path / "small").exists()
    assert parameters(tmp_path / "big")["status"] == "done"


def test_a_region_that_fits_no_video_is_one_error(cli, two_sizes, tmp_path):
    small, big = two_sizes
    result = cli("clips", small, big, "--output", tmp_path, "--roi", "5000,0,10,10")
    assert_user_error(result, 1, "no video could be used", str(small), "--roi 5000,0,10,10 does not fit its 240x160")
    assert len(warnings(result.output)) == 2
    # An --exclude is given in the full frame's pixels; one outside the --roi excludes nothing.
    outside = cli("clips", big, "--output", tmp_path, "--roi", "0,0,100,100", "--exclude", "150,0,50,50")
    assert_user_error(outside, 1, "--exclude 150,0,50,50 lies outside --roi 0,0,100,100")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == []


def test_an_exclude_past_the_frame_counts_for_its_part_inside(cli, square, tmp_path):
    # Far past what OpenCV's int32 points hold: the whole frame is excluded, so no motion is found.
    result = cli("clips", square, "--output", tmp_path, "--exclude", "0,0,99999999999,99999999999")
    assert result.exit_code == 0, result.output
    assert crops(tmp_path / "sq") == [] and parameters(tmp_path / "sq")["motion_events"] == "0"
    partly = cli("clips", square, "--output", tmp_path / "partly", "--exclude", "0,150,9999,9999")
    assert partly.exit_code == 0, partly.output
    assert only_boxes(annotations(tmp_path / "partly" / "sq")) == PINNED


def failing_shrink(monkeypatch, width: int, frame: int) -> None:
    """The motion detector's shrink, which runs on the decoding thread, raising at frame `frame` of
    the videos `width` pixels wide (every frame is processed: stride 1)."""
    from meerkat.video.motion import MotionDetector

    real, calls = MotionDetector.shrink, {}

    def shrink(self, image):
        if image.shape[1] == width:
            calls[id(self)] = calls.get(id(self), 0) + 1
            if calls[id(self)] == frame:
                raise RuntimeError("the decoder gave up\non two lines")
        return real(self, image)

    monkeypatch.setattr(MotionDetector, "shrink", shrink)


def test_an_error_on_the_decoding_thread_fails_the_video_with_that_reason(cli, two_sizes, tmp_path, monkeypatch):
    small, big = two_sizes
    failing_shrink(monkeypatch, 320, 12)
    result = cli("clips", small, big, "--output", tmp_path)
    assert result.exit_code == 0, result.output
    lines = warnings(result.output)
    assert len(lines) == 1 and str(big) in lines[0], result.output
    assert "decoding failed at frame 12: RuntimeError: the decoder gave up on two lines; skipped" in lines[0]
    assert "truncated" not in result.output
    assert not (tmp_path / "big").exists() and not list(tmp_path.glob(".*.meerkat-tmp"))
    assert parameters(tmp_path / "small")["status"] == "done"
    alone = cli("clips", big, "--output", tmp_path / "alone")
    assert_user_error(alone, 1, "no video could be read", str(big), "decoding failed at frame 12")


def test_frames_raise_the_decoding_threads_error_after_the_frames_before_it(square):
    from meerkat.video.frames import BadVideo, Frames

    def prepare(image):
        prepared.append(len(prepared))
        if len(prepared) == 3:
            raise ValueError("no such frame")
        return image.shape

    prepared = []
    frames = Frames(square, stride=2, prepare=prepare)
    seen = []
    with pytest.raises(BadVideo, match=r"^decoding failed at frame 5: ValueError: no such frame$") as e:
        for number, _, shape in frames:
            seen.append((number, shape))
    assert seen == [(1, (160, 240, 3)), (3, (160, 240, 3))]
    assert isinstance(e.value.__cause__, ValueError)


def test_a_comma_and_quotes_in_a_videos_name_stay_one_field_of_the_scores(cli, tiny_run, tmp_path):
    stem = 'site 3, cam "b"'
    video, _ = moving_square(tmp_path / "in" / f"{stem}.avi")
    result = cli("clips", video, "--output", tmp_path / "out", "--model", tiny_run / "model", "--threshold", "0")
    assert result.exit_code == 0, result.output
    names = [f"{stem}_{n}_0.jpg" for n in sorted(PINNED)]
    with open(tmp_path / "out" / stem / "scores.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["crop"] for r in rows] == names and {r["suggested"] for r in rows} == {"positive"}
    with open(tmp_path / "out" / "suggested" / "scores.csv", newline="", encoding="utf-8") as f:
        suggested = list(csv.DictReader(f))
    assert [(r["video"], r["crop"]) for r in suggested] == [(str(video), n) for n in names]
    assert crops(tmp_path / "out" / "suggested" / "Positives") == sorted(names)
    assert f"Suggested (score_positive >= 0): {len(names)} Positives, 0 Negatives" in result.output


def limited(*args, max_bytes: int) -> subprocess.CompletedProcess:
    """`python -m meerkat ARGS` in a process that can write no file beyond `max_bytes`: each larger
    write fails with EFBIG, as one to a full disk fails with ENOSPC."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    cmd = [sys.executable, "-m", "meerkat", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, preexec_fn=limit, timeout=300)


def test_a_crop_that_cannot_be_written_stops_the_run_naming_the_file(square, tmp_path):
    proc = limited("clips", square, "--output", tmp_path, max_bytes=4096)  # a crop is about 15 kB
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write "), proc.stderr
    assert lines[0].endswith("sq_3_0.jpg: File too large"), proc.stderr
    assert not (tmp_path / "sq").exists() and not list(tmp_path.glob(".*.meerkat-tmp"))


def test_a_full_disk_is_an_error_naming_the_file():
    from meerkat.core import atomic
    from meerkat.core.errors import MeerkatError
    from meerkat.video import results

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    words = "cannot write /dev/full: no space left on the device; free some space or choose another output folder"
    with pytest.raises(MeerkatError, match=words):
        atomic.write_file(Path("/dev/full"), atomic.jpeg(np.zeros((64, 64, 3), np.uint8)))
    with pytest.raises(MeerkatError, match=words):
        results.write_parameters(Path("/dev/full"), {"status": "done"})


@pytest.mark.slow
def test_a_name_that_is_not_utf8_fails_that_video_instead_of_crashing(square, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    latin1 = Path(os.fsdecode(bytes(folder) + b"/caf\xe9.avi"))  # OpenCV segfaulted on this name
    latin1.write_bytes(square.read_bytes())
    (folder / "sq.avi").write_bytes(square.read_bytes())
    proc = run_clips(folder, "--output", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert warnings(proc.stderr) == [
        f"warning: {folder}/caf\\xe9.avi: its name is not UTF-8, which OpenCV cannot open; rename it; skipped"
    ]
    assert crops(tmp_path / "out" / "sq") == sorted(f"sq_{n}_0.jpg" for n in PINNED)
    alone = run_clips(latin1, "--output", tmp_path / "alone")
    assert alone.returncode == 1 and "error: no video could be read" in alone.stderr, alone.stdout + alone.stderr
