"""`meerkat sort --model`: a model guesses every crop's class, once; the page orders the crops by
how unsure it is, and a later session reuses the scores. The model is trained once for the module
on conftest's make_species crops with the tiny backbone: its scores are deterministic, not meaningful."""

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from species import trained_model

from meerkat.sort.session import Session

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("outside_slurm")]
CLASSES = ("Red fox", "deer", "empty")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return trained_model(tmp_path_factory.mktemp("species"), CLASSES)


@pytest.fixture
def crops(model, tmp_path) -> Path:
    """The model's Testing crops, in video-like folders, plus one file that is no image."""
    out = tmp_path / "crops"
    for i, crop in enumerate(sorted((model.parents[1] / "Samples" / "Testing").rglob("*.jpg"))):
        (out / f"v{i % 3}").mkdir(parents=True, exist_ok=True)
        shutil.copy(crop, out / f"v{i % 3}" / f"c{i}.jpg")
    (out / "v0" / "broken.jpg").write_bytes(b"not a jpeg at all")
    return out


def test_the_model_guesses_each_crop_and_the_least_sure_come_first(model, crops, tmp_path):
    from meerkat.apply.scorer import Scorer
    from meerkat.samples.imagefiles import read_for_model

    session = Session(crops, tmp_path / "Samples", model)
    try:
        assert "the model" in session.summary()["source"]
        assert [rel for rel, _ in session.unscored] == ["v0/broken.jpg"]
        items = session.pending("uncertain")
        assert len(items) == 10  # the broken file stays listed, with no guess, and comes first
        assert items[0]["name"] == "v0/broken.jpg" and items[0]["guess"] is None
        scorer = Scorer(model)
        margins = []
        for item in items[1:]:
            p = scorer.probabilities([read_for_model(crops / item["name"])])[0]
            assert item["guess"] == scorer.classes.names[int(np.argmax(p))]
            assert item["score"] == pytest.approx(p.max(), abs=1e-3)
            margins.append(np.sort(p)[-1] - np.sort(p)[-2])
        assert margins == sorted(margins)  # smallest margin between the top two first
        # The model's classes are offered before any folder exists, in the model's order.
        assert [c["name"] for c in session.class_list()] == ["deer", "empty", "Red fox"]
    finally:
        session.close()


def test_a_later_session_scores_only_new_or_changed_crops(model, crops, tmp_path, caplog):
    samples = tmp_path / "Samples"
    Session(crops, samples, model).close()
    cache = next((samples / "meerkat-sort").glob("scores-*.csv"))
    first = cache.read_bytes()
    caplog.set_level(logging.INFO, logger="meerkat")
    caplog.clear()
    session = Session(crops, samples, model)
    before = session.pending("uncertain")
    session.close()
    # Only the file no model can read is tried again.
    assert [r.getMessage()[:15] for r in caplog.records if "Scoring" in r.getMessage()] == ["Scoring 1 crop "]
    # A crop rewritten since: scored again, alone.
    changed = crops / "v1" / "c1.jpg"
    shutil.copy(crops / "v2" / "c2.jpg", changed)
    os.utime(changed, ns=(1, 1))
    caplog.clear()
    session = Session(crops, samples, model)
    after = {i["name"]: i for i in session.pending("uncertain")}
    session.close()
    scored = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Scoring")]
    assert len(scored) == 1 and scored[0].startswith("Scoring 2 crops")  # the changed crop and the broken one
    assert after["v1/c1.jpg"]["guess"] == after["v2/c2.jpg"]["guess"]
    assert {i["name"]: i["guess"] for i in before if i["name"] != "v1/c1.jpg"} == {
        n: i["guess"] for n, i in after.items() if n != "v1/c1.jpg"
    }
    assert cache.read_bytes() != first
