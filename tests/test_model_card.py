"""The model card (model/README.md, model/meerkat.json) and the threshold note of predict and scan."""

import json
import re
import shutil

import pytest
from test_report_page import SPECIES3, make_facts, make_species_facts

from meerkat.apply.card import threshold_note
from meerkat.report import model_card


@pytest.fixture
def card(tmp_path):
    facts = make_facts(tmp_path)
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"a stand-in for the graph")
    return facts, model_card.write(facts, model), model


def test_the_card_says_what_how_on_what_and_how_well(card):
    facts, c, model = card
    assert json.loads((model / "meerkat.json").read_text()) == c
    # What it classifies, the class order and the input contract.
    assert "positive" in c["task"] and c["classes"] == ["positive", "negative"] and c["positive_class"] == "positive"
    assert "JPEG or PNG" in c["input"]["image_bytes"] and "224" in c["input"]["resize"]
    assert c["output"]["scores"].endswith("column 0 = P(positive)")
    # The training data: counts and source folder.
    assert c["training_data"]["source"] == facts.source
    assert c["training_data"]["counts"]["training (all)"] == {"positive": 20, "negative": 20}
    assert c["training_data"]["counts"]["training: validation"] == {"positive": 3, "negative": 3}
    # The backbone and its weights sha256; the model's own.
    assert c["backbone"]["weights_sha256"] == "ab" * 32
    assert re.fullmatch(r"[0-9a-f]{64}", c["model_sha256"])
    # Eval metrics and the threshold table; the two thresholds worth knowing.
    assert c["metrics"]["roc_auc"] == facts.metrics["roc_auc"]
    assert [r["threshold"] for r in c["thresholds"]["table"]] == [r["threshold"] for r in facts.evaluation["table"]]
    rec = c["thresholds"]["recommended"]
    assert rec["threshold"] == facts.evaluation["recall_threshold"] == 0.1
    assert rec["recall"] >= 0.95 and rec["short"] == "recall >= 0.95" and "missed animal" in rec["why"]
    assert c["thresholds"]["best_accuracy"]["threshold"] == 0.6
    # Intended use, limits, version and revision.
    assert "review" in c["intended_use"]
    assert any("Trained on 40 crops (20 positive, 20 negative)" in limit for limit in c["limits"])
    assert any("12 eval crops with 6 positive" in limit for limit in c["limits"])
    assert c["meerkat"] == {"version": "0.1.0", "revision": "0123456789abcdef0123456789abcdef01234567"}


def test_the_readme_is_the_card_for_people(card):
    _, c, model = card
    readme = (model / "README.md").read_text()
    assert readme.startswith("# Model card")
    assert "**Recommended threshold: `--threshold 0.1`**" in readme
    assert "Best accuracy: `--threshold 0.6`" in readme
    assert "Column 0 of `scores` is P(positive)" in readme
    for heading in ("Classes and input contract", "Training data", "Backbone", "Eval metrics", "Threshold table",
                    "Intended use", "Limits", "Provenance"):  # fmt: skip
        assert f"## {heading}" in readme, heading
    assert "| 0.05 |" in readme and "DeepMeerkat" in readme and "ab" * 32 in readme
    assert "0123456789abcdef0123456789abcdef01234567" in readme


def test_eval_crops_held_out_from_training_are_called_optimistic(tmp_path):
    facts = make_facts(tmp_path)
    assert not model_card._eval_held_out(facts)  # Testing/ beside Training/
    facts.training_source = facts.source  # as if the eval crops had come from Training/
    card = model_card.build(facts, "0" * 64)
    assert card["training_data"]["eval_held_out_from_training"]
    assert any("optimistic" in limit for limit in card["limits"])


def test_threshold_note(card, tmp_path):
    _, _, model = card
    note = threshold_note(model, 0.5)
    assert note == "note: the model card recommends --threshold 0.1 (recall >= 0.95 on its eval set); using 0.5"
    assert threshold_note(model, 0.1) is None
    older = tmp_path / "older"  # exported before the card existed
    older.mkdir()
    assert threshold_note(older, 0.5) is None
    (older / "meerkat.json").write_text("{not json")
    assert threshold_note(older, 0.5) is None


def species_card(tmp_path, names):
    facts = make_species_facts(tmp_path, names)
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"a stand-in for the graph")
    return facts, model_card.write(facts, model), model


