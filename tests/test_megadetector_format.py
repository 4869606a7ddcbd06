"""Reading MegaDetector's results (megadetector/read.py): every format from 1.0 to 1.6, boxes,
failures, videos, AddaxAI's files, and the one-line errors.

The inputs are written here per the format's specification (the fields each version added);
tests/test_megadetector_peers.py also reads files that MegaDetector's own writers made.
"""

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meerkat.core.errors import MeerkatError
from meerkat.megadetector.read import BOX_TOLERANCE, DEFAULT_THRESHOLD, clamp_box, load

VERSIONS = ["1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6"]
BOXES = [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.25, 0.125], [0.0, 0.0, 1.0, 1.0]]


def write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def spec_file(version: str, as_number: bool = False) -> dict:
    """A file as MegaDetector wrote format `version`: max_detection_conf up to 1.2, detector_metadata
    from 1.2, video frame_rate/frame_number from 1.4, frames_processed from 1.5, a string version in 1.6."""
    v = float(version)
    images = []
    for i, box in enumerate(BOXES):
        det = {"category": "1", "conf": 0.5 + i / 10, "bbox": box}
        im = {"file": f"site {i}/IMG_{i:04d}.JPG", "detections": [det, {"category": "2", "conf": 0.95, "bbox": box}]}
        if v <= 1.2:
            im["max_detection_conf"] = 0.95
        images.append(im)
    images.append({"file": "broken.jpg", "failure": "Failure image access", "detections": None})
    images.append({"file": "empty.jpg", "detections": []})
    if v >= 1.4:
        video = {"file": "cams/v1.mp4", "frame_rate": 30.0, "detections": []}
        for n in (0, 30, 60):
            video["detections"].append({"category": "1", "conf": 0.8, "bbox": [0.1, 0.1, 0.2, 0.2], "frame_number": n})
        if v >= 1.5:
            video["frames_processed"] = [0, 30, 60, 90]
        images.append(video)
    info = {"format_version": v if as_number else version, "detector": "md_v5a.0.0.pt"}
    if v >= 1.2:
        info["detector_metadata"] = {"megadetector_version": "v5a.0.0", "typical_detection_threshold": 0.2}
    return {"images": images, "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"}, "info": info}


@pytest.mark.parametrize("as_number", [False, True])
@pytest.mark.parametrize("version", VERSIONS)
def test_reads_every_version(tmp_path, version, as_number):
    path = write(tmp_path / "md.json", spec_file(version, as_number))
    r = load(path)
    assert (r.version, r.kind, r.categories, r.threshold) == (version, "megadetector", {"1"}, 0.2)
    assert {**r.header, "images": [r.entries.raw(i) for i in range(len(r.entries))]} == json.loads(path.read_text())
    assert len(r.sha256) == 64
    stills = r.entries[: len(BOXES)]
    assert [e.path for e in stills] == [tmp_path / f"site {i}/IMG_{i:04d}.JPG" for i in range(len(BOXES))]
    assert [[list(d.bbox) for d in e.detections] for e in stills] == [[b] for b in BOXES]  # animals only
    assert [e.detections[0].conf for e in stills] == [0.5 + i / 10 for i in range(len(BOXES))]
    assert all(not e.video and e.frame is None and e.detections[0].frame_number is None for e in stills)
    broken, empty = r.entries[len(BOXES) : len(BOXES) + 2]
    assert (broken.failure, broken.detections) == ("Failure image access", ())
    assert (empty.failure, empty.detections) == (None, ())
    if float(version) >= 1.4:
        video = r.entries[-1]
        assert video.video and video.path == tmp_path / "cams/v1.mp4"
        assert [d.frame_number for d in video.detections] == [0, 30, 60]


