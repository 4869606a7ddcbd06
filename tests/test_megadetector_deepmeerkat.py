"""DeepMeerkat 3.1.4's megadetector_results.json (megadetector/deepmeerkat.py), made by DeepMeerkat's
own code: its run_megadetector_job, frame reader, ROI cut and writers, in build/deepmeerkat-venv.

MegaDetector itself needs PyTorch and its weights, which do not install offline; DeepMeerkat gets it
through `megadetector.detection.run_detector.load_detector`, and here that returns a stand-in that
boxes the one bright square of the image it is given, normalised to that image, as MegaDetector's
`generate_detections_one_image` does. The squares' true places are known, so the test sees what
DeepMeerkat's boxes are relative to. The refusals are also checked on folders made per its source.
"""

import csv
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT
from megadetector_tools import missing

from meerkat.core.errors import MeerkatError
from meerkat.megadetector.read import load

DM_PYTHON = ROOT / "build" / "deepmeerkat-venv" / "bin" / "python"
SIZE = (320, 240)  # the video's width, height
FRAMES = 12

RUN_WITH_STAND_IN = """
import json, sys, types
from pathlib import Path
import numpy as np

class StandIn:
    # MegaDetector's interface: boxes normalised to the image given (pytorch_detector.py), 4 decimals.
    def generate_detections_one_image(self, image, image_id="unknown", detection_threshold=1e-05, **kwargs):
        ys, xs = np.nonzero(image.max(axis=2) > 200)
        h, w = image.shape[:2]
        detections = []
        if len(xs):
            x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
            box = [round(float(v), 4) for v in (x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h)]
            detections.append({"category": "1", "conf": 0.9, "bbox": box})
        return {"file": image_id, "detections": detections, "max_detection_conf": 0.9 if detections else 0.0}

for name in ("megadetector", "megadetector.detection", "megadetector.detection.run_detector"):
    sys.modules[name] = types.ModuleType(name)
sys.modules["megadetector.detection.run_detector"].load_detector = lambda *args, **kwargs: StandIn()
sys.modules["megadetector.detection"].run_detector = sys.modules["megadetector.detection.run_detector"]

from deepmeerkat.config import DetectionMode, JobConfig, MegaDetectorSettings
from deepmeerkat.megadetector_pipeline import run_megadetector_job
spec = json.loads(sys.argv[1])
settings = MegaDetectorSettings(frame_stride=spec["stride"], max_dimension=spec["max_dimension"])
roi = tuple(spec["roi"]) if spec["roi"] else None
config = JobConfig(input_path=Path(spec["video"]), output_dir=Path(spec["output"]),
                   mode=DetectionMode.MEGADETECTOR, megadetector=settings, roi=roi)
print(json.dumps({"folder": str(run_megadetector_job(config))}))
"""


def square(i: int) -> tuple[int, int, int, int]:
    """The bright square's (x0, y0, x1, y1) in frame i (0-based)."""
    return 60 + 10 * i, 50 + 5 * i, 110 + 10 * i, 90 + 5 * i


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dm-video") / "walk.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, SIZE)
    for i in range(FRAMES):
        frame = np.full((SIZE[1], SIZE[0], 3), 30, np.uint8)
        x0, y0, x1, y1 = square(i)
        frame[y0:y1, x0:x1] = 255
        writer.write(frame)
    writer.release()
    return path


