"""`meerkat scan` with the tiny model of conftest's `tiny_run` on videos that the tests write
(tests/videos.py). The model was trained on generated crops, so its scores mean nothing, but they
are deterministic: the tests choose their thresholds from the scores it gives."""

import csv
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SLURM, assert_user_error
from typer.testing import CliRunner
from videos import bad_videos, moving_square

from meerkat.cli import app

# tests/test_clips.py explains these: the default square, found from frame 3 to 40 as drawn.
PINNED = {n: (20 + 4 * (n - 3), 60, 40, 40) for n in range(3, 41)}


pytestmark = pytest.mark.usefixtures("outside_slurm")


def invoke(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def scan(model, *args, env=None):
    result = invoke("scan", model, *args, env=env)
    assert result.exit_code == 0, result.output
    return result


def run_scan(*args, kill_at: str = "") -> subprocess.CompletedProcess:
    """`python -m meerkat scan ARGS` as a real process."""
    env = {k: v for k, v in os.environ.items() if k not in SLURM}
    env["MEERKAT_KILL_AT"] = kill_at
    cmd = [sys.executable, "-m", "meerkat", "scan", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def annotations(folder: Path) -> list[dict]:
    with open(folder / "annotations.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def parameters(folder: Path) -> dict[str, str]:
    return dict(line.split(",", 1) for line in (folder / "parameters.csv").read_text(encoding="utf-8").splitlines())


def table(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def kept(folder: Path) -> set[int]:
    """The frames written to frames/, by number."""
    return {int(p.stem) for p in (folder / "frames").glob("*.jpg")}


def positive_frames(rows) -> set[int]:
    return {int(r["frame"]) for r in rows if r["label"] == "positive"}


def box(row) -> tuple[int, int, int, int]:
    return int(row["x"]), int(row["y"]), int(row["w"]), int(row["h"])


@pytest.fixture(scope="module")
def model(tiny_run):
    return tiny_run / "model"


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """vids/{a.avi, b.avi, c.mkv}: three short videos of one moving square each."""
    folder = tmp_path_factory.mktemp("videos") / "vids"
    a, drawn = moving_square(folder / "a.avi")
    assert drawn == PINNED
    b, _ = moving_square(folder / "b.avi", frames=24, speed=(8, 0))
    c, _ = moving_square(folder / "c.mkv", frames=30, start=(100, 10), speed=(0, 3))
    return folder, {"a": a, "b": b, "c": c}


@pytest.fixture(scope="module")
def scan0(model, videos, tmp_path_factory):
    """a.avi at threshold 0: every box scored, every motion frame kept."""
    out = tmp_path_factory.mktemp("scan0") / "out"
    result = invoke("scan", model, videos[1]["a"], "--output", out, "--threshold", "0")
    assert result.exit_code == 0, result.output
    rows = annotations(out / "a")
    scores = sorted({float(r["score"]) for r in rows})
    assert len(scores) > 2, "a model that gives every crop one score would make these checks meaningless"
    return out, rows


def test_threshold_0_keeps_every_motion_frame_with_its_boxes(scan0, model, videos):
    out, rows = scan0
    folder = out / "a"
    assert (folder / "annotations.csv").read_text(encoding="utf-8").splitlines()[0] == "frame,clock,x,y,h,w,label,score"
    assert {int(r["frame"]): box(r) for r in rows} == PINNED and len(rows) == len(PINNED)  # one row a box
    assert {r["label"] for r in rows} == {"positive"}
    assert all(len(r["score"].split(".")[1]) == 6 and 0 <= float(r["score"]) <= 1 for r in rows)
    assert kept(folder) == set(PINNED)
    assert sorted(p.name for p in (folder / "frames").iterdir() if p.name != ".meerkat-owned") == sorted(
        f"{n}.jpg" for n in PINNED
    )
    p = parameters(folder)
    assert p["model"] == str(model.resolve())
    assert p["model_sha256"] == hashlib.sha256((model / "saved_model.pb").read_bytes()).hexdigest()
    assert float(p["threshold"]) == 0.0
    assert (p["total_frames"], p["motion_events"], p["kept_frames"]) == ("40", "38", "38")
    assert float(p["return_rate"]) == round(38 / 40, 4)
    assert p["source_video"] == str(videos[1]["a"].resolve())
    assert p["status"] == "done" and p["training_mode"] == "False" and p["video_fps"] == "25"
    keys = [line.split(",", 1)[0] for line in (folder / "parameters.csv").read_text().splitlines()]
    assert keys == sorted(keys)


@pytest.fixture
def model_calls(monkeypatch):
    """The number of crops in each call of the real model (spied on, not replaced)."""
    from meerkat.apply.scorer import Scorer

    sizes, real = [], Scorer.probabilities

    def spy(self, images):
        sizes.append(len(images))
        return real(self, images)

    monkeypatch.setattr(Scorer, "probabilities", spy)
    return sizes


def test_boxes_go_to_the_model_in_full_batches_across_frames(model, videos, scan0, tmp_path, model_calls):
    scan(model, videos[1]["a"], "--output", tmp_path, "--threshold", "0", "--no-frames", "--batch-size", "20")
    assert model_calls == [20, 18]  # 38 frames of one box each
    rows = annotations(tmp_path / "a")
    assert [box(r) for r in rows] == [box(r) for r in scan0[1]]
    assert max(abs(float(a["score"]) - float(b["score"])) for a, b in zip(rows, scan0[1], strict=True)) < 1e-5


def test_frames_waiting_to_be_drawn_are_held_within_the_memory_budget(model, videos, scan0, tmp_path, monkeypatch,
                                                                     model_calls):  # fmt: skip
    import meerkat.video.scan

    monkeypatch.setattr(meerkat.video.scan, "PENDING_BYTES", 3 * 240 * 160 * 3)  # three of the test video's frames
    scan(model, videos[1]["a"], "--output", tmp_path, "--threshold", "0", "--batch-size", "8")
    assert model_calls == [3] * 12 + [2]
    assert kept(tmp_path / "a") == set(PINNED)
    assert [box(r) for r in annotations(tmp_path / "a")] == [box(r) for r in scan0[1]]


def test_threshold_1_keeps_no_frame(model, videos, scan0, tmp_path):
    scan(model, videos[1]["a"], "--output", tmp_path, "--threshold", "1.0")
    rows = annotations(tmp_path / "a")
    assert max(float(r["score"]) for r in rows) < 1.0
    assert {int(r["frame"]): box(r) for r in rows} == PINNED  # every box is still listed
    assert {r["label"] for r in rows} == {"negative"}
    assert (tmp_path / "a" / "frames").is_dir() and kept(tmp_path / "a") == set()
    p = parameters(tmp_path / "a")
    assert p["kept_frames"] == "0" and float(p["return_rate"]) == 0.0 and p["motion_events"] == "38"


def test_a_threshold_between_scores_splits_the_rows_and_keeps_the_positive_frames(model, videos, scan0, tmp_path):
    _, rows0 = scan0
    printed = sorted({float(r["score"]) for r in rows0})
    # A threshold no printed score equals, so that rounding cannot matter here.
    k = next(i for i in range(len(printed) // 2, len(printed) - 1) if printed[i + 1] - printed[i] >= 2e-6)
    threshold = f"{(printed[k] + printed[k + 1]) / 2:.7f}"
    scan(model, videos[1]["a"], "--output", tmp_path, "--threshold", threshold)
    rows = annotations(tmp_path / "a")
    assert [r["score"] for r in rows] == [r["score"] for r in rows0]
    assert all(r["label"] == ("positive" if float(r["score"]) >= float(threshold) else "negative") for r in rows)
    positive = positive_frames(rows)
    assert 0 < len(positive) < len(PINNED)
    assert kept(tmp_path / "a") == positive
    assert kept(tmp_path / "a") <= {int(r["frame"]) for r in rows}  # kept frames are motion frames
    p = parameters(tmp_path / "a")
    assert p["kept_frames"] == str(len(positive))
    assert float(p["return_rate"]) == round(len(positive) / 40, 4)


def test_no_frames_writes_no_frames_folder(model, videos, tmp_path):
    scan(model, videos[1]["a"], "--output", tmp_path, "--threshold", "0", "--no-frames")
    assert not (tmp_path / "a" / "frames").exists()
    p = parameters(tmp_path / "a")
    assert p["kept_frames"] == "38" and p["frames_written"] == "False"


@pytest.mark.parametrize(
    "options",
    [[], ["--roi", "30,50,200,100", "--padding", "box", "--motion-scale", "0.5", "--keep-first-frame"]],
    ids=["defaults", "roi-box-scale"],
)
def test_scan_scores_the_crops_that_clips_cuts(model, videos, tmp_path, options):
    video = videos[1]["a"]
    scan(model, video, "--output", tmp_path / "scan", "--threshold", "0", *options)
    clipped = invoke("clips", video, "--output", tmp_path / "clips", *options)
    assert clipped.exit_code == 0, clipped.output
    predicted = invoke("predict", model, tmp_path / "clips" / "a", "--output", tmp_path / "scores.csv")
    assert predicted.exit_code == 0, predicted.output
    served = {Path(r["path"]).name: float(r["score_positive"]) for r in table(tmp_path / "scores.csv")}
    rows = annotations(tmp_path / "scan" / "a")
    clip_rows = annotations(tmp_path / "clips" / "a")
    assert [box(r) for r in rows] == [box(r) for r in clip_rows]  # the same boxes
    index: dict[int, int] = {}
    assert len(served) == len(rows) > 0
    for r in rows:
        n = int(r["frame"])
        i = index[n] = index.get(n, -1) + 1
        assert abs(float(r["score"]) - served[f"a_{n}_{i}.jpg"]) <= 1e-5, (n, i)


def test_kept_frames_are_the_frames_with_a_positive_box_whatever_the_threshold(model, videos, scan0, tmp_path):
    from meerkat.apply.scorer import Scorer

    _, rows0 = scan0
    clipped = invoke("clips", videos[1]["a"], "--output", tmp_path / "clips")
    assert clipped.exit_code == 0, clipped.output
    crops = {int(r["frame"]): (tmp_path / "clips" / "a" / f"a_{r['frame']}_0.jpg").read_bytes() for r in rows0}
    exact = dict(zip(crops, (float(s) for s in Scorer(model)(list(crops.values()))), strict=True))
    assert {n: f"{s:.6f}" for n, s in exact.items()} == {int(r["frame"]): r["score"] for r in rows0}
    rounded_up = [n for n, s in exact.items() if s < float(f"{s:.6f}")]
    assert rounded_up, "no score was printed rounded up; the check needs one"
    threshold = f"{exact[rounded_up[0]]:.6f}"  # the printed score of a box whose exact score is below it
    scan(model, videos[1]["a"], "--output", tmp_path / "scan", "--threshold", threshold)
    rows = annotations(tmp_path / "scan" / "a")
    assert kept(tmp_path / "scan" / "a") == positive_frames(rows)
    assert parameters(tmp_path / "scan" / "a")["kept_frames"] == str(len(positive_frames(rows)))


def test_a_rerun_reuses_the_finished_video_and_another_threshold_rescans_it(model, videos, tmp_path):
    scan(model, videos[1]["a"], "--output", tmp_path, "--threshold", "0")
    again = scan(model, videos[1]["a"], "--output", tmp_path, "--threshold", "0")
    assert "Reusing the finished scan of a.avi" in again.output
    other = scan(model, videos[1]["a"], "--output", tmp_path, "--threshold", "1")
    assert "Reusing" not in other.output and parameters(tmp_path / "a")["kept_frames"] == "0"


# --- scan.csv and array tasks -----------------------------------------------------------------------


def test_two_array_tasks_together_write_a_scan_csv_of_every_video(model, videos, tmp_path):
    folder, _ = videos
    first = scan(model, folder, "--output", tmp_path, "--shard-index", "0", "--num-shards", "2")
    rows = table(tmp_path / "scan.csv")
    assert [Path(r["video"]).name for r in rows] == ["a.avi", "c.mkv"]  # every 2nd video, sorted by path
    assert "1 of 2 tasks reported" in first.output
    second = scan(model, folder, "--output", tmp_path, "--shard-index", "1", "--num-shards", "2")
    assert "2 of 2 tasks reported" in second.output
    rows = table(tmp_path / "scan.csv")
    assert list(rows[0]) == [
        "video", "status", "reason", "total_frames", "motion_frames", "kept_frames", "return_rate", "minutes", "folder",
    ]  # fmt: skip
    assert [(Path(r["video"]).name, r["folder"]) for r in rows] == [("a.avi", "a"), ("b.avi", "b"), ("c.mkv", "c")]
    assert [(r["status"], r["total_frames"], r["motion_frames"]) for r in rows] == [
        ("done", "40", "38"),
        ("done", "24", "22"),
        ("done", "30", "28"),
    ]
    for r in rows:
        p = parameters(tmp_path / Path(r["video"]).stem)
        assert (r["kept_frames"], float(r["return_rate"])) == (p["kept_frames"], float(p["return_rate"]))
    assert sorted(p.name for p in (tmp_path / "scan-parts").glob("*.csv")) == [
        "00000-of-00002.csv",
        "00001-of-00002.csv",
    ]


def test_slurm_array_variables_pick_the_share(model, videos, tmp_path):
    folder, _ = videos
    # An --array=1-2 job: task ids 1 and 2 are shares 0 and 1 of 2.
    array = {"SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "2", "SLURM_ARRAY_TASK_COUNT": "2"}
    scan(model, folder, "--output", tmp_path, env={**array, "SLURM_ARRAY_TASK_ID": "2"})
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["b", "scan-parts"]
    assert [Path(r["video"]).name for r in table(tmp_path / "scan.csv")] == ["b.avi"]
    scan(model, folder, "--output", tmp_path, env={**array, "SLURM_ARRAY_TASK_ID": "1"})
    assert [Path(r["video"]).name for r in table(tmp_path / "scan.csv")] == ["a.avi", "b.avi", "c.mkv"]


def test_scan_csv_lists_a_bad_video_as_failed_and_the_others_as_done(model, videos, tmp_path):
    folder = tmp_path / "in"
    shutil.copytree(videos[0], folder)
    bad = bad_videos(folder)
    result = invoke("scan", model, folder, "--output", tmp_path / "out", "--threshold", "0")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    rows = {Path(r["video"]).name: r for r in table(tmp_path / "out" / "scan.csv")}
    assert sorted(rows) == ["a.avi", "b.avi", "c.mkv", "empty.mp4", "garbage.avi", "page.mp4"]
    assert rows["empty.mp4"]["status"] == "failed" and rows["empty.mp4"]["reason"] == "empty file (0 bytes)"
    for name in ("garbage.avi", "page.mp4"):
        assert rows[name]["status"] == "failed" and "OpenCV cannot open it" in rows[name]["reason"]
    assert [rows[n]["status"] for n in ("a.avi", "b.avi", "c.mkv")] == ["done"] * 3
    assert (rows["a.avi"]["total_frames"], rows["a.avi"]["kept_frames"]) == ("40", "38")
    assert len([line for line in result.output.splitlines() if line.startswith("warning:")]) == len(bad)


def test_when_every_video_is_bad_scan_exits_1_with_one_error(model, tmp_path):
    bad = bad_videos(tmp_path / "bad")
    result = invoke("scan", model, bad["empty"], bad["text"], "--output", tmp_path / "out")
    assert_user_error(result, 1, "no video could be read", "empty file (0 bytes)")


# --- several workers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_workers(model, videos, tmp_path_factory):
    """The three videos scanned by one process, and by 2 workers (a real process: they are spawned)."""
    root = tmp_path_factory.mktemp("workers")
    folder, _ = videos
    one = invoke("scan", model, folder, "--output", root / "one", "--threshold", "0")
    assert one.exit_code == 0, one.output
    two = run_scan(model, folder, "--output", root / "two", "--threshold", "0", "--workers", "2")
    return root, two


def test_two_workers_give_the_same_results_as_one(with_workers):
    root, two = with_workers
    assert two.returncode == 0, two.stderr
    for stem in ("a", "b", "c"):
        assert (root / "two" / stem / "annotations.csv").read_bytes() == (
            root / "one" / stem / "annotations.csv"
        ).read_bytes()
        assert kept(root / "two" / stem) == kept(root / "one" / stem)
    drop_minutes = [{k: v for k, v in r.items() if k != "minutes"} for r in table(root / "one" / "scan.csv")]
    assert [{k: v for k, v in r.items() if k != "minutes"} for r in table(root / "two" / "scan.csv")] == drop_minutes


def test_workers_keep_tensorflows_start_up_lines_hidden(with_workers):
    _, two = with_workers
    assert two.returncode == 0, two.stderr
    assert "oneDNN" not in two.stderr and "absl::InitializeLog" not in two.stderr, two.stderr


# --- kill and resume, paths -------------------------------------------------------------------------


def test_a_killed_scan_resumes_video_by_video(model, videos, tmp_path):
    _, v = videos
    reference = tmp_path / "reference"
    scan(model, v["a"], v["b"], "--output", reference)
    out = tmp_path / "out"
    killed = run_scan(model, v["a"], v["b"], "--output", out, kill_at="scan:b:10")
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert parameters(out / "a")["status"] == "done"  # the first video whole
    assert (out / "a" / "annotations.csv").read_bytes() == (reference / "a" / "annotations.csv").read_bytes()
    assert not (out / "b").exists()  # the second absent: only a hidden temporary of it
    assert [p.name.split(".")[1] for p in out.glob(".*.meerkat-tmp")] == ["b"]
    again = run_scan(model, v["a"], v["b"], "--output", out)
    assert again.returncode == 0, again.stderr
    assert "Reusing the finished scan of a.avi" in again.stdout
    assert "Reusing the finished scan of b.avi" not in again.stdout
    assert not list(out.rglob(".*.meerkat-tmp")), "no temporaries may survive the rerun"
    for stem in ("a", "b"):
        assert (out / stem / "annotations.csv").read_bytes() == (reference / stem / "annotations.csv").read_bytes()
        assert kept(out / stem) == kept(reference / stem)
    assert [r["status"] for r in table(out / "scan.csv")] == ["reused", "done"]


def test_path_map_writes_source_video_as_the_host_sees_it(model, videos, tmp_path):
    inside = tmp_path / "container" / "data"
    inside.mkdir(parents=True)
    shutil.copy(videos[1]["b"], inside / "b.avi")
    scan(
        model,
        inside / "b.avi",
        "--output",
        tmp_path / "out",
        "--path-map",
        "/elsewhere=/nowhere",  # does not match: the next one is tried
        "--path-map",
        f"{tmp_path / 'container'}/=/home/me/videos",
    )
    assert parameters(tmp_path / "out" / "b")["source_video"] == "/home/me/videos/data/b.avi"
    plain = tmp_path / "plain"
    scan(model, inside / "b.avi", "--output", plain)
    assert parameters(plain / "b")["source_video"] == str((inside / "b.avi").resolve())


# --- the SLURM example --------------------------------------------------------------------------------


def test_the_scan_sbatch_example_splits_the_videos_between_array_tasks(model, videos, tmp_path):
    """examples/slurm/scan.sbatch run by hand as the two tasks of an array, with the meerkat on PATH
    (no container): task 0 takes its share from SLURM's variables, task 1 is rerun alone
    (--array=1) with MEERKAT_TASKS=2, as submit.sh would."""
    folder, _ = videos
    out = tmp_path / "Scans"
    env = {k: v for k, v in os.environ.items() if k not in SLURM}
    env.update(
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
        MEERKAT_SIF="",
        MEERKAT_SCAN_MODEL=str(model),
        MEERKAT_VIDEOS=str(folder),
        MEERKAT_SCAN_OUTPUT=str(out),
        MEERKAT_SCAN_FLAGS="--threshold 0 --no-frames",
    )

    def array(task, first, last, count):
        names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_COUNT")
        return dict(zip(names, map(str, (task, first, last, count)), strict=True))

    tasks = [array(0, 0, 1, 2), {**array(1, 1, 1, 1), "MEERKAT_TASKS": "2"}]
    script = ROOT / "examples" / "slurm" / "scan.sbatch"
    for task in tasks:
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env={**env, **task}, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = table(out / "scan.csv")
    assert [(Path(r["video"]).name, r["status"]) for r in rows] == [
        ("a.avi", "done"),
        ("b.avi", "done"),
        ("c.mkv", "done"),
    ]
    assert sorted(p.name for p in (out / "scan-parts").glob("*.csv")) == ["00000-of-00002.csv", "00001-of-00002.csv"]
    assert parameters(out / "a")["kept_frames"] == "38" and not (out / "a" / "frames").exists()


# --- regions that do not fit, decoding errors, names with commas, writes that fail ---------------------


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory):
    """in/small.avi, 240x160, and in/big.avi, 320x240: the default square in each."""
    folder = tmp_path_factory.mktemp("sizes") / "in"
    small, _ = moving_square(folder / "small.avi")
    big, _ = moving_square(folder / "big.avi", size=(320, 240))
    return folder, small, big


def test_a_region_that_does_not_fit_one_video_lists_it_as_failed_and_scans_the_others(model, two_sizes, tmp_path):
    folder, small, big = two_sizes
    result = invoke("scan", model, folder, "--output", tmp_path, "--roi", "200,100,60,60")
    assert result.exit_code == 0, result.output
    rows = {Path(r["video"]).name: r for r in table(tmp_path / "scan.csv")}
    assert rows["small.avi"]["status"] == "failed"
    assert rows["small.avi"]["reason"] == (
        "--roi 200,100,60,60 does not fit its 240x160 frame; give x,y,w,h with x+w <= 240 and y+h <= 160"
    )
    assert rows["big.avi"]["status"] == "done"
    with open(tmp_path / "big" / "parameters.csv", newline="", encoding="utf-8") as f:
        assert dict(csv.reader(f))["roi"] == "(200, 100, 60, 60)"
    assert not (tmp_path / "small").exists()
    nowhere = invoke("scan", model, folder, "--output", tmp_path / "none", "--exclude", "5000,0,10,10")
    assert_user_error(nowhere, 1, "no video could be used", "--exclude 5000,0,10,10 lies outside its")
    assert [r["status"] for r in table(tmp_path / "none" / "scan.csv")] == ["failed", "failed"]


def test_an_error_on_the_decoding_thread_lists_the_video_as_failed_with_that_reason(
    model, two_sizes, tmp_path, monkeypatch
):
    from test_clips import failing_shrink

    folder, small, big = two_sizes
    failing_shrink(monkeypatch, 320, 12)
    result = invoke("scan", model, folder, "--output", tmp_path)
    assert result.exit_code == 0, result.output
    rows = {Path(r["video"]).name: r for r in table(tmp_path / "scan.csv")}
    assert (rows["big.avi"]["status"], rows["big.avi"]["reason"]) == (
        "failed",
        "decoding failed at frame 12: RuntimeError: the decoder gave up on two lines",
    )
    assert rows["small.avi"]["status"] == "done" and not (tmp_path / "big").exists()
    alone = invoke("scan", model, big, "--output", tmp_path / "alone")
    assert_user_error(alone, 1, "no video could be read", str(big), "decoding failed at frame 12")


def test_a_comma_and_quotes_in_a_videos_name_stay_one_field_of_scan_csv(model, tmp_path):
    video, _ = moving_square(tmp_path / "in" / 'site 3, cam "b".avi')
    scan(model, video, "--output", tmp_path / "out", "--threshold", "0")
    assert [(r["video"], r["status"]) for r in table(tmp_path / "out" / "scan.csv")] == [(str(video), "done")]
    with open(tmp_path / "out" / 'site 3, cam "b"' / "parameters.csv", newline="", encoding="utf-8") as f:
        assert dict(csv.reader(f))["source_video"] == str(video.resolve())


@pytest.mark.slow
def test_a_frame_that_cannot_be_written_stops_the_scan_naming_the_file(model, videos, tmp_path):
    import resource

    def limit():  # no file beyond 8 kB: writing one fails with EFBIG, as on a full disk with ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    cmd = [sys.executable, "-m", "meerkat", "scan", model, videos[1]["a"], "--output", tmp_path, "--threshold", "0"]
    proc = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, preexec_fn=limit, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write "), proc.stderr
    assert lines[0].endswith("/frames/3.jpg: File too large"), proc.stderr  # a frame is about 20 kB
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_a_name_that_is_not_utf8_is_listed_in_scan_csv_as_it_is_on_disk(model, videos, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    latin1 = bytes(folder) + b"/caf\xe9.avi"
    Path(os.fsdecode(latin1)).write_bytes(videos[1]["b"].read_bytes())  # OpenCV segfaulted on this name
    shutil.copy(videos[1]["a"], folder / "a.avi")
    proc = run_scan(model, folder, "--output", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = (tmp_path / "out" / "scan.csv").read_bytes().splitlines()
    assert lines[1].startswith(bytes(folder / "a.avi") + b",done,")
    assert lines[2].startswith(latin1 + b",failed,") and b"its name is not UTF-8" in lines[2]


def test_deepmeerkats_pair_takes_negative_as_its_background_and_no_other(model, videos, scan0, tmp_path):
    result = invoke("scan", model, videos[1]["a"], "--output", tmp_path / "p", "--background", "positive")
    assert_user_error(result, 2, "positive/negative pair", "leave --background out")
    assert not (tmp_path / "p" / "scan.csv").exists()
    out = tmp_path / "n"
    scan(model, videos[1]["a"], "--output", out, "--threshold", "0", "--background", "negative")
    assert annotations(out / "a") == scan0[1]
