"""Dockerfile (CPU) and Dockerfile.gpu (CUDA) are one file with two defaults: they may differ only in
their header comment and their `ARG VARIANT=` line, so a change to one cannot silently miss the other."""

import difflib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = {"cpu": ROOT / "Dockerfile", "gpu": ROOT / "Dockerfile.gpu"}
VARIANT = re.compile(r"ARG VARIANT=(\S+)\n")


def header_end(lines: list[str]) -> int:
    """Index of the `ARG VARIANT=` line; everything before it must be comments (the header)."""
    for i, line in enumerate(lines):
        if VARIANT.fullmatch(line):
            return i
        assert line.startswith("#") or not line.strip(), f"an instruction before `ARG VARIANT=`: {line!r}"
    raise AssertionError("no `ARG VARIANT=...` line")


@pytest.mark.parametrize("variant", sorted(FILES))
def test_variant_default(variant):
    lines = FILES[variant].read_text().splitlines(keepends=True)
    assert lines[header_end(lines)] == f"ARG VARIANT={variant}\n"
    assert sum(1 for line in lines if line.startswith("ARG VARIANT=")) == 1, "one ARG VARIANT default only"


def test_only_header_and_variant_differ():
    cpu, gpu = (FILES[v].read_text().splitlines(keepends=True) for v in ("cpu", "gpu"))
    cpu_end, gpu_end = header_end(cpu), header_end(gpu)
    drift = [
        (tag, i1, i2, j1, j2)
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=cpu, b=gpu, autojunk=False).get_opcodes()
        if tag != "equal" and (i2 > cpu_end + 1 or j2 > gpu_end + 1)
    ]
    diff = "".join(difflib.unified_diff(cpu, gpu, "Dockerfile", "Dockerfile.gpu", n=1))
    assert not drift, (
        "Dockerfile and Dockerfile.gpu differ below `ARG VARIANT=`: make the change in both (what differs "
        "belongs under VARIANT), e.g. carry Dockerfile's over with\n"
        "  { sed '/^ARG VARIANT=/q' Dockerfile.gpu; sed '1,/^ARG VARIANT=/d' Dockerfile; } > x && mv x Dockerfile.gpu\n"
        + diff
    )
    assert cpu[cpu_end + 1 :] == gpu[gpu_end + 1 :]
