"""Grouped splits: crops of one video, image or camera folder never fall on both sides of the
hold-out or the validation split, and --group-by none is the split of before, byte for byte."""

import hashlib
import json
import math
import zlib

import numpy as np
import pytest
from conftest import TINY, assert_user_error, write_image
from hypothesis import given, settings
from hypothesis import strategies as st

from meerkat.core.settings import HOLDOUT_EVERY
from meerkat.samples import groups
from meerkat.train.data import Embeddings, split, validation_size


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("chimp_62_0.jpg", "chimp"),  # clips: <video>_<frame>_<i>
        ("chimp_a1b2c3d4_7_1.jpg", "chimp_a1b2c3d4"),  # clips: a second video of that stem
        ("171021AA_20161_1.0.jpg", "171021AA"),  # DeepMeerkat's samples
        ("171026AB_2_nan.jpg", "171026AB"),
        ("site1_cam2_v_frame000123_0.jpg", "site1_cam2_v"),  # detections: a video's frame
        ("site1_cam2_v_0123abcd_frame000123_2.jpg", "site1_cam2_v"),  # with the mark of a clash
        ("site1_cam2_IMG_0001_0.jpg", "site1_cam2_IMG_0001"),  # detections: an image's detection
        ("IMG_0001.JPG", None),  # a camera's own names are no crop names
        ("IMG_1234.JPG", None),
        ("601434.jpg", None),
        ("p0.jpg", None),
    ],
)
def test_meerkats_crop_names_give_their_video_or_image(name, group):
    assert groups.name_group(name) == group


def test_each_mode_takes_its_key_from_the_path_inside_the_class_folder():
    assert groups.group_of("cam1/chimp_62_0.jpg", "auto") == "chimp"
    assert groups.group_of("cam1/601434.jpg", "auto") == "cam1/"
    assert groups.group_of("601434.jpg", "auto") is None
    assert groups.group_of("cam1/chimp_62_0.jpg", "folder") == "cam1/"
    assert groups.group_of("chimp_62_0.jpg", "folder") is None
    assert groups.group_of("cam1/601434.jpg", "name") is None
    assert groups.group_of("171115aa_5_0.jpg", "name") == groups.group_of("171115AA_9_0.jpg", "name")
    assert groups.group_of("cam1/chimp_62_0.jpg", "none") is None
    inside = groups.inside_class_folders(["/s/Training/Pos/cam1/a.jpg", "/s/Training/Neg/b.jpg"])
    assert inside == ["cam1/a.jpg", "b.jpg"]
    uris = ["gs://b/Training/Pos/cam1/a.jpg", "gs://b/Training/Neg/b.jpg"]  # os.path would read gs:/b
    assert groups.inside_class_folders(uris) == ["cam1/a.jpg", "b.jpg"]


