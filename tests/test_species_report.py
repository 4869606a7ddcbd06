"""A whole `meerkat run` of three species (issue 24): the report, the card, the per-class figures of
training in the log and TensorBoard, and a report redone from predictions.csv."""

import csv
import json
import re

import pytest
from conftest import TINY, make_species
from test_report_page import assert_renders_cleanly, browser_check, image_sources, screenshot

from meerkat.core import atomic

SPECIES = ("deer", "empty", "Red fox")  # the model's order: by name, case ignored


@pytest.mark.slow
def test_a_species_run_writes_a_report_with_the_matrix_that_renders(tmp_path, cli):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    samples = make_species(tmp_path / "Samples", classes=SPECIES)
    out = tmp_path / "out"
    result = cli("run", samples, out, *TINY, "--epochs", "3")
    assert result.exit_code == 0, result.output
    # Training: each class's recall each epoch, in the log and as TensorBoard curves.
    assert re.search(r"Recall per class, step \d+, validation set: deer [\d.]+, empty [\d.]+, Red fox", result.output)
    assert re.search(r"Eval set: top-1 accuracy [\d.]+, macro-F1 [\d.]+ on 9 images", result.output)
    tags = EventAccumulator(str(out / "logs" / "validation")).Reload().Tags()["tensors"]
    assert {f"recall/{name}" for name in SPECIES} <= set(tags), tags
    eval_tags = EventAccumulator(str(out / "logs" / "eval")).Reload().Tags()["tensors"]
    assert {"eval/top1", "eval/macro_f1", "eval/f1/Red fox", "confusion_matrix", "pr_curve/pr_curves"} <= set(eval_tags)
    # metrics.json and predictions.csv speak three classes.
    report = out / "report"
    m = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    assert list(m["per_class"]) == list(SPECIES) and len(m["confusion_matrix"]["matrix"]) == 3
    assert m["kept_when"] == "1 - P(empty) >= threshold" and (report / "thresholds.csv").is_file()
    with open(report / "predictions.csv", newline="", encoding="utf-8") as f:
        assert next(csv.reader(f)) == ["image_uri", "label", "predicted", "score_deer", "score_empty", "score_Red fox"]
    card = json.loads((out / "model" / "meerkat.json").read_text(encoding="utf-8"))
    assert card["classes"] == list(SPECIES) and card["metrics"]["per_class"] == m["per_class"]
    # The page, with its 3 x 3 matrix, renders in Chromium.
    index = report / "index.html"
    text = index.read_text(encoding="utf-8")
    assert re.search(r'<table class="matrix">.*?</table>', text, re.S).group(0).count("<tr>") == 4
    checked = browser_check(index, tmp_path)
    assert_renders_cleanly(checked, expected_images=len(image_sources(text)))
    screenshot(index, tmp_path / "species-run.png", checked["height"], tmp_path)
    # A report redone from predictions.csv (the model finished, its page not) is the same report.
    before = {name: (report / name).read_bytes() for name in ("metrics.json", "predictions.csv", "thresholds.csv")}
    run_file = report / "run.json"
    run = json.loads(run_file.read_text())
    atomic.write_text(run_file, json.dumps({**run, "report_problems": ["the report page"]}))  # as a failed page left it
    result = cli("run", samples, out, *TINY, "--epochs", "3")
    assert result.exit_code == 0, result.output
    assert "redoing only the report" in result.output
    assert {name: (report / name).read_bytes() for name in before} == before
    assert json.loads(run_file.read_text())["report_problems"] == []
