"""From a MegaDetector box to the crop's bytes and name (detections/crops.py), and the decoding of
images and video frames (detections/sources.py), on files the tests write."""

import io
import math
from fractions import Fraction
from pathlib import Path

import cv2
import megadetector_tools
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from videos import moving_square

from meerkat.core.names import folded
from meerkat.detections import crops, sources
from meerkat.megadetector.read import Detection, Entry

SIDE = 299
MARGIN = (math.sqrt(2) - 1) / 2

sizes = st.integers(1, 5000)
unit = st.floats(0, 1, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(width=sizes, height=sizes, x=unit, y=unit, w=unit, h=unit)
def test_a_pixel_box_lies_in_the_image_is_never_empty_and_covers_the_box(width, height, x, y, w, h):
    box = crops.pixel_box((x, y, w, h), width, height)
    assert 0 <= box.x and box.x + box.w <= width and 0 <= box.y and box.y + box.h <= height
    assert box.w >= 1 and box.h >= 1
    # Every pixel the box touches, in exact arithmetic, clipped to the image.
    left, top = Fraction(x) * width, Fraction(y) * height
    right, bottom = min((Fraction(x) + Fraction(w)) * width, width), min((Fraction(y) + Fraction(h)) * height, height)
    eps = Fraction(1, 10**6)  # float noise: crops.NOISE
    assert box.x <= min(left, width - 1) + eps and box.x + box.w >= right - eps
    assert box.y <= min(top, height - 1) + eps and box.y + box.h >= bottom - eps
    # and no more than those: at most one pixel beyond the box on each side
    assert box.x >= math.floor(left) - 1 and box.x + box.w <= max(math.ceil(right) + 1, box.x + 1)


def test_pixel_boxes_of_exact_boxes():
    assert crops.pixel_box((0.25, 0.5, 0.5, 0.25), 400, 200) == crops.Box(100, 100, 200, 50)
    assert crops.pixel_box((0.1001, 0.2, 0.3, 0.4), 1000, 100) == crops.Box(100, 20, 301, 40)  # 100.1 -> 400.1
    assert crops.pixel_box((1.0, 1.0, 0.0, 0.0), 640, 480) == crops.Box(639, 479, 1, 1)  # a point in the corner
    assert crops.pixel_box((0.0, 0.0, 1.0, 1.0), 7, 5) == crops.Box(0, 0, 7, 5)


def expected_crop(image, box, padding) -> bytes:
    """tests/test_clips.py's rule, written here again independently of meerkat/video/motion.py."""
    x, y, w, h = box
    height, width = image.shape[:2]
    if padding == "deepmeerkat":
        top, bottom = int(y - y * MARGIN), int((y + h) + (y + h) * MARGIN)
        left, right = int(x - x * MARGIN), int((x + w) + (x + w) * MARGIN)
    else:
        top, bottom = int(y - h * MARGIN), int(y + h + h * MARGIN)
        left, right = int(x - w * MARGIN), int(x + w + w * MARGIN)
    top, bottom = (min(max(v, 0), height) for v in (top, bottom))
    left, right = (min(max(v, 0), width) for v in (left, right))
    return cv2.imencode(".jpg", cv2.resize(image[top:bottom, left:right], (SIDE, SIDE)))[1].tobytes()


@pytest.mark.parametrize("padding", ["deepmeerkat", "box"])
def test_a_crop_is_the_motion_crop_of_the_pixel_box(padding):
    image = np.random.default_rng(1).integers(0, 256, (1200, 1600, 3), dtype=np.uint8)
    bbox = (0.40625, 0.25, 0.125, 0.2)  # pixels 650..850 x 300..540
    data = crops.crop(image, bbox, padding)
    assert data == expected_crop(image, (650, 300, 200, 240), padding)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (SIDE, SIDE, 3)


def entry(index, file, detections=(), root=Path("/data"), **fields) -> Entry:
    """An Entry as megadetector/read.py makes them; `fields`: video, frame, failure."""
    return Entry(index, file, root, fields.get("video", False), fields.get("frame"), fields.get("failure"),
                 tuple(detections))  # fmt: skip


def det(index, bbox=(0.1, 0.1, 0.5, 0.5), frame_number=None) -> Detection:
    return Detection(index, "1", 0.9, bbox, frame_number)


def test_crop_names_say_which_image_frame_and_detection():
    entries = [
        entry(0, "site1/cam2/IMG_0001.JPG", [det(3)]),
        entry(1, "IMG_0002.jpeg", [det(0)]),
        entry(2, "site1/v.mp4", [det(0, frame_number=45)], video=True),
        entry(3, "site1/v2.mp4/frame000123.jpg", [det(0)], frame=123),
        entry(4, ".hidden.jpg", [det(1)]),
        entry(5, "site.2\\win.jpg", [det(0)]),
    ]
    names = crops.Names(entries)
    assert [names(e, d) for e in entries for d in e.detections] == [
        "site1_cam2_IMG_0001_3.jpg", "IMG_0002_0.jpg", "site1_v_frame000045_0.jpg", "site1_v2_frame000123_0.jpg",
        "hidden_1.jpg", "site.2_win_0.jpg",
    ]  # fmt: skip


def test_crops_that_would_share_a_name_each_get_one_of_their_own():
    entries = [
        entry(0, "q.jpg", [det(0, (0.0, 0.0, 0.2, 0.2))]),
        entry(1, "q.jpg", [det(0, (0.8, 0.8, 0.2, 0.2))]),  # the same image again (concatenated shards)
        entry(2, "v.mp4", [det(0, frame_number=10)], video=True),
        entry(3, "v.mp4/frame000010.jpg", [det(0)], frame=10),  # its frame, as a frame-level entry
        entry(4, "a_b/c.jpg", [det(0)]),
        entry(5, "a/b_c.jpg", [det(0)]),
        entry(6, "x/Y.jpg", [det(0)]),
        entry(7, "X/y.jpg", [det(0)]),
        entry(8, "IMG_0001.JPG", [det(0)]),
    ]
    names = crops.Names(entries)
    found = [names(e, d) for e in entries for d in e.detections]
    assert len({folded(n) for n in found}) == len(found)
    assert found[8] == "IMG_0001_0.jpg"  # no clash, no digest
    assert found[0].startswith("q_") and found[1].startswith("q_") and len(found[0]) == len("q_12345678_0.jpg")
    assert crops.Names(entries)(entries[1], entries[1].detections[0]) == found[1]  # the same file, the same names


@settings(derandomize=True, max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a/IMG.JPG", "A/img.jpg", "a_IMG.jpg", "v.mp4", "v.mp4/frame000002.jpg",
                                           "v_frame000002.jpg", "É/x.jpg", "é/X.jpg"]),
                          st.lists(st.integers(0, 3), max_size=3)), max_size=12))  # fmt: skip