def test_a_species_card_lists_the_classes_with_counts_and_metrics_and_the_keep_rule(tmp_path):
    facts, c, model = species_card(tmp_path, SPECIES3)
    assert c["classes"] == list(SPECIES3) and c["background_classes"] == ["empty"]
    assert "positive_class" not in c and "Red fox, deer" in c["task"]
    assert c["output"]["scores"].startswith("float32 [N, 3]")
    m = c["metrics"]
    assert m["per_class"] == facts.metrics["per_class"] and m["macro_f1"] == facts.metrics["macro_f1"]
    assert m["top1"] == facts.metrics["top1"] and "top3" not in m
    assert c["thresholds"]["kept_when"] == "1 - P(empty) >= threshold"
    assert c["thresholds"]["recommended"]["threshold"] == facts.evaluation["recall_threshold"]
    readme = (model / "README.md").read_text()
    assert readme.startswith("# Model card: meerkat crop classifier, 3 classes")
    counts = facts.counts
    for name in SPECIES3:
        f = facts.metrics["per_class"][name]
        cells = [name, *(str(counts[s][name]) for s in counts)]
        cells += [model_card.number(f[k], 3) for k in ("precision", "recall", "f1")]
        assert "| " + " | ".join(cells) + " |" in readme, name
    assert "1 - P(empty) >= threshold" in readme and "Recommended threshold" in readme
    rec = c["thresholds"]["recommended"]["threshold"]
    note = threshold_note(model, 0.5 if rec != 0.5 else 0.4)
    assert note.startswith(f"note: the model card recommends --threshold {rec:g}")


def test_a_species_card_without_a_background_class_has_no_threshold(tmp_path):
    _, c, model = species_card(tmp_path, ("badger", "deer", "fox", "hare"))
    assert c["thresholds"]["recommended"] is None and "top3" in c["metrics"]
    readme = (model / "README.md").read_text()
    assert "no background class" in readme and "## Threshold table" not in readme
    assert threshold_note(model, 0.5) is None


# --- on a real run -----------------------------------------------------------------------------------


def recommended(tiny_run) -> float:
    return json.loads((tiny_run / "model" / "meerkat.json").read_text())["thresholds"]["recommended"]["threshold"]


def test_a_run_writes_the_card_beside_the_model(tiny_run):
    c = json.loads((tiny_run / "model" / "meerkat.json").read_text())
    run = json.loads((tiny_run / "report" / "run.json").read_text())
    metrics = json.loads((tiny_run / "report" / "metrics.json").read_text())
    assert c["model_sha256"] == run["model_sha256"]
    assert c["backbone"] == run["backbone"]
    assert c["thresholds"]["recommended"]["threshold"] == metrics["thresholds"]["recall_target"]["threshold"]
    assert c["meerkat"]["revision"] == run["meerkat_revision"]
    assert c["training_data"]["counts"]["eval"] == {"positive": 3, "negative": 3}
    assert (tiny_run / "model" / "README.md").is_file()
    owned = (tiny_run / "model" / ".meerkat-owned").read_text().split()
    assert "meerkat.json" in owned and "README.md" in owned


def test_predict_notes_the_cards_threshold_when_it_uses_another(tiny_run, cli, tmp_path):
    crops = tiny_run.parent / "Samples" / "Testing"
    rec = recommended(tiny_run)
    other = 0.5 if rec != 0.5 else 0.4
    note = f"note: the model card recommends --threshold {rec:g} (recall >= 0.95 on its eval set); using {other:g}"
    result = cli("predict", tiny_run / "model", crops, "--threshold", other)
    assert result.exit_code == 0, result.output
    assert note in result.stderr and "note:" not in result.stdout  # the CSV on stdout stays clean
    result = cli("predict", tiny_run / "model", crops, "--threshold", other, "--output", tmp_path / "s.csv")
    assert note in result.stdout
    assert "note:" not in cli("predict", tiny_run / "model", crops, "--threshold", rec).output
    older = shutil.copytree(tiny_run / "model", tmp_path / "older")
    (older / "meerkat.json").unlink()
    result = cli("predict", older, crops, "--threshold", other)
    assert result.exit_code == 0 and "note:" not in result.output


def test_scan_notes_the_cards_threshold_once(tiny_run, cli, tmp_path):
    from videos import moving_square

    video, _ = moving_square(tmp_path / "v.avi", frames=12)
    rec = recommended(tiny_run)
    other = 0.5 if rec != 0.5 else 0.4
    result = cli("scan", tiny_run / "model", video, "--output", tmp_path / "scans", "--threshold", other)
    assert result.exit_code == 0, result.output
    assert result.stdout.count(f"note: the model card recommends --threshold {rec:g}") == 1
    result = cli("scan", tiny_run / "model", video, "--output", tmp_path / "s2", "--threshold", rec)
    assert result.exit_code == 0 and "note:" not in result.output
