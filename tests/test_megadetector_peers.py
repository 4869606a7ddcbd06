"""meerkat's MegaDetector files against MegaDetector's own tools (megadetector-utils 10.0.28, in
build/megadetector-venv, through tests/megadetector_tools.py).

The inputs: the shared sample crops pasted into larger scenes the test makes, a corrupt image, an
empty scene, frame-level JPEGs named as MegaDetector's video tools name them, and a video whose
entry MegaDetector's process_video code builds (format 1.5, frame numbers). MegaDetector's own
writer (run_detector_batch.write_results_to_file) writes them as formats 1.1 to 1.6. meerkat reads
each, adds its classes, and every file it writes must pass the format's validator with
raise_errors=True and check_image_existence=True, render in postprocess_batch_results' preview
page, and show meerkat's classes as columns in convert_json_to_csv's table.
"""

import json
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SAMPLES
from megadetector_tools import preview, to_csv, validate, video_entry, write_results
from test_megadetector_format import addaxai_file
from test_megadetector_write import MODEL, all_scores, streamed

from meerkat.megadetector.read import load
from meerkat.megadetector.write import Scores, dumps, motion_entry, motion_output

pytestmark = pytest.mark.slow

SCENE = (800, 600)  # width, height
VIDEO = "cams/walk.mp4"
VIDEO_FRAMES = 20
VERSIONS = [("1.1", True), ("1.2", True), ("1.3", False), (1.4, False), ("1.5", False), ("1.6", False)]


def crops() -> list[Path]:
    found = sorted(SAMPLES.glob("Testing/*/*.jpg"))
    if not found:
        pytest.skip(f"shared sample crops not found: {SAMPLES}")
    return found


def paste(scene: np.ndarray, crop: np.ndarray, x: int, y: int) -> list[float]:
    """Paste `crop` at (x, y), shrunk to fit 240 px; its box, normalised as MegaDetector writes it."""
    if max(crop.shape[:2]) > 240:
        f = 240 / max(crop.shape[:2])
        crop = cv2.resize(crop, (round(crop.shape[1] * f), round(crop.shape[0] * f)), interpolation=cv2.INTER_AREA)
    h, w = crop.shape[:2]
    scene[y : y + h, x : x + w] = crop
    H, W = scene.shape[:2]
    return [round(x / W, 4), round(y / H, 4), round(w / W, 4), round(h / H, 4)]


def background(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(40, 160, (SCENE[1], SCENE[0], 3), dtype=np.uint8), (9, 9), 0)


def detection(box, conf: float, category="1") -> dict:
    return {"category": category, "conf": conf, "bbox": box}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, list[dict]]:
    """The images folder, and per-image results as MegaDetector's batch runner returns them."""
    root = tmp_path_factory.mktemp("camera")
    files = crops()
    results = []
    for i in range(6):
        scene = background(i)
        dets = []
        for k in range(1 + i % 3):  # 1 to 3 animals a scene
            crop = cv2.imread(str(files[(3 * i + k) % len(files)]))
            x, y = 40 + 250 * k, 60 + 40 * (i % 4)
            dets.append(detection(paste(scene, crop, x, y), round(0.3 + 0.1 * k + 0.05 * i, 3)))
        if i == 2:
            dets[0]["bbox"][0] = -5e-07  # as real files have: clamped
            dets.append(detection([0.05, 0.7, 0.2, 0.25], 0.88, category="3"))  # a vehicle: not classified
        path = root / f"site{i % 2}" / f"IMG_{i:04d}.JPG"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), scene)
        results.append({"file": path.relative_to(root).as_posix(), "detections": dets})
    (root / "site0/empty.jpg").write_bytes(cv2.imencode(".jpg", background(99))[1].tobytes())
    results.append({"file": "site0/empty.jpg", "detections": []})
    (root / "site1/corrupt.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    results.append({"file": "site1/corrupt.jpg", "failure": "Failure image access"})
    # Frames extracted by MegaDetector's video tools: `<video>/frame000012.jpg`.
    for n in (0, 12):
        scene = background(100 + n)
        box = paste(scene, cv2.imread(str(files[n])), 300, 200)
        path = root / "frames" / "clip.mp4" / f"frame{n:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), scene)
        results.append({"file": path.relative_to(root).as_posix(), "detections": [detection(box, 0.7)]})
    # A video, one crop walking across it; its entry as MegaDetector's process_video builds it.
    video = root / VIDEO
    video.parent.mkdir(parents=True)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, SCENE)
    frames = []
    crop = cv2.imread(str(files[7]))
    for n in range(VIDEO_FRAMES):
        scene = background(200)
        box = paste(scene, crop, 20 + 20 * n, 150)
        writer.write(scene)
        if n % 5 == 0:  # MegaDetector sampled every 5th frame
            frames.append({"file": f"{VIDEO}/frame{n:06d}.jpg", "detections": [detection(box, 0.6 + n / 100)]})
    writer.release()
    results.append(video_entry(VIDEO, 10.0, frames))
    return root, results