def test_no_two_detections_share_a_crop_name(listed):
    """Whatever a file lists, and however often: one name a crop, also where case does not count."""
    entries = []
    for i, (file, frames) in enumerate(listed):
        video, frame = file == "v.mp4", 2 if file.endswith("frame000002.jpg") else None
        dets = [det(j, frame_number=n if video else None) for j, n in enumerate(frames)]
        entries.append(entry(i, file, dets, video=video, frame=frame))
    names = crops.Names(entries)
    found = [names(e, d) for e in entries for d in e.detections]
    assert len({folded(n) for n in found}) == len(found)


def test_a_very_long_path_gives_a_name_a_file_system_takes():
    deep = "/".join(["folder_with_a_long_name"] * 20) + "/IMG_0001.JPG"
    long = entry(0, deep, [det(12, frame_number=123456)])
    name = crops.Names([long])(long, long.detections[0])
    assert len(name.encode()) < 255 and name.endswith("folder_with_a_long_name_IMG_0001_frame123456_12.jpg")


# --- decoding ----------------------------------------------------------------------------------------


def test_every_exif_orientation_is_read_as_megadetector_reads_it(tmp_path):
    """MegaDetector's loader turns the image for orientations 3, 6 and 8 and leaves the mirrored
    ones (2, 4, 5, 7) as stored; OpenCV would mirror those too, and swap width and height for 5
    and 7. The boxes fall where MegaDetector drew them only on MegaDetector's pixels."""
    stored = np.zeros((40, 60, 3), np.uint8)  # 60 wide, 40 high: a quadrant each of red, green, blue, white
    stored[:20, :30], stored[:20, 30:], stored[20:, :30], stored[20:, 30:] = (0, 0, 255), (0, 255, 0), (255, 0, 0), 255
    paths = []
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        buf = io.BytesIO()
        Image.fromarray(stored[:, :, ::-1]).save(buf, "JPEG", exif=exif.tobytes(), quality=100, subsampling=0)
        paths.append(tmp_path / f"o{orientation}.jpg")
        paths[-1].write_bytes(buf.getvalue())
    theirs = megadetector_tools.load_images(paths, tmp_path)
    for orientation, path, want in zip(range(1, 9), paths, theirs, strict=True):
        ours = sources.decode(path)[:, :, ::-1]  # BGR -> RGB
        assert ours.shape == want.shape, orientation
        assert np.abs(ours.astype(int) - want).max() < 8, orientation  # two JPEG decoders, one picture
    assert [t.shape[:2] for t in theirs] == [(40, 60)] * 5 + [(60, 40), (40, 60), (60, 40)]  # 6 and 8 turned


def write_jpeg(path: Path, image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cv2.imencode(".jpg", image)[1].tobytes())
    return path