def deepmeerkat(video: Path, output: Path, stride=1, max_dimension=1280, roi=None) -> Path:
    if not DM_PYTHON.exists():
        missing(f"DeepMeerkat's venv is missing ({DM_PYTHON}); `make deepmeerkat-env` builds it")
    spec = {"video": str(video), "output": str(output), "stride": stride, "max_dimension": max_dimension, "roi": roi}
    proc = subprocess.run([str(DM_PYTHON), "-c", RUN_WITH_STAND_IN, json.dumps(spec)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(json.loads(proc.stdout.strip().splitlines()[-1])["folder"]) / "megadetector_results.json"


@pytest.mark.slow
@pytest.mark.parametrize("stride, max_dimension", [(1, 1280), (3, 160)])
def test_reads_deepmeerkat_s_file_without_a_roi(tmp_path, video, stride, max_dimension):
    path = deepmeerkat(video, tmp_path / "out", stride=stride, max_dimension=max_dimension)
    raw = json.loads(path.read_text())
    assert "info" not in raw and raw["images"][0]["file"] == "walk_frame_000001"  # not a MegaDetector file
    r = load(path)
    assert (r.kind, r.version, r.detection_categories["1"]) == ("deepmeerkat", "1.6", "animal")
    (entry,) = r.entries
    assert entry.video and entry.path == video and entry.file == video.as_posix()  # outside the JSON's folder
    frames = list(range(0, FRAMES, stride))
    assert r.entries.raw(0)["frames_processed"] == frames and r.entries.raw(0)["frame_rate"] == 10.0
    assert [d.frame_number for d in entry.detections] == frames  # DeepMeerkat's 1, 2, ... are frames 0, 1, ...
    for d in entry.detections:
        x0, y0, x1, y1 = square(d.frame_number)
        want = (x0 / SIZE[0], y0 / SIZE[1], (x1 - x0) / SIZE[0], (y1 - y0) / SIZE[1])
        assert np.allclose(d.bbox, want, atol=1.5 / max_dimension + 5e-5), (d, want)  # the shrink's pixel


@pytest.mark.slow
def test_refuses_deepmeerkat_s_file_from_a_roi(tmp_path, video):
    path = deepmeerkat(video, tmp_path / "out", roi=[40, 30, 240, 180])
    with pytest.raises(MeerkatError, match=r"ran with a --roi \(its corner near x=40, y=30\)") as e:
        load(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def dm_folder(tmp_path: Path, rows=None, params=None, ids=("clip_frame_000001", "clip_frame_000002")) -> Path:
    """A result folder as DeepMeerkat 3.1.4 writes it (megadetector_pipeline.py), boxes normalised."""
    folder = tmp_path / "clip"
    folder.mkdir(parents=True, exist_ok=True)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    results = [{"file": i, "detections": [{"category": "1", "conf": 0.8, "bbox": [0.25, 0.5, 0.1, 0.2]}]} for i in ids]
    (folder / "megadetector_results.json").write_text(json.dumps({"images": results, "video": str(video)}, indent=2))
    params = {"mode": "megadetector", "source_video": str(video), "video_fps": 25.0, "model": "MDV5A"} | (params or {})
    with open(folder / "parameters.csv", "w", newline="") as f:
        csv.writer(f).writerows(sorted(params.items()))
    if rows is None:
        rows = [{"frame": n + 1, "x": 0, "y": 1, "h": 0, "w": 0} for n in range(len(ids))]  # round(0.25 + 0) ...
    with open(folder / "annotations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["frame", "clock", "x", "y", "h", "w", "label", "score"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return folder / "megadetector_results.json"


def test_reads_a_folder_made_per_deepmeerkat_s_source(tmp_path):
    path = dm_folder(tmp_path)
    r = load(path, image_root=tmp_path)
    (entry,) = r.entries
    assert (entry.file, entry.path) == ("clip.mp4", tmp_path / "clip.mp4")
    assert [(d.frame_number, d.bbox) for d in entry.detections] == [
        (0, (0.25, 0.5, 0.1, 0.2)),
        (1, (0.25, 0.5, 0.1, 0.2)),
    ]
    assert r.header["info"] == {"format_version": "1.6", "detector": "DeepMeerkat (MegaDetector MDV5A)"}


@pytest.mark.parametrize(
    "change, why",
    [
        ({"params": {"mode": "motion"}}, "is not from DeepMeerkat's MegaDetector mode"),
        ({"params": {"video_fps": "x"}}, "has no video_fps"),
        ({"ids": ("other_frame_000001",)}, "is not a frame of 'clip'"),
        ({"ids": ("clip_frame_000000",)}, "is not a frame of 'clip'"),
        ({"rows": [{"x": 0, "y": 0, "w": 0, "h": 0}]}, "has 1 boxes and"),
        ({"rows": [{"x": 0, "y": 0, "w": 36, "h": 0}] * 2}, "wider than 1"),
        ({"rows": [{"x": 120, "y": 0, "w": 0, "h": 0}] * 2}, "ran with a --roi"),
        ({"missing": "parameters.csv"}, "needs the parameters.csv"),
        ({"missing": "annotations.csv"}, "needs the annotations.csv"),
    ],
)
def test_refuses_what_cannot_be_read_faithfully(tmp_path, change, why):
    missing_file = change.pop("missing", None)
    path = dm_folder(tmp_path, **change)
    if missing_file:
        (path.parent / missing_file).unlink()
    with pytest.raises(MeerkatError, match=why) as e:
        load(path)
    assert "\n" not in str(e.value) and str(path.parent) in str(e.value)
