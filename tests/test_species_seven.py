"""Seven species end to end, on ../shared/data/ena24_small: `clips --detections --by-class` sorts its 21
MegaDetector crops into species folders, the user names them as they like, adds an `empty` class, and
`meerkat run` trains an 8-class model (once for the module, tiny backbone) that predict, clips --model,
scan over a video, scan --detections (with MegaDetector's validator) and clips --detections --model
apply. The model's scores are checked for agreement between commands, not for what they are."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, TINY, needs_shared, write_species_image
from megadetector_tools import validate
from species import invoke, table, visible
from test_report_page import assert_renders_cleanly, browser_check, image_sources
from videos import moving_square

pytestmark = [pytest.mark.slow, needs_shared(), pytest.mark.usefixtures("outside_slurm")]
ENA24 = SHARED / "data" / "ena24_small"
MD = ENA24 / "md_annotations.json"
# The model's order: by name, case ignored, so `empty` sits between the capitalised species.
ORDER = ("American Black Bear", "American Crow", "Chicken", "Eastern Fox Squirrel", "empty", "Grey Fox",
         "Striped Skunk", "Virginia Opossum")  # fmt: skip
SCORES = [f"score_{c}" for c in ORDER]
EMPTY = str(ORDER.index("empty"))


def probabilities(row: dict) -> np.ndarray:
    return np.array([float(row[c]) for c in SCORES])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """clips --by-class of ena24_small, its folders renamed as labels.csv spells the species, plus `empty`
    (synthetic background crops, no animal), then `meerkat run`: the run folder."""
    root = tmp_path_factory.mktemp("seven")
    invoke("clips", "--detections", MD, "--output", root / "round1", "--by-class")
    typed = {r["label"].lower().replace(" ", "_"): r["label"] for r in table(ENA24 / "labels.csv")}
    samples = root / "Samples"
    for folder in (root / "round1" / "crops").iterdir():
        if folder.is_dir():
            # 3 crops a species are too few to hold any out: Testing holds the same crops as Training, so the
            # report's figures say nothing of accuracy (the run warns); they still exercise every class.
            for split in ("Training", "Testing"):
                shutil.copytree(folder, samples / split / typed[folder.name])
    for i in range(3):
        for split in ("Training", "Testing"):
            write_species_image(samples / split / "empty" / f"empty{i}.jpg", 6, seed=i)  # index 6: no disc
    invoke("run", samples, root / "run", *TINY, "--epochs", "4")
    return root / "run"


@pytest.fixture(scope="module")
def model(run) -> Path:
    return run / "model"


@pytest.fixture(scope="module")
def predicted(model) -> dict[str, dict]:
    """`meerkat predict` on the Testing crops: crop file name -> its row."""
    out = model.parents[1] / "predicted.csv"
    invoke("predict", model, model.parents[1] / "Samples" / "Testing", "--output", out)
    return {Path(r["path"]).name: r for r in table(out)}


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return moving_square(tmp_path_factory.mktemp("video") / "sq.avi")[0]


def test_by_class_sorts_the_21_crops_into_7_species_and_run_keeps_their_names_as_typed(run):
    training = run.parent / "Samples" / "Training"
    assert visible(training) == sorted(ORDER) and all(len(visible(training / c)) == 3 for c in ORDER)
    written = (run / "model" / "dict.txt").read_text(encoding="utf-8")
    assert written.splitlines() == list(ORDER)
    assert (run / "model" / "assets" / "dict.txt").read_text(encoding="utf-8") == written


def test_the_report_has_every_class_top3_and_an_8_by_8_matrix(run):
    found = json.loads((run / "report" / "metrics.json").read_text(encoding="utf-8"))
    assert list(found["per_class"]) == list(ORDER)
    assert all(found["per_class"][c]["support"] == 3 for c in ORDER)
    assert 0 <= found["top1"] <= found["top3"] <= 1
    matrix = found["confusion_matrix"]
    assert matrix["labels"] == list(ORDER)
    assert np.array(matrix["matrix"]).shape == (8, 8) and np.array(matrix["matrix"]).sum(axis=1).tolist() == [3] * 8
    assert found["kept_when"] == "1 - P(empty) >= threshold"  # `empty` is background: scan has a keep rule
    rows = table(run / "report" / "predictions.csv")
    assert list(rows[0])[:3] == ["image_uri", "label", "predicted"] and list(rows[0])[3:] == SCORES


def test_the_page_renders_and_the_card_lists_every_class(run, tmp_path):
    index = run / "report" / "index.html"
    text = index.read_text(encoding="utf-8")
    matrix = re.search(r'<table class="matrix">.*?</table>', text, re.S).group(0)
    assert matrix.count("<tr>") == 9 and all(c in matrix for c in ORDER)
    result = browser_check(index, tmp_path)
    assert_renders_cleanly(result, expected_images=len(image_sources(text)))
    card = (run / "model" / "README.md").read_text(encoding="utf-8")
    assert card.startswith("# Model card: meerkat crop classifier, 8 classes")
    assert "Background classes: `empty`." in card
    assert "have crops in both the train and the eval set" in card  # Testing = Training, said plainly
    for i, name in enumerate(ORDER):
        assert f"{i} = `{name}`" in card and f"\n| {name} | 3 |" in card


def test_predict_writes_a_score_per_class_in_dict_order_and_the_top_class(predicted):
    rows = list(predicted.values())
    assert list(rows[0]) == ["path", "label", *SCORES] and len(rows) == 24
    for row in rows:
        p = probabilities(row)
        assert abs(p.sum() - 1) < 1e-5 and row["label"] == ORDER[int(p.argmax())]


def test_clips_model_suggests_a_videos_crops_into_the_8_class_folders(model, video, tmp_path):
    invoke("clips", video, "--output", tmp_path, "--model", model)
    assert visible(tmp_path / "suggested") == sorted([*ORDER, "scores.csv"])
    rows = table(tmp_path / "suggested" / "scores.csv")
    assert rows and list(rows[0]) == ["video", "crop", *SCORES, "suggested"]
    for row in rows:
        top = ORDER[int(probabilities(row).argmax())]
        assert row["suggested"] == top and (tmp_path / "suggested" / top / row["crop"]).is_file()


def test_scan_over_a_video_names_the_top_class_of_its_best_box(model, video, tmp_path):
    invoke("scan", model, video, "--output", tmp_path, "--threshold", "0")
    row = table(tmp_path / "scan.csv")[0]
    boxes = table(tmp_path / "sq" / "annotations.csv")
    assert row["status"] == "done" and int(row["kept_frames"]) == len({r["frame"] for r in boxes}) > 0
    assert row["top_class"] == max(boxes, key=lambda r: float(r["score"]))["label"] and row["top_class"] in ORDER
    found = json.loads((tmp_path / "detections.json").read_text(encoding="utf-8"))
    assert found["classification_categories"] == {str(i): c for i, c in enumerate(ORDER)}
    for box, det in zip(boxes, found["images"][0]["detections"], strict=True):
        assert box["label"] == ORDER[int(det["classifications"][0][0])]
        assert abs(float(box["score"]) - (1 - dict(det["classifications"])[EMPTY])) < 2e-6


def test_scan_detections_writes_the_8_classes_as_megadetectors_validator_reads_them(model, predicted, tmp_path):
    invoke("scan", model, "--detections", MD, "--output", tmp_path, "--threshold", "0.5")
    found = json.loads((tmp_path / "detections.json").read_text(encoding="utf-8"))
    assert found["classification_categories"] == {str(i): c for i, c in enumerate(ORDER)}
    rows = {r["file"]: r for r in table(tmp_path / "scan.csv")}
    assert len(found["images"]) == len(rows) == 21
    for image in found["images"]:
        (det,) = image["detections"]  # one box an image at the file's threshold
        scores = [s for _, s in det["classifications"]]
        assert len(scores) == 8 and scores == sorted(scores, reverse=True)
        # The same crop gets the same scores from scan --detections as from predict on clips' crop file.
        crop = predicted[f"{Path(image['file']).stem}_0.jpg"]
        np.testing.assert_allclose([dict(det["classifications"])[str(i)] for i in range(8)], probabilities(crop),
                                   atol=2e-6)  # fmt: skip
        row = rows[image["file"]]
        assert row["top_class"] == crop["label"] == ORDER[int(det["classifications"][0][0])]
        assert abs(float(row["max_score_animal"]) - (1 - dict(det["classifications"])[EMPTY])) < 2e-6
    checked = validate([(tmp_path / "detections.json", ENA24)])[0]
    assert checked["classification_category_id_to_count"] == {str(i): 21 for i in range(8)}


def test_clips_detections_model_scores_and_suggests_ena24s_crops(model, predicted, tmp_path):
    invoke("clips", "--detections", MD, "--output", tmp_path, "--model", model)
    rows = table(tmp_path / "crops.csv")
    assert len(rows) == 21 and list(rows[0])[-9:] == [*SCORES, "suggested"]
    assert visible(tmp_path / "suggested") == sorted([*ORDER, "scores.csv"])
    for row in rows:
        assert row["suggested"] == predicted[row["crop"]]["label"] == ORDER[int(probabilities(row).argmax())]
        np.testing.assert_allclose(probabilities(row), probabilities(predicted[row["crop"]]), atol=2e-6)
        assert (tmp_path / "suggested" / row["suggested"] / row["crop"]).is_file()
