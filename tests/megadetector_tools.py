"""MegaDetector's own tools (megadetector-utils 10.0.28) on the files meerkat reads and writes.

They run in build/megadetector-venv (`make megadetector-env`; `make test` builds it) through
that venv's python in a subprocess: they pull opencv-python and pandas, and are never a
dependency of meerkat. Without the venv a test that needs them skips, except under CI=true,
where it fails.

- validate: `validate_batch_results` with raise_errors=True and check_image_existence=True,
  relative to the images' folder: the format's own validator, which raises on the first error.
- preview: `postprocess_batch_results.process_batch_results`, the HTML preview page.
- to_csv: `convert_output_format.convert_json_to_csv`, one row per image.
- write_results / video_entry: MegaDetector's own writers, to make the inputs the tests read.
- load_images: `load_image`, the pixels MegaDetector's detector sees (EXIF orientation its way).
"""

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

CI = os.environ.get("CI") == "true"
MD_PYTHON = ROOT / "build" / "megadetector-venv" / "bin" / "python"

VALIDATE = """
import json, sys
from megadetector.postprocessing.validate_batch_results import ValidateBatchResultsOptions, validate_batch_results
out = []
for path, root in json.loads(sys.argv[1]):
    print("validating", path, file=sys.stderr)
    options = ValidateBatchResultsOptions()
    options.raise_errors = True
    options.check_image_existence = True
    options.relative_path_base = root
    found = validate_batch_results(path, options)["validation_results"]
    out.append({k: found[k] for k in ("errors", "warnings", "detection_category_id_to_count",
                                      "classification_category_id_to_count")})
print(json.dumps(out))
"""

PREVIEW = """
import json, sys
from megadetector.postprocessing.postprocess_batch_results import PostProcessingOptions, process_batch_results
options = PostProcessingOptions()
options.md_results_file, options.image_base_dir, options.output_dir = sys.argv[1:4]
options.confidence_threshold = float(sys.argv[4])
options.parallelize_rendering = False
options.num_images_to_sample = -1
found = process_batch_results(options)
print(json.dumps({"html": found.output_html_file, "rows": len(found.api_detection_results)}))
"""

TO_CSV = """
import sys
from megadetector.postprocessing.convert_output_format import convert_json_to_csv
convert_json_to_csv(sys.argv[1], sys.argv[2], verbose=False)
"""

# run_detector_batch.write_results_to_file: how MegaDetector itself writes an images file.
WRITE_RESULTS = """
import json, sys
from megadetector.detection.run_detector_batch import write_results_to_file
for spec in json.loads(sys.argv[1]):
    write_results_to_file(spec["results"], spec["path"], info=spec["info"], include_max_conf=spec["include_max_conf"])
"""

# process_video's conversion of per-frame results (`video.mp4/frame000012.jpg`) into one video entry.
VIDEO_ENTRY = """
import json, sys
from megadetector.detection.process_video import _video_results_to_md_format
spec = json.loads(sys.argv[1])
print(json.dumps(_video_results_to_md_format(spec["file"], spec["frame_rate"], spec["frames"])))
"""


# visualization_utils.load_image: how MegaDetector reads an image before it draws boxes on it.
LOAD_IMAGE = """
import json, sys
import numpy as np
from megadetector.visualization.visualization_utils import load_image
for path, out in json.loads(sys.argv[1]):
    np.save(out, np.asarray(load_image(path)))
"""


def missing(what: str):
    """Skip, or under CI=true (where `make test` provides everything) fail."""
    if CI:
        pytest.fail(f"CI=true but {what}")
    pytest.skip(what)


def md_python() -> Path:
    if not MD_PYTHON.exists():
        missing(f"MegaDetector's tools are missing ({MD_PYTHON}); `make megadetector-env` builds them")
    return MD_PYTHON


def run(script: str, *args) -> str:
    """`script` in MegaDetector's venv; its stdout. A failure shows the tool's own error."""
    proc = subprocess.run(
        [str(md_python()), "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"},
    )
    if proc.returncode != 0:
        raise AssertionError(f"MegaDetector's tool failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def last_json(stdout: str):
    return json.loads(stdout.strip().splitlines()[-1])


def validate(files: list[tuple[Path, Path]]) -> list[dict]:
    """For each (file, its images' folder): {errors, warnings, detection_category_id_to_count,
    classification_category_id_to_count}. An invalid file fails, with the validator's error."""
    return last_json(run(VALIDATE, json.dumps([[str(p), str(root)] for p, root in files])))


def preview(path: Path, image_root: Path, output_dir: Path, threshold: float = 0.2) -> dict:
    """{html: the preview page, rows: entries it loaded}."""
    return last_json(run(PREVIEW, path, image_root, output_dir, threshold))


def to_csv(path: Path, out: Path) -> list[dict]:
    run(TO_CSV, path, out)
    with open(out, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_results(specs: list[dict]) -> None:
    """Files as MegaDetector's run_detector_batch writes them: each spec {path, results (its per-image
    dicts), info (None: MegaDetector's own, format 1.6), include_max_conf (files up to 1.2 had it)}."""
    run(WRITE_RESULTS, json.dumps([{"info": None, "include_max_conf": False} | s for s in specs], default=str))


def load_images(paths: list[Path], folder: Path) -> list:
    """Each image as MegaDetector's loader gives it to the detector: RGB arrays, upright as it turns them."""
    import numpy as np

    outs = [folder / f"md-{i}.npy" for i in range(len(paths))]
    run(LOAD_IMAGE, json.dumps([[str(p), str(o)] for p, o in zip(paths, outs, strict=True)]))
    return [np.load(o) for o in outs]


def video_entry(file: str, frame_rate: float, frames: list[dict]) -> dict:
    """One video entry, from per-frame results {file: "<file>/frame000012.jpg", detections: [...]}."""
    return last_json(run(VIDEO_ENTRY, json.dumps({"file": file, "frame_rate": frame_rate, "frames": frames})))