def test_cuts_come_in_file_order_with_failures_for_what_cannot_be_read(tmp_path):
    rng = np.random.default_rng(0)
    images = {n: rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for n in ("a", "b")}
    for n, image in images.items():
        write_jpeg(tmp_path / f"{n}.jpg", image)
    (tmp_path / "bad.jpg").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (tmp_path / "empty.jpg").write_bytes(b"")
    entries = [
        entry(0, "a.jpg", [det(0), det(2, (0.5, 0.5, 0.5, 0.5))], root=tmp_path),
        entry(1, "missing.jpg", [det(0)], root=tmp_path),
        entry(2, "bad.jpg", [det(0)], root=tmp_path),
        entry(3, "empty.jpg", [det(0)], root=tmp_path),
        entry(4, "failed-in-md.jpg", [], failure="Failure image access", root=tmp_path),
        entry(5, "b.jpg", [det(1)], root=tmp_path),
        entry(6, "nothing.jpg", [], root=tmp_path),  # no selected box: not even opened
    ]
    decoded = [cv2.imdecode(np.frombuffer((tmp_path / f"{n}.jpg").read_bytes(), np.uint8), 1) for n in "ab"]
    for workers in (1, 3):
        with sources.Cuts(entries, "box", workers) as cuts:
            cut = list(cuts)
        assert [c.entry.index for c in cut] == list(range(7))
        assert [(d.index, data) for d, data in cut[0].crops] == [
            (0, crops.crop(decoded[0], (0.1, 0.1, 0.5, 0.5), "box")),
            (2, crops.crop(decoded[0], (0.5, 0.5, 0.5, 0.5), "box")),
        ]
        assert [c.failure for c in cut] == [
            None, "file not found", "OpenCV cannot decode it: not an image, or a damaged one", "empty file (0 bytes)",
            None, None, None,
        ]  # fmt: skip
        assert [len(c.crops) for c in cut] == [2, 0, 0, 0, 0, 1, 0]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A 40-frame FFV1 video (tests/videos.py) and its frames, as OpenCV decodes them, from 0."""
    path, _ = moving_square(tmp_path_factory.mktemp("v") / "cam" / "v.avi")
    cap, frames = cv2.VideoCapture(str(path)), []
    while (read := cap.read())[0]:
        frames.append(read[1])
    cap.release()
    return path, frames


def test_a_videos_frames_are_read_once_counting_from_0(video):
    path, frames = video
    assert len(frames) == 40
    with sources.opened(path) as cap:
        got = list(sources.frames(cap, [0, 3, 39]))
    assert [n for n, _ in got] == [0, 3, 39]
    assert all(np.array_equal(image, frames[n]) for n, image in got)
    with pytest.raises(sources.BadVideo, match="it ends after frame 39, before frame 40"), sources.opened(path) as cap:
        list(sources.frames(cap, [5, 40]))


def test_video_entries_and_frame_level_entries_give_the_crops_of_their_frames(video, tmp_path):
    path, frames = video
    root = path.parent.parent
    box = (0.1, 0.3, 0.25, 0.3)
    # Where MegaDetector's tools wrote the frames as JPEGs, the JPEG is used as it is.
    write_jpeg(root / "cam" / "w.avi" / "frame000007.jpg", frames[8])
    entries = [
        entry(0, "cam/v.avi", [det(0, box, 12), det(1, box, 2), det(2, box, 12)], video=True, root=root),
        entry(1, "cam/v.avi/frame000005.jpg", [det(0, box)], frame=5, root=root),
        entry(2, "cam/w.avi/frame000007.jpg", [det(0, box)], frame=7, root=root),
        entry(3, "cam/v.avi/frame000020.jpg", [det(0, box)], frame=20, root=root),
        entry(4, "cam/v.avi/frame000050.jpg", [det(0, box)], frame=50, root=root),
        entry(5, "cam/gone.avi", [det(0, box, 1)], video=True, root=root),
    ]
    with sources.Cuts(entries, "deepmeerkat", 2) as cuts:
        cut = list(cuts)
    want = {n: crops.crop(frames[n], box, "deepmeerkat") for n in (2, 5, 12, 20)}
    assert cut[0].crops == [(entries[0].detections[0], want[12]), (entries[0].detections[1], want[2]),
                            (entries[0].detections[2], want[12])]  # fmt: skip
    assert cut[0].frame_rate == 25 and cut[1].frame_rate is None  # a video entry's, for the output
    assert cut[1].crops == [(entries[1].detections[0], want[5])]
    jpeg = cv2.imdecode(np.frombuffer((root / "cam" / "w.avi" / "frame000007.jpg").read_bytes(), np.uint8), 1)
    assert cut[2].crops == [(entries[2].detections[0], crops.crop(jpeg, box, "deepmeerkat"))]
    # Frames 20 and 50 are read in one pass; the video ends before 50: frame 20's entry stands.
    assert cut[3].crops == [(entries[3].detections[0], want[20])] and cut[3].failure is None
    assert cut[4].failure == "it ends after frame 39, before frame 50 that a detection names" and not cut[4].crops
    assert cut[5].failure == "cannot read: No such file or directory" and not cut[5].crops
