"""What the species end-to-end tests share: the command run in-process, CSV tables, a folder's
names but meerkat's hidden records of what it owns, and a small trained species model."""

import csv
from pathlib import Path

from conftest import TINY, make_species
from typer.testing import CliRunner

from meerkat.cli import app

ENV = {"SOURCE_DATE_EPOCH": "1767225600"}


def invoke(*args, code: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args], env=ENV)
    assert result.exit_code == code, result.output
    return result


def table(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def visible(folder: Path) -> list[str]:
    """The names in `folder`, sorted, but meerkat's hidden records of what it owns."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def trained_model(root: Path, classes) -> Path:
    """A model of `classes` trained on make_species' crops with the tiny backbone: deterministic scores, not
    meaningful ones. Its Samples are root/Samples."""
    samples = make_species(root / "Samples", classes, train=8, test=3)
    invoke("run", samples, root / "run", *TINY, "--epochs", "4")
    return root / "run" / "model"