def old_held_out(rel: str, seed: int) -> bool:
    """The hold-out before grouping (createdocs._held_out of 642068f)."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{rel}".encode()).digest()[:8], "big") % HOLDOUT_EVERY == 0


def old_split(uris, labels, fraction, seed):
    """The validation split before grouping (train/data.split of 642068f): the held-out URIs."""
    held = []
    for label in sorted(set(labels)):
        members = sorted(
            (u for u, lab in zip(uris, labels, strict=True) if lab == label),
            key=lambda u: (hashlib.sha256(f"{seed}/{u.rsplit('/', 1)[-1]}".encode()).digest(), u),
        )
        held += members[: validation_size(len(members), fraction)]
    return sorted(held)


def embeddings(uris, labels) -> Embeddings:
    return Embeddings(list(uris), np.asarray(labels), np.zeros((len(uris), 2), np.float32), {"labels": ["a", "b"]})


# A crop: (class, camera folder or none, video or none, a number). Unique names inside each class folder.
crops = st.lists(
    st.tuples(
        st.integers(0, 1),
        st.sampled_from(["", "cam1/", "cam2/"]),
        st.sampled_from(["", "vA", "vb"]),
        st.integers(1, 40),
    ),
    min_size=4,
    max_size=60,
    unique_by=lambda c: (c[0], c[2] or c[1], c[3]),
)


def paths_of(drawn):
    names = {"": "img{n}.jpg"}
    return [f"/S/Training/{'ab'[c]}/{cam}{(names.get(v) or v + '_{n}_0.jpg').format(n=n)}" for c, cam, v, n in drawn]


@settings(max_examples=150, deadline=None)
@given(crops, st.sampled_from(groups.MODES), st.integers(0, 5), st.sampled_from([0.15, 0.3, 0.5]))
def test_no_group_on_both_sides_of_the_validation_split_and_sizes_as_specified(drawn, mode, seed, fraction):
    uris, labels = paths_of(drawn), [c[0] for c in drawn]
    if min(labels.count(0), labels.count(1)) < 4:
        return
    data = embeddings(uris, labels)
    fitted, held = split(data, fraction, seed, mode)
    keys = dict(zip(uris, groups.keys_of(uris, mode), strict=True))
    for label in (0, 1):
        n = labels.count(label)
        k = validation_size(n, fraction)
        part = [u for u, lab in zip(held.uris, held.labels, strict=True) if lab == label]
        rest = [u for u, lab in zip(fitted.uris, fitted.labels, strict=True) if lab == label]
        assert len(part) + len(rest) == n and part
        on_both = {keys[u] for u in part} & {keys[u] for u in rest} - {None}
        if not on_both:
            assert len(part) <= k or len({keys[u] or u for u in part}) == 1, "over the size only by one group"
        else:  # split by file: exactly today's size
            assert len(part) == k
    if mode == "none":
        assert sorted(held.uris) == old_split(uris, labels, fraction, seed)


def test_by_default_the_validation_split_holds_out_whole_videos():
    uris = [f"/S/Training/{c}/v{v}_{f}_0.jpg" for c in "ab" for v in range(10) for f in range(60, 66)]
    data = embeddings(uris, [u.split("/")[3] == "b" for u in uris])
    fitted, held = split(data, 0.15, 42)
    videos = [{u.split("/")[3] + u.split("/")[-1].split("_")[0] for u in part.uris} for part in (fitted, held)]
    assert held.counts() == {"a": 6, "b": 6}  # validation_size(60, 0.15) is 9: one video of 6 fits
    assert videos[1] and not videos[0] & videos[1]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text("abc", min_size=1, max_size=2), min_size=1, max_size=40), st.integers(0, 9))
def test_the_hold_out_keeps_each_group_on_one_side_and_each_side_has_one(keys, seed):
    held = groups.hold_out(keys, seed, HOLDOUT_EVERY, both_sides=True)
    if len(set(keys)) < 2:
        assert held is None
        return
    assert not {k for k, h in zip(keys, held, strict=True) if h} & {k for k, h in zip(keys, held, strict=True) if not h}
    assert any(held) and not all(held)
    plain = groups.hold_out(keys, seed, HOLDOUT_EVERY, both_sides=False)
    assert plain == [old_held_out(k, seed) for k in keys], "the file-level rule is the old one"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=2, max_size=12), st.integers(0, 9), st.integers(1, 30))
def test_pick_takes_whole_groups_and_never_more_than_asked_unless_none_fits(sizes, seed, size):
    keys = [f"g{g}" for g, n in enumerate(sizes) for _ in range(n)]
    index = groups.pick(keys, [f"/S/{k}/{i}.jpg" for i, k in enumerate(keys)], seed, size)
    if index is None:  # taking the one group that fits would take every crop
        return
    taken = {keys[i] for i in index}
    assert sorted(index) == sorted(i for i, k in enumerate(keys) if k in taken)
    assert len(index) <= size or len(taken) == 1 and len(index) == min(sizes)


def chimp_like(root, videos=4, frames=30, cameras=False):
    """Samples/Training/{Positives,Negatives} of crops named as clips names them: videos of
    consecutive frames, a video's frames alike (so a leak would be easy to learn)."""
    for cls in ("Positives", "Negatives"):
        for v in range(videos):
            for f in range(1, frames + 1):
                folder = f"cam{v % 2}/" if cameras else ""
                seed = zlib.crc32(f"{cls}{v}".encode()) + f % 3
                write_image(
                    root / "Training" / cls / f"{folder}{cls[:3]}{v}_{f}_0.jpg", seed, positive=cls == "Positives"
                )
    return root


