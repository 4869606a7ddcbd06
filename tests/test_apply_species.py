"""A model of three classes applied: export, predict, clips --model, scan over a video and scan
--detections (on synthetic scenes and on ../shared/data/ena24_small's MegaDetector file), with
MegaDetector's validator and preview page. The model is trained once for the module on conftest's
make_species crops with the tiny backbone: its scores are deterministic, not meaningful."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, assert_user_error, needs_shared
from megadetector_tools import preview, validate
from species import invoke, table, trained_model, visible
from videos import moving_square

from meerkat.apply import card
from meerkat.samples.classes import Classes

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("outside_slurm")]
CLASSES = ("Red fox", "deer", "empty")
ORDER = ("deer", "empty", "Red fox")  # the model's: by name, case ignored
SCORES = [f"score_{c}" for c in ORDER]
ENA24 = SHARED / "data" / "ena24_small"


def probabilities(row: dict) -> np.ndarray:
    return np.array([[float(row[c]) for c in SCORES]])


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return trained_model(tmp_path_factory.mktemp("species"), CLASSES)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return moving_square(tmp_path_factory.mktemp("video") / "sq.avi")[0]


def test_the_exported_model_serves_each_class_and_names_the_top_one(model):
    from meerkat.samples.imagefiles import read_for_model

    assert (model / "dict.txt").read_text(encoding="utf-8").splitlines() == list(ORDER)
    crops = sorted((model.parents[1] / "Samples" / "Testing").rglob("*.jpg"))
    import tensorflow as tf

    serve = tf.saved_model.load(str(model)).signatures["serving_default"]
    served = {k: v.numpy() for k, v in serve(image_bytes=tf.constant([read_for_model(p) for p in crops])).items()}
    assert served["scores"].shape == (len(crops), 3)
    np.testing.assert_allclose(served["scores"].sum(axis=1), 1, atol=1e-5)
    assert list(served["prediction"]) == list(served["scores"].argmax(axis=1))
    assert [v.decode() for v in served["label"]] == [ORDER[i] for i in served["prediction"]]


def test_predict_writes_a_score_column_per_class_and_the_top_class(model, tmp_path):
    testing = model.parents[1] / "Samples" / "Testing"
    result = invoke("predict", model, testing, "--output", tmp_path / "s.csv", "--threshold", "0.123")
    # The card's threshold is for scan's keep rule: predict labels by the top class, so it has no note.
    assert card.recommended(model) is not None and "note:" not in result.output
    rows = table(tmp_path / "s.csv")
    assert list(rows[0]) == ["path", "label", *SCORES] and len(rows) == 9
    for row in rows:
        p = probabilities(row)
        assert abs(p.sum() - 1) < 1e-5 and row["label"] == ORDER[int(p.argmax())]
    # The three looks are told apart: most crops get their own class.
    right = sum(Path(r["path"]).parent.name == r["label"] for r in rows)
    assert right >= 6, rows


def test_clips_model_suggests_each_crop_into_its_top_class(model, video, tmp_path):
    result = invoke("clips", video, "--output", tmp_path, "--model", model, "--threshold", "0.123")
    scores = table(tmp_path / "suggested" / "scores.csv")
    assert list(scores[0]) == ["video", "crop", *SCORES, "suggested"]
    assert sorted(visible(tmp_path / "suggested")) == sorted([*ORDER, "scores.csv"])
    for row in scores:
        top = ORDER[int(probabilities(row).argmax())]
        assert row["suggested"] == top and (tmp_path / "suggested" / top / row["crop"]).is_file()
    assert "note:" not in result.output
    counts = {c: sum(r["suggested"] == c for r in scores) for c in ORDER}
    assert "Suggested (the top class): " + ", ".join(f"{n} {c}" for c, n in counts.items()) in result.output
    assert table(tmp_path / "sq" / "scores.csv")[0].keys() == {"crop", *SCORES, "suggested"}


def test_scan_keeps_a_frame_when_one_minus_the_background_reaches_the_threshold(model, video, tmp_path):
    invoke("scan", model, video, "--output", tmp_path / "all", "--threshold", "0")
    boxes = table(tmp_path / "all" / "sq" / "annotations.csv")
    detections = json.loads((tmp_path / "all" / "detections.json").read_text(encoding="utf-8"))
    dets = detections["images"][0]["detections"]
    assert detections["classification_categories"] == {"0": "deer", "1": "empty", "2": "Red fox"}
    assert len(dets) == len(boxes)
    animal = []
    for row, det in zip(boxes, dets, strict=True):
        p = dict(det["classifications"])
        assert [s for _, s in det["classifications"]] == sorted(p.values(), reverse=True)
        assert row["label"] == ORDER[int(det["classifications"][0][0])]
        animal.append(float(row["score"]))
        assert abs(float(row["score"]) - (1 - p["1"])) < 2e-6
    threshold = sorted(animal)[len(animal) // 2]
    out = tmp_path / "half"
    invoke("scan", model, video, "--output", out, "--threshold", f"{threshold:.6f}")
    kept = {int(r["frame"]) for r in table(out / "sq" / "annotations.csv") if float(r["score"]) >= threshold}
    assert {int(Path(p).stem) for p in visible(out / "sq" / "frames")} == kept
    row = table(out / "scan.csv")[0]
    assert list(row)[-2:] == ["top_class", "folder"] and int(row["kept_frames"]) == len(kept)
    best = max(boxes, key=lambda r: float(r["score"]))
    assert row["top_class"] == best["label"]
    validate([(out / "detections.json", video.parent)])


def test_background_names_the_classes_that_mean_nothing_here(model, video, tmp_path):
    invoke("scan", model, video, "--output", tmp_path, "--threshold", "0", "--background", "DEER", "--no-frames")
    rows = table(tmp_path / "sq" / "annotations.csv")
    found = json.loads((tmp_path / "detections.json").read_text(encoding="utf-8"))["images"][0]["detections"]
    for row, det in zip(rows, found, strict=True):
        assert abs(float(row["score"]) - (1 - dict(det["classifications"])["0"])) < 2e-6
    result = invoke("scan", model, video, "--output", tmp_path / "x", "--background", "elk", code=1)
    assert_user_error(result, 1, "--background 'elk' is not one of the classes")


def test_a_model_without_a_background_class_asks_for_background(model, video, tmp_path):
    other = tmp_path / "model"
    shutil.copytree(model, other)
    (other / "dict.txt").write_text("deer\nelk\nRed fox\n", encoding="utf-8")
    result = invoke("scan", other, video, "--output", tmp_path / "out", code=2)
    assert_user_error(result, 2, "none of the classes", "--background")
    assert not (tmp_path / "out" / "scan.csv").exists()
    invoke("scan", other, video, "--output", tmp_path / "out", "--background", "elk")


@needs_shared()
def test_scan_detections_of_ena24_writes_the_classes_as_megadetectors_tools_read_them(model, tmp_path):
    out = tmp_path / "out"
    invoke("scan", model, "--detections", ENA24 / "md_annotations.json", "--output", out, "--threshold", "0.5")
    found = json.loads((out / "detections.json").read_text(encoding="utf-8"))
    assert found["classification_categories"] == {"0": "deer", "1": "empty", "2": "Red fox"}
    assert found["prev_classification_categories"]  # ENA24's own classifier, set aside
    rows = {r["file"]: r for r in table(out / "scan.csv")}
    assert list(next(iter(rows.values()))) == [
        "file", "status", "reason", "detections", "classified", "max_score_animal", "top_class", "kept",
    ]  # fmt: skip
    classes = Classes.of(ORDER)
    for image in found["images"]:
        classified = [d for d in image["detections"] if "classifications" in d]
        row = rows[image["file"]]
        assert int(row["classified"]) == len(classified)
        if not classified:
            continue
        p = np.array([[dict(d["classifications"])[str(i)] for i in range(3)] for d in classified])
        assert all(len(d["classifications"]) == 3 for d in classified)
        animal = classes.keep_scores(p)
        assert abs(float(row["max_score_animal"]) - animal.max()) < 2e-6
        assert row["top_class"] == ORDER[int(p[animal.argmax()].argmax())]
        assert row["kept"] == str(float(row["max_score_animal"]) >= 0.5)
    checked = validate([(out / "detections.json", ENA24)])[0]
    classified = sum(int(r["classified"]) for r in rows.values())
    assert checked["classification_category_id_to_count"] == dict.fromkeys("012", classified)  # every class a box
    page = preview(out / "detections.json", ENA24, tmp_path / "preview", threshold=0.2)
    # The page groups the images by class: a page per class that tops a box, named after it.
    pages = {p.name for p in Path(page["html"]).parent.glob("class_*.html")} - {"class_unreliable.html"}
    assert page["rows"] == 21 and pages and pages <= {"class_deer.html", "class_empty.html", "class_red_fox.html"}


def test_clips_detections_model_suggests_ena24s_crops_by_class(model, tmp_path):
    invoke("clips", "--detections", ENA24 / "md_annotations.json", "--output", tmp_path, "--model", model)
    rows = table(tmp_path / "crops.csv")
    assert list(rows[0])[-4:] == [*SCORES, "suggested"]
    for row in rows:
        top = ORDER[int(probabilities(row).argmax())]
        assert row["suggested"] == top and (tmp_path / "suggested" / top / row["crop"]).is_file()
