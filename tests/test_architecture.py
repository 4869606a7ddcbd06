"""The house's shape holds: folders by part, small modules, a short README, docs whose links resolve."""

import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "meerkat"
PARTS = {"core", "samples", "embed", "train", "report", "apply", "megadetector", "video", "detections", "sort"}
MAX_MODULE_LINES = 500
MAX_README_LINES = 250


def test_the_architecture_page_is_the_code_as_it_is():
    check = subprocess.run(
        [sys.executable, "scripts/architecture.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_package_is_folders_by_part_each_with_a_docstring():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert folders == PARTS
    for part in PARTS:
        init = (PACKAGE / part / "__init__.py").read_text(encoding="utf-8")
        assert init.startswith('"""') and init.strip().endswith('"""'), f"{part}/__init__.py: a docstring only"


def test_no_module_is_over_500_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def test_the_readme_fits_on_a_few_screens():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= MAX_README_LINES


def _links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)  # not in code blocks
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_every_relative_link_in_the_readme_and_docs_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for link in _links(page):
            if re.match(r"[a-z]+:", link) or link.startswith("#"):
                continue  # a URL, or a heading on the same page
            target = link.split("#", 1)[0]
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {link}")
    assert not broken, broken