def rows(path):
    return [line.split(",") for line in path.read_text().splitlines()]


def test_the_hold_out_never_puts_frames_of_one_video_on_both_sides(tmp_path, cli):
    samples = chimp_like(tmp_path / "S", videos=8, frames=6)
    for mode, leaks in (("auto", False), ("name", False), ("none", True)):
        out = tmp_path / mode
        result = cli("createdocs", samples, "--output", out, "--group-by", mode)
        assert result.exit_code == 0, result.output
        video = {p: groups.name_group(p.rsplit("/", 1)[-1]) for p, _ in rows(out / "docs" / "trainingdata.csv")}
        tested = {groups.name_group(p.rsplit("/", 1)[-1]) for p, _ in rows(out / "docs" / "testingdata.csv")}
        assert bool(set(video.values()) & tested) == leaks, mode
        assert ("groups of images (--group-by" in result.output) == (mode != "none")


def test_a_class_of_one_video_is_held_out_by_file_with_one_warning(tmp_path, cli):
    samples = chimp_like(tmp_path / "S", videos=1, frames=30)
    result = cli("createdocs", samples, "--output", tmp_path / "o")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "all one group" in line]
    assert len(warnings) == 1 and "positive, negative" in warnings[0], result.output
    assert rows(tmp_path / "o" / "docs" / "testingdata.csv")


def test_camera_folders_keep_their_crops_on_one_side(tmp_path, cli):
    root = tmp_path / "S"
    for cls in ("Positives", "Negatives"):
        for cam in range(10):
            for i in range(4):
                write_image(root / "Training" / cls / f"site{cam}" / f"{i}{cam}.jpg", seed=cam * 10 + i)
    result = cli("createdocs", root, "--output", tmp_path / "o", "--group-by", "folder")
    assert result.exit_code == 0, result.output

    def cams(name):
        return {p.split("/")[-2] for p, _ in rows(tmp_path / "o" / "docs" / name)}

    assert cams("testingdata.csv") and not cams("testingdata.csv") & cams("trainingdata.csv")


def test_groups_in_both_training_and_testing_are_named_in_a_warning(tmp_path, cli):
    root = tmp_path / "S"
    for split_dir in ("Training", "Testing"):
        for cls in ("Positives", "Negatives"):
            for f in range(1, 4):
                write_image(root / split_dir / cls / f"{split_dir}{cls}_{f}_0.jpg", seed=f)
                write_image(root / split_dir / cls / f"171021AA_{f + 10 * len(split_dir)}_0.jpg", seed=f)
    result = cli("createdocs", root, "--output", tmp_path / "o")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "in both Training and Testing" in line]
    assert len(lines) == 1 and "1 group" in lines[0] and "171021aa" in lines[0], result.output
    quiet = cli("createdocs", root, "--output", tmp_path / "n", "--group-by", "none")
    assert "in both Training and Testing" not in quiet.output


def test_an_unknown_grouping_is_a_usage_error(tmp_path, cli):
    result = cli("createdocs", tmp_path, "--output", tmp_path / "o", "--group-by", "video")
    assert_user_error(result, 2, "--group-by")


@pytest.mark.slow
def test_run_json_says_how_the_split_was_grouped(tmp_path, cli):
    samples = chimp_like(tmp_path / "S", videos=6, frames=8)
    out = tmp_path / "out"
    result = cli("run", samples, out, *TINY, "--epochs", "2", "--validation-fraction", "0.3")
    assert result.exit_code == 0, result.output
    run = json.loads((out / "report" / "run.json").read_text())
    grouping = run["split_grouping"]
    assert grouping["group_by"] == "auto" and run["train_config"]["group_by"] == "auto"
    assert grouping["groups_in_train_and_eval"] == 0 and grouping["validation_split_by_file"] == []
    assert grouping["train_groups"] + grouping["eval_groups"] == 12
    assert math.isfinite(json.loads((out / "report" / "metrics.json").read_text())["accuracy"])