@pytest.mark.parametrize(
    "info, why",
    [
        ({"format_version": "2.0"}, 'format_version "2.0" is not one meerkat reads'),
        ({"format_version": 1.7}, "format_version 1.7 is not one meerkat reads"),
        ({"format_version": "one"}, 'format_version "one" is not one'),
        ({"format_version": True}, "format_version true is not one"),
        ({"detector": "md"}, "no info.format_version"),
        (None, "no info.format_version"),
    ],
)
def test_refuses_what_is_not_a_known_version(tmp_path, info, why):
    data = {"images": [], "detection_categories": {"1": "animal"}}
    if info is not None:
        data["info"] = info
    path = write(tmp_path / "md.json", data)
    with pytest.raises(MeerkatError) as e:
        load(path)
    assert why in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "content, why",
    [
        (b"not json at all", "is not JSON"),
        (b"\xff\xfe\x00garbage", "is not text"),
        (b"[1, 2]", 'no "images" list'),
        (b'{"images": {}}', 'no "images" list'),
        (b'{"info": {"format_version": "1.6"}, "images": []}', 'no "detection_categories"'),
        (b'{"info": {"format_version": "1.6"}, "detection_categories": {}, "images": [{"detections": []}]}', '"file"'),
        (
            b'{"info": {"format_version": "1.6"}, "detection_categories": {}, "images": [{"file": "a.jpg", '
            b'"detections": 5}]}',
            '"detections" is not a list',
        ),
    ],
)
def test_refuses_what_is_not_megadetector_results(tmp_path, content, why):
    path = tmp_path / "md.json"
    path.write_bytes(content)
    with pytest.raises(MeerkatError) as e:
        load(path)
    assert why in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_names_a_missing_file_or_a_folder(tmp_path):
    for path, why in ((tmp_path / "nope.json", "does not exist"), (tmp_path, "is a folder")):
        with pytest.raises(MeerkatError, match=why) as e:
            load(path)
        assert str(path) in str(e.value)


def test_image_root_and_file_names(tmp_path):
    data = spec_file("1.6")
    data["images"] = [
        {"file": "a\\b.jpg", "detections": []},  # written on Windows
        {"file": "/abs/c.jpg", "detections": []},
        {"file": "v.mp4/frame000123.jpg", "detections": [{"category": "1", "conf": 0.9, "bbox": BOXES[0]}]},
        {"file": "d.AVI", "detections": []},
    ]
    r = load(write(tmp_path / "out" / "md.json", data), image_root=tmp_path / "images")
    assert [e.path for e in r.entries] == [
        tmp_path / "images/a/b.jpg",
        Path("/abs/c.jpg"),
        tmp_path / "images/v.mp4/frame000123.jpg",
        tmp_path / "images/d.AVI",
    ]
    frame = r.entries[2]
    assert (frame.frame, frame.video, frame.detections[0].frame_number) == (123, False, None)
    assert r.entries[3].video and r.entries[0].file == "a\\b.jpg"
    assert load(write(tmp_path / "md.json", data)).entries[0].path == tmp_path / "a/b.jpg"  # default: the JSON's folder


def test_selection_by_category_and_threshold(tmp_path):
    data = spec_file("1.6")
    data["info"]["detector_metadata"]["typical_detection_threshold"] = 0.65
    path = write(tmp_path / "md.json", data)
    confs = lambda r: [d.conf for e in r.entries for d in e.detections if e.frame is None]  # noqa: E731
    assert load(path).threshold == 0.65 and confs(load(path)) == [0.7, 0.8, 0.8, 0.8]
    assert confs(load(path, threshold=0.0))[:3] == [0.5, 0.6, 0.7]
    both = load(path, categories="animal, PERSON", threshold=0.9)
    assert both.categories == {"1", "2"} and confs(both) == [0.95] * 3
    assert load(path, categories=["2"]).categories == {"2"}
    del data["info"]["detector_metadata"]
    assert load(write(tmp_path / "old.json", data)).threshold == DEFAULT_THRESHOLD
    unknown = "has no detection category 'cat'; pass --categories with some of: 1 (animal)"
    for bad, why in ((["cat"], unknown), ("", "")):
        with pytest.raises(MeerkatError, match=re.escape(why) or "no category given"):
            load(path, categories=bad)
    with pytest.raises(MeerkatError, match="outside 0..1"):
        load(path, threshold=1.5)


def test_failures_and_problems_are_per_entry_and_detection(tmp_path):
    data = spec_file("1.6")
    dets = [
        {"category": "1", "conf": 0.9, "bbox": [-5e-07, 0.2, 0.5, 0.80000004]},  # real files' noise: clamped
        {"category": "1", "conf": 0.9, "bbox": [0.8, 0.1, 0.5, 0.2]},  # reaches 1.3: outside the image
        {"category": "1", "conf": 0.9, "bbox": [0.1, 0.1, 0.0, 0.2]},  # empty
        {"category": "1", "conf": 0.9, "bbox": "0.1 0.1 0.2 0.2"},
        {"category": "1", "conf": "high", "bbox": BOXES[0]},
        {"category": "2", "conf": 0.9, "bbox": [5, 5, 5, 5]},  # not selected: not a problem of meerkat's
        {"conf": 0.9, "bbox": BOXES[0]},
    ]
    data["images"] = [
        {"file": "a.jpg", "detections": dets},
        {"file": "v.mp4", "frame_rate": 10, "detections": [{"category": "1", "conf": 0.9, "bbox": BOXES[0]}]},
    ]
    r = load(write(tmp_path / "md.json", data))
    image, video = r.entries
    assert [d.index for d in image.detections] == [0] and image.detections[0].bbox == (0.0, 0.2, 0.4999995, 0.8)
    reasons = {p.detection: p.reason for p in image.problems}
    assert list(reasons) == [1, 2, 3, 4, 6]
    assert "[0.8, 0.1, 0.5, 0.2] lies outside the image" in reasons[1] and "is empty" in reasons[2]
    assert "not four numbers" in reasons[3] and 'conf "high" is not a number' in reasons[4]
    assert "no category" in reasons[6]
    assert all("\n" not in p.reason for p in image.problems)
    assert video.detections == () and "frame_number null" in video.problems[0].reason


