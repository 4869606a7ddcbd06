"""An upgrade redoes what the changed code makes, and only that: the code keys of codeversion.py.

The tests point the keys at a copy of the package and edit it, as an upgrade edits the installed
one; what runs is the same code, so only the keys' view of it changes.
"""

import json
import shutil

import pytest
from conftest import TINY, make_samples

from meerkat.core import codeversion


@pytest.fixture
def upgradable(tmp_path, monkeypatch):
    """A copy of the package that the code keys read; `edit(module, text)` appends to a module."""
    copy = tmp_path / "installed" / "meerkat"
    shutil.copytree(codeversion.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(codeversion, "PACKAGE", copy)
    codeversion.key.cache_clear()
    codeversion._imports.cache_clear()

    def edit(module: str, text: str = "\n# upgraded\n") -> None:
        with open(copy.joinpath(*module.split(".")).with_suffix(".py"), "a", encoding="utf-8") as f:
            f.write(text)
        codeversion.key.cache_clear()
        codeversion._imports.cache_clear()

    yield edit
    codeversion.key.cache_clear()
    codeversion._imports.cache_clear()


def keys() -> dict[str, str]:
    return {part: codeversion.key(part) for part in codeversion.PARTS}


@pytest.mark.parametrize(
    "module, changed",
    [
        ("embed.decode", {"embedding", "shards", "model"}),  # the embeddings, and baked into the model
        ("video.motion", {"clips", "scan", "detection-scan", "detection-clips"}),  # the crop rule, for both kinds
        ("report.model_card", {"report"}),
        ("apply.card", {"report", "clips", "scan", "detection-scan", "detection-clips"}),  # the card's threshold note
        ("megadetector.read", {"scan", "detection-scan", "detection-clips"}),  # both read or write MegaDetector's
        ("train.fit", {"model"}),
        ("report.page", {"report"}),
        ("cli", set()),
        ("core.atomic", set()),
        ("core.progress", set()),
    ],
)
def test_a_module_changes_the_keys_of_the_outputs_it_makes(upgradable, module, changed):
    before = keys()
    upgradable(module)
    after = keys()
    assert {part for part in before if before[part] != after[part]} == changed


def test_the_keys_follow_imports_a_new_module_brings(upgradable):
    before = keys()
    upgradable("video.helpers_new", "X = 1\n")
    assert keys() == before  # nothing imports it yet
    late_import = "\ndef _late():\n    from meerkat.video import helpers_new\n\n    return helpers_new.X\n"
    upgradable("video.motion", late_import)
    assert "video.helpers_new" in codeversion.modules("clips")
    upgradable("video.helpers_new", "X = 2\n")
    assert codeversion.key("clips") != before["clips"]


def test_every_part_is_made_by_modules_that_exist_and_none_is_empty():
    for part, (entry, _) in codeversion.PARTS.items():
        made_by = codeversion.modules(part)
        assert set(entry) <= set(made_by), part
        assert not set(made_by) & codeversion.NO_EFFECT, part
    assert len(set(keys().values())) == len(codeversion.PARTS)


@pytest.mark.slow
def test_an_upgrade_retrains_when_training_code_changed_and_redoes_only_the_report_when_only_it_did(
    tmp_path, cli, upgradable
):
    samples = make_samples(tmp_path / "Samples", train=(4, 4), test=(2, 2))
    out = tmp_path / "out"
    assert cli("run", samples, out, *TINY, "--epochs", 1).exit_code == 0

    upgradable("cli")  # a new command or a help text: the finished run stands
    assert "nothing to do" in cli("run", samples, out, *TINY, "--epochs", 1).output

    upgradable("report.page")
    redo = cli("run", samples, out, *TINY, "--epochs", 1)
    assert "redoing only the report" in redo.output and "report code changed" in redo.output
    assert "Training on" not in redo.output
    assert json.loads((out / "report" / "run.json").read_text())["report_code"] == codeversion.key("report")
    assert "nothing to do" in cli("run", samples, out, *TINY, "--epochs", 1).output

    upgradable("train.fit")
    retrained = cli("run", samples, out, *TINY, "--epochs", 1)
    assert "Training on" in retrained.output and "Reusing finished shard" in retrained.output

    upgradable("embed.decode")  # the embeddings themselves: shards and cache entries are made again
    again = cli("run", samples, out, *TINY, "--epochs", 1)
    assert "Reusing finished shard" not in again.output and "0 embeddings from the cache" in again.output


def test_revision_from_the_environment_or_the_checkout(monkeypatch):
    import re
    from pathlib import Path

    from conftest import ROOT

    monkeypatch.setenv("MEERKAT_REVISION", "f00dfeed")
    assert codeversion.revision() == "f00dfeed"
    monkeypatch.delenv("MEERKAT_REVISION")
    if (ROOT / ".git").exists() and shutil.which("git"):
        assert re.fullmatch(r"[0-9a-f]{40}(\+modified)?", codeversion.revision())
    monkeypatch.setattr(codeversion, "PACKAGE", Path("/nowhere/meerkat"))  # installed, not a checkout
    assert codeversion.revision() == "unknown"


def test_an_upgrade_recuts_a_videos_crops_only_when_the_video_code_changed(tmp_path, cli, upgradable):
    from videos import moving_square

    video, _ = moving_square(tmp_path / "sq.avi")
    out = tmp_path / "crops"
    assert "Reusing" not in cli("clips", video, "--output", out).output
    upgradable("report.page")  # not the code that cuts crops
    assert "Reusing the finished crops" in cli("clips", video, "--output", out).output
    upgradable("video.motion")
    again = cli("clips", video, "--output", out)
    assert again.exit_code == 0 and "Reusing" not in again.output
    assert (out / "sq" / "parameters.csv").read_text().count(codeversion.key("clips")) == 1


def test_a_modules_own_data_file_counts_as_its_code(upgradable):
    before = keys()
    with open(codeversion.PACKAGE / "report" / "page.css", "a", encoding="utf-8") as f:  # the copy's
        f.write("\nbody { color: black; }\n")
    codeversion.key.cache_clear()
    assert {part for part, key in keys().items() if key != before[part]} == {"report"}
