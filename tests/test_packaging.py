"""Every third-party package meerkat imports is declared in pyproject.toml, and locked."""

import ast
import re
import sys
import tomllib
from importlib import metadata

from conftest import ROOT


def _imported_top_levels() -> dict[str, str]:
    """Top-level module -> a file importing it, for every import in meerkat/ (lazy ones too)."""
    found = {}
    for path in sorted((ROOT / "meerkat").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], path.name)
    return found


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_distribution_is_a_declared_dependency():
    declared = {
        _normalised(re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0])
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    declared |= {"tensorflow"} if "tensorflow-cpu" in declared else set()  # the same package, by platform
    providers = metadata.packages_distributions()
    missing = {}
    for module, where in _imported_top_levels().items():
        if module == "meerkat" or module in sys.stdlib_module_names:
            continue
        dists = {_normalised(d) for d in providers.get(module, [])}
        assert dists, f"{module} (imported in {where}) is not installed"
        if not dists & declared:
            missing[module] = (where, sorted(dists))
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_every_declared_dependency_is_pinned_in_both_locks():
    for lock in ("cpu.lock", "gpu.lock"):
        pinned = {
            _normalised(m)
            for m in re.findall(r"^([A-Za-z0-9_.-]+)==", (ROOT / "requirements" / lock).read_text(), re.M)
        }
        for dep in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
            name = _normalised(re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0])
            if "platform_machine" in dep and ("tensorflow" in name):
                continue  # tensorflow-cpu on x86-64, tensorflow elsewhere: the lock holds the one this platform gets
            assert name in pinned, f"{name} is a dependency but not pinned in requirements/{lock}"