@settings(derandomize=True, max_examples=150, deadline=None)
@given(
    st.floats(-2 * BOX_TOLERANCE, 1, allow_nan=False),
    st.floats(-2 * BOX_TOLERANCE, 1, allow_nan=False),
    st.floats(0, 1.01, allow_nan=False),
    st.floats(0, 1.01, allow_nan=False),
)
def test_boxes_are_clamped_or_refused(x, y, w, h):
    """Within BOX_TOLERANCE of the image a box is clamped into it, unchanged if already inside;
    further out, or empty, it is refused with a reason."""
    got = clamp_box([x, y, w, h])
    inside = min(x, y) >= -BOX_TOLERANCE and max(x + w, y + h) <= 1 + BOX_TOLERANCE and w > 0 and h > 0
    if not inside:
        assert isinstance(got, str)
        return
    if isinstance(got, str):  # clamping left nothing of it (a sliver outside the image)
        assert "empty once clamped" in got and (x + w <= 0 or y + h <= 0 or x >= 1 or y >= 1)
        return
    cx, cy, cw, ch = got
    assert 0 <= cx <= 1 and 0 <= cy <= 1 and 0 < cw and 0 < ch and cx + cw <= 1 and cy + ch <= 1
    if min(x, y) >= 0 and max(x + w, y + h) <= 1:
        assert got == (x, y, w, h)
    assert abs(cx - max(x, 0)) <= BOX_TOLERANCE and abs((cx + cw) - min(x + w, 1)) <= 1e-12


def addaxai_file() -> dict:
    """Per AddaxAI's classification code: a species classifier's top class above its threshold
    replaces `category` and `conf`, MegaDetector's move to prev_category/prev_conf; species join
    detection_categories after MegaDetector's, and "animal" becomes "unidentified animal"."""
    return {
        "images": [
            {
                "file": "a.jpg",
                "detections": [
                    {"category": "4", "conf": 0.97, "bbox": BOXES[0], "prev_conf": 0.61, "prev_category": "1",
                     "classifications": [["0", 0.97], ["1", 0.03]]},
                    {"category": "1", "conf": 0.44, "bbox": BOXES[1], "classifications": [["1", 0.5], ["0", 0.5]]},
                    {"category": "5", "conf": 0.9, "bbox": BOXES[2], "prev_conf": 0.1, "prev_category": "1",
                     "classifications": [["1", 0.9]]},
                    {"category": "2", "conf": 0.9, "bbox": BOXES[2]},
                ],
            }
        ],
        "detection_categories": {"1": "unidentified animal", "2": "person", "3": "vehicle", "4": "fox", "5": "badger"},
        "classification_categories": {"0": "fox", "1": "badger"},
        "info": {"format_version": "1.4", "detector": "md_v5a.0.0.pt"},
        "forbidden_classes": [],
    }  # fmt: skip


def test_addaxai_files_select_by_megadetector_s_values(tmp_path):
    path = write(tmp_path / "addax.json", addaxai_file())
    r = load(path)
    assert r.kind == "addaxai" and r.categories == {"1"}
    assert [(d.index, d.category, d.conf) for d in r.entries[0].detections] == [(0, "1", 0.61), (1, "1", 0.44)]
    assert load(path, categories="animal").categories == {"1"}  # MegaDetector's name, which AddaxAI renamed
    assert [d.index for d in load(path, categories="fox", threshold=0).entries[0].detections] == [0]
    data = addaxai_file()
    del data["forbidden_classes"]
    assert load(write(tmp_path / "plain.json", data)).kind == "addaxai"  # prev_category says it