@pytest.fixture(scope="module")
def md_files(inputs, tmp_path_factory) -> dict:
    """{version: MegaDetector's file of that version}, written by MegaDetector's own writer."""
    root, results = inputs
    out = tmp_path_factory.mktemp("md")
    specs, paths = [], {}
    for version, max_conf in VERSIONS:
        v = float(version)
        images = [r for r in results if v >= 1.5 or "frames_processed" not in r]  # videos: 1.5's fields
        for r in images:
            r.setdefault("max_detection_conf", max((d["conf"] for d in r.get("detections") or ()), default=0.0))
        info = {"format_version": version, "detector": "md_v5a.0.0.pt"}
        if v >= 1.2:
            info["detector_metadata"] = {"megadetector_version": "v5a.0.0", "typical_detection_threshold": 0.2}
        paths[str(version)] = out / f"md-{version}.json"
        specs.append({"path": paths[str(version)], "results": images, "info": info, "include_max_conf": max_conf})
    write_results(specs)
    # The inputs themselves are valid MegaDetector files (the validator takes 1.3 and later).
    validate([(p, root) for v, p in paths.items() if float(v) >= 1.3])
    return paths


UNREADABLE = "site1/IMG_0005.JPG"  # MegaDetector read it; meerkat finds it corrupt (a classification failure)


@pytest.fixture(scope="module")
def written(inputs, md_files, tmp_path_factory) -> dict:
    """{version: meerkat's file from MegaDetector's file of that version}."""
    root, _ = inputs
    out = tmp_path_factory.mktemp("meerkat")
    written = {}
    for version, path in md_files.items():
        r = load(path, image_root=root)
        assert r.version == f"{float(version):.1f}" and not any(e.problems for e in r.entries)
        (bad,) = [e.index for e in r.entries if e.file == UNREADABLE]
        scores = {k: v for k, v in all_scores(r).classifications.items() if k[0] != bad}
        written[version] = out / f"meerkat-{version}.json"
        written[version].write_bytes(streamed(r, Scores(scores, {bad: "cannot decode it (a corrupt JPEG)"}), MODEL))
    return written


def test_reads_megadetector_s_own_files(inputs, md_files):
    root, results = inputs
    want = {r["file"]: r for r in results}
    for version, path in md_files.items():
        r = load(path, image_root=root)
        for e in r.entries:
            animals = [d for d in want[e.file].get("detections") or () if d["category"] == "1"]
            # -5e-07 is clamped to 0, the right edge kept where it was
            boxes = sorted((max(x, 0.0), y, x + w - max(x, 0.0), h) for x, y, w, h in (d["bbox"] for d in animals))
            got = sorted(d.bbox for d in e.detections)
            assert len(got) == len(boxes) and np.allclose(got or 0, boxes or 0, rtol=0, atol=1e-9), (version, e.file)
            assert e.path == root / e.file and (e.failure is not None) == ("failure" in want[e.file])
        frames = {e.file: e.frame for e in r.entries if e.frame is not None}
        assert frames == {"frames/clip.mp4/frame000000.jpg": 0, "frames/clip.mp4/frame000012.jpg": 12}
        videos = [e for e in r.entries if e.video]
        if float(version) >= 1.5:
            assert sorted(d.frame_number for d in videos[0].detections) == [0, 5, 10, 15] and videos[0].file == VIDEO
        else:
            assert videos == []


