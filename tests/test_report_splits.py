"""The page and the model card say how the splits were grouped (report/splits.py), so a reader knows
whether one video could be on both sides of the figures."""

import html
import json

import pytest
from conftest import TINY, make_samples

from meerkat.report import splits

GROUPED = {
    "group_by": "auto",
    "train_groups": 30,
    "eval_groups": 14,
    "groups_in_train_and_eval": 6,
    "groups_in_train_and_eval_examples": ["171021aa", "171115aa", "a", "b", "c"],
    "validation_split_by_file": ["positive"],
}


def test_the_sentences_name_the_mode_the_groups_the_shared_ones_and_the_classes_split_by_file():
    lines = splits.sentences({"split_grouping": GROUPED})
    assert lines[0].startswith("Splits grouped by video or image from meerkat's crop names, else the camera")
    assert "30 groups in the train set, 14 in the eval set" in lines[0]
    assert "6 groups have crops in both the train and the eval set (171021aa, 171115aa, a, b, c, ...)" in lines[1]
    assert "validation part of positive was split by file" in lines[2]
    assert not splits.leak_free({"split_grouping": GROUPED})
    apart = {**GROUPED, "groups_in_train_and_eval": 0, "validation_split_by_file": []}
    assert len(splits.sentences({"split_grouping": apart})) == 1 and splits.leak_free({"split_grouping": apart})
    none = splits.sentences({"split_grouping": {**apart, "group_by": "none"}})
    assert none[0].startswith("Splits not grouped (--group-by none)")
    assert splits.sentences({}) == []


@pytest.mark.slow
@pytest.mark.parametrize("group_by", ["auto", "none"])
def test_a_run_held_out_without_testing_says_its_grouping_and_warns_only_when_videos_may_straddle(
    tmp_path, cli, group_by
):
    samples = make_samples(tmp_path / "S", train=(24, 24), test=None)
    out = tmp_path / "out"
    result = cli("run", samples, out, *TINY, "--epochs", 1, "--group-by", group_by)
    assert result.exit_code == 0, result.output
    card = (out / "model" / "README.md").read_text(encoding="utf-8")
    page = (out / "report" / "index.html").read_text(encoding="utf-8")
    said = splits.sentences(json.loads((out / "report" / "run.json").read_text()))
    assert said and all(line in card for line in said)
    assert html.escape(said[0].split(":")[0]) in page
    # Each generated crop is a file of its own (no video in its name): grouped, none is on both sides.
    assert ("the metrics are optimistic for new videos" in card) == (group_by == "none")
