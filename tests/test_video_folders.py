"""Which folder of OUTPUT holds each video (video/folders.py), for clips and scan alike: camera traps
name every card's files IMAG0001.MP4, so two videos at different paths often share a stem (in some
case). Each keeps a folder of its own, in one run, across runs and across array tasks; a rerun
reuses it; another video's folder is never reused or replaced; OUTPUT/suggested/ never holds two
crops of one name."""

import csv
import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import assert_user_error
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner
from videos import moving_square

from meerkat.cli import app

pytestmark = pytest.mark.usefixtures("outside_slurm")


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def hashed(video: Path) -> str:
    """The folder of a video whose stem is taken: <stem>_<8 hex of the sha256 of its resolved path>."""
    return f"{video.stem}_{hashlib.sha256(os.fsencode(video.resolve())).hexdigest()[:8]}"


def parameters(folder: Path) -> dict[str, str]:
    with open(folder / "parameters.csv", newline="", encoding="utf-8") as f:
        return dict(csv.reader(f))


def table(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def tree(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()}


def folders(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    """Three cards' IMAG0001, each a different video: camA/IMAG0001.avi, camB/IMAG0001.avi and
    camC/imag0001.avi (the same stem but for case, as on a FAT card read on Linux)."""
    root = tmp_path_factory.mktemp("cards") / "cards"
    a, _ = moving_square(root / "camA" / "IMAG0001.avi", frames=10)
    b, _ = moving_square(root / "camB" / "IMAG0001.avi", frames=10, speed=(8, 0))
    c, _ = moving_square(root / "camC" / "imag0001.avi", frames=10, start=(100, 10), speed=(0, 3))
    return root, a, b, c


# --- clips ---------------------------------------------------------------------------------------


def test_a_second_cameras_video_of_the_same_name_gets_its_own_folder_and_the_first_stays(cards, tmp_path):
    _, a, b, _ = cards
    out = tmp_path / "crops"
    invoke("clips", a.parent, "--output", out)
    first = tree(out / "IMAG0001")
    assert sorted(n for n in first if n.endswith(".jpg")) == sorted(f"IMAG0001_{n}_0.jpg" for n in range(3, 11))
    second = invoke("clips", b.parent, "--output", out)
    other = hashed(b)
    assert folders(out) == sorted(["IMAG0001", other])
    assert tree(out / "IMAG0001") == first  # camA's crops, untouched
    assert parameters(out / "IMAG0001")["source_video"] == str(a.resolve())
    assert parameters(out / other)["source_video"] == str(b.resolve())
    crops = sorted(p.name for p in (out / other).glob("*.jpg"))
    assert crops == sorted(f"{other}_{n}_0.jpg" for n in range(3, 11))  # named after their folder
    assert "holds the folder of 1 other video (IMAG0001/)" in second.output
    assert "Reusing the finished crops of IMAG0001.avi" in invoke("clips", b.parent, "--output", out).output
    assert "Reusing the finished crops of IMAG0001.avi" in invoke("clips", a.parent, "--output", out).output
    assert folders(out) == sorted(["IMAG0001", other]) and tree(out / "IMAG0001") == first


def test_stems_that_differ_only_in_case_get_two_folders_in_one_run_and_a_rerun_reuses_both(cards, tmp_path):
    _, a, _, c = cards
    out = tmp_path / "crops"
    invoke("clips", a, c, "--output", out)
    names = folders(out)
    assert names == sorted(["IMAG0001", hashed(c)])  # not imag0001/: one folder on macOS, Windows and exFAT
    assert len({n.casefold() for n in names}) == 2
    assert parameters(out / hashed(c))["source_video"] == str(c.resolve())
    again = invoke("clips", c, a, "--output", out)  # in another order: the same folders
    assert again.output.count("Reusing the finished crops of") == 2
    assert folders(out) == names


def test_crops_of_same_stem_videos_are_suggested_side_by_side(cards, tiny_run, tmp_path):
    root, a, b, c = cards
    out = tmp_path / "crops"
    invoke("clips", root, "--output", out, "--model", tiny_run / "model", "--threshold", "0")
    names = [f"{folder}_{n}_0.jpg" for folder in ("IMAG0001", hashed(b), hashed(c)) for n in range(3, 11)]
    assert sorted(p.name for p in (out / "suggested" / "Positives").glob("*.jpg")) == sorted(names)
    for folder in ("IMAG0001", hashed(b), hashed(c)):
        for crop in (out / folder).glob("*.jpg"):
            assert (out / "suggested" / "Positives" / crop.name).read_bytes() == crop.read_bytes()
    rows = table(out / "suggested" / "scores.csv")
    assert sorted((r["video"], r["crop"]) for r in rows) == sorted(
        (str(video), f"{folder}_{n}_0.jpg") for video, folder in ((a, "IMAG0001"), (b, hashed(b)), (c, hashed(c)))
        for n in range(3, 11)
    )  # fmt: skip


def test_suggested_never_overwrites_a_crop_of_the_same_name(tmp_path):
    from meerkat.apply import suggest
    from meerkat.core.errors import MeerkatError
    from meerkat.samples.classes import PAIR, Classes

    crops = []
    for folder, name in (("one", "IMAG0001_3_0.jpg"), ("two", "imag0001_3_0.jpg")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_bytes(folder.encode())
        crops.append(suggest.Suggestion(f"{folder}.avi", tmp_path / folder / name, ("0.900000",), "positive"))
    with pytest.raises(MeerkatError) as e:
        suggest.suggest(tmp_path / "out", crops, Classes.of(PAIR), 0.5, "video")
    assert str(tmp_path / "one" / "IMAG0001_3_0.jpg") in str(e.value)
    assert str(tmp_path / "two" / "imag0001_3_0.jpg") in str(e.value)
    assert not (tmp_path / "out" / "suggested").exists()


# --- scan ---------------------------------------------------------------------------------------


def test_a_second_cameras_scan_leaves_the_first_ones_folder_and_lists_its_own(cards, tiny_run, tmp_path):
    _, a, b, _ = cards
    model, out = tiny_run / "model", tmp_path / "scans"
    invoke("scan", model, a.parent, "--output", out, "--threshold", "0")
    first = tree(out / "IMAG0001")
    second = invoke("scan", model, b.parent, "--output", out, "--threshold", "0")
    other = hashed(b)
    assert folders(out) == sorted(["IMAG0001", other, "scan-parts"])
    assert tree(out / "IMAG0001") == first
    assert parameters(out / other)["source_video"] == str(b.resolve())
    rows = table(out / "scan.csv")
    assert list(rows[0])[-1] == "folder" and list(rows[0])[0] == "video"
    assert [(r["video"], r["status"], r["folder"]) for r in rows] == [(str(b), "done", other)]
    images = json.loads((out / "detections.json").read_text(encoding="utf-8"))["images"]
    assert [(e["file"], e["meerkat_folder"]) for e in images] == [("IMAG0001.avi", other)]
    assert "holds the folder of 1 other video (IMAG0001/)" in second.output
    again = invoke("scan", model, b.parent, "--output", out, "--threshold", "0")
    assert "Reusing the finished scan of IMAG0001.avi" in again.output
    assert [(r["status"], r["folder"]) for r in table(out / "scan.csv")] == [("reused", other)]


def test_array_tasks_choose_the_folders_one_process_would_and_a_rerun_reuses_them(cards, tiny_run, tmp_path):
    root, a, b, c = cards
    model, out = tiny_run / "model", tmp_path / "scans"
    for index in (2, 0, 1):  # each task sees the folders of those before it, as tasks of one array do
        invoke("scan", model, root, "--output", out, "--shard-index", index, "--num-shards", 3, "--no-frames")
    expected = {str(a): "IMAG0001", str(b): hashed(b), str(c): hashed(c)}  # the first path keeps the stem
    assert {r["video"]: r["folder"] for r in table(out / "scan.csv")} == expected
    assert folders(out) == sorted([*expected.values(), "scan-parts"])
    for video, folder in expected.items():
        assert parameters(out / folder)["source_video"] == str(Path(video).resolve())
    again = invoke("scan", model, root, "--output", out, "--no-frames")
    assert again.output.count("Reusing the finished scan of") == 3
    assert {r["video"]: (r["status"], r["folder"]) for r in table(out / "scan.csv")} == {
        v: ("reused", f) for v, f in expected.items()
    }


# --- the choice itself ----------------------------------------------------------------------------


def _finish(out: Path, video: Path, name: str) -> None:
    """What the walk leaves of a finished video: OUTPUT/name/parameters.csv naming it."""
    from meerkat.video import folders as chooser
    from meerkat.video import results

    (out / name).mkdir()
    results.write_parameters(out / name / "parameters.csv", {"source_path": chooser.identity(video)})


STEMS = st.sampled_from(["IMAG0001", "imag0001", "Imag0001", "IMAG0002", "café", "cafe\u0301"])


@settings(max_examples=40, deadline=None)
@given(
    videos=st.lists(st.tuples(st.integers(0, 3), STEMS), min_size=1, max_size=6, unique=True),
    earlier=st.lists(st.tuples(st.integers(4, 5), STEMS), max_size=3, unique=True),
    done=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_every_task_chooses_the_same_folders_whatever_the_others_have_written(tmp_path_factory, videos, earlier, done):
    """Earlier runs' videos hold folders in OUTPUT; this run's tasks then finish their videos in any
    order (`done`): the choice, made by each task afresh, never changes and never shares a folder."""
    from meerkat.core.names import folded
    from meerkat.video import folders as chooser

    root = tmp_path_factory.mktemp("choice")
    out = root / "out"
    out.mkdir()

    def video(card, stem):
        path = root / f"cam{card}" / f"{stem}.avi"
        path.parent.mkdir(exist_ok=True)
        path.touch()
        return path

    for card, stem in earlier:
        previous = video(card, stem)
        _finish(out, previous, chooser.assign([previous], out).names[previous])
    before = set(os.listdir(out))
    run = [video(card, stem) for card, stem in videos]
    chosen = chooser.assign(run, out).names
    assert len({folded(n) for n in chosen.values()}) == len(run)  # no two share a folder, in any case
    assert not before & set(chosen.values())  # nor take an earlier video's
    for path, finished in zip(run, done, strict=False):
        if finished:
            _finish(out, path, chosen[path])
            assert chooser.assign(run, out).names == chosen
    assert chooser.assign(list(reversed(run)), out).names == chosen


def test_another_videos_folder_under_the_hashed_name_is_refused(tmp_path):
    from meerkat.core.errors import MeerkatError
    from meerkat.video import folders as chooser

    a, b = tmp_path / "camA" / "IMAG0001.avi", tmp_path / "camB" / "IMAG0001.avi"
    for v in (a, b):
        v.parent.mkdir()
        v.touch()
    out = tmp_path / "out"
    out.mkdir()
    _finish(out, a, "IMAG0001")
    (out / hashed(b)).mkdir()  # a folder of the user's, by chance under b's name
    with pytest.raises(MeerkatError):
        chooser.assign([b], out)
    result = CliRunner().invoke(app, ["clips", str(b), "--output", str(out)])
    assert_user_error(result, 1, str(out / hashed(b)), str(b), "never reuses or replaces the folder of another video")