def test_meerkat_s_files_pass_the_validator(inputs, written):
    root, results = inputs
    found = validate([(p, root) for p in written.values()])
    for version, f in zip(written, found, strict=True):
        kept = [r for r in results if float(version) >= 1.5 or "frames_processed" not in r]
        animals = sum(d["category"] == "1" for r in kept for d in r.get("detections") or ())
        classified = animals - sum(len(r["detections"]) for r in kept if r["file"] == UNREADABLE)
        assert (f["errors"], f["warnings"]) == ([], [])
        assert f["detection_category_id_to_count"] == {"1": animals, "3": 1}
        assert f["classification_category_id_to_count"] == {"0": classified, "1": classified}


def test_meerkat_s_file_renders_in_the_preview_page(inputs, written, tmp_path):
    root, _ = inputs
    found = preview(written["1.6"], root, tmp_path / "preview")
    pages = {p.name: p.read_text(encoding="utf-8") for p in Path(found["html"]).parent.glob("*.html")}
    assert found["rows"] == len(json.loads(written["1.6"].read_text())["images"])
    assert {"index.html", "class_positives.html", "class_negatives.html"} <= set(pages)
    assert "Species classification results" in pages["index.html"] and "Positives: " in pages["index.html"]


def test_meerkat_s_classes_are_columns_of_the_csv(written, tmp_path):
    rows = to_csv(written["1.6"], tmp_path / "table.csv")
    data = json.loads(written["1.6"].read_text())
    by_file = {r["image_path"]: r for r in rows}
    for im in data["images"]:
        scores = {"0": 0.0, "1": 0.0}
        for det in im.get("detections") or ():
            for cid, p in det.get("classifications", ()):
                scores[cid] = max(scores[cid], p)
        row = by_file[im["file"]]
        if im.get("failure"):
            assert row["max_confidence"] == "failure"
            continue
        assert float(row["max_classification_conf_positives"]) == pytest.approx(scores["0"])
        assert float(row["max_classification_conf_negatives"]) == pytest.approx(scores["1"])


def test_motion_scan_files_pass_the_validator_and_convert(inputs, tmp_path):
    root, _ = inputs
    boxes = [(n, (20 + 20 * n, 150, 100, 80), (n / VIDEO_FRAMES, 1 - n / VIDEO_FRAMES)) for n in range(VIDEO_FRAMES)]
    entries = [
        motion_entry(VIDEO, frame_rate=10.0, frames_processed=range(VIDEO_FRAMES), size=SCENE, boxes=boxes),
        motion_entry("site1/corrupt.jpg.mp4", frame_rate=0, frames_processed=[], size=None, boxes=[], failure="x"),
    ]
    (root / "site1/corrupt.jpg.mp4").write_bytes(b"not a video")
    path = tmp_path / "detections.json"
    path.write_bytes(dumps(motion_output(entries, MODEL)))
    (found,) = validate([(path, root)])
    assert found["detection_category_id_to_count"] == {"4": VIDEO_FRAMES}
    rows = to_csv(path, tmp_path / "motion.csv")
    walk = next(r for r in rows if r["image_path"] == VIDEO)
    assert float(walk["max_classification_conf_negatives"]) == 1.0


def test_other_tools_files_pass_the_validator_once_meerkat_wrote_them(tmp_path):
    """AddaxAI's file (species in place of MegaDetector's category) and DeepMeerkat's (not a
    MegaDetector file at all) become valid 1.6 files."""
    addax = addaxai_file()
    cv2.imwrite(str(tmp_path / "a.jpg"), background(zlib.crc32(b"a")))
    (tmp_path / "addax.json").write_text(json.dumps(addax))
    r = load(tmp_path / "addax.json")
    (tmp_path / "addax-meerkat.json").write_bytes(streamed(r, all_scores(r), MODEL))
    from test_megadetector_deepmeerkat import dm_folder

    dm = load(dm_folder(tmp_path / "dm"), image_root=tmp_path / "dm")
    (tmp_path / "dm-meerkat.json").write_bytes(streamed(dm, all_scores(dm), MODEL))
    found = validate([(tmp_path / "addax-meerkat.json", tmp_path), (tmp_path / "dm-meerkat.json", tmp_path / "dm")])
    assert [f["errors"] for f in found] == [[], []]
    assert [f["classification_category_id_to_count"] for f in found] == [{"0": 2, "1": 2}, {"0": 2, "1": 2}]
    assert found[0]["warnings"] == [  # keys beside the format's: AddaxAI's, and the other classifier's classes
        f"Warning: non-standard key {k} present at file level"
        for k in ("prev_classification_categories", "forbidden_classes")
    ]
