"""Dockerfile (CPU) and Dockerfile.gpu (CUDA) are one file with two defaults: they may differ only in
their header comment and their `ARG VARIANT=` line, so a change to one cannot silently miss the other."""

import difflib
import json
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


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of each instruction, continuation lines joined, comments left out."""
    out, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.startswith("#")):
            continue
        current += line.removesuffix("\\") + " "
        if not line.endswith("\\"):
            keyword, _, rest = " ".join(current.split()).partition(" ")
            out.append((keyword.upper(), rest))
            current = ""
    return out


def test_no_shell_instruction_every_chain_sets_eu():
    """podman builds the image in OCI format (that is what makes its id reproducible), and OCI has no
    SHELL: podman ignores it with a warning, so a RUN relying on `SHELL ["/bin/sh", "-euc"]` would go
    on past a failed command. Each RUN that chains with `;` says `set -eu` itself."""
    text = FILES["cpu"].read_text()
    assert not [line for line in text.splitlines() if line.startswith("SHELL")]
    runs = [rest for keyword, rest in instructions(text) if keyword == "RUN"]
    assert len(runs) >= 4
    for run in runs:
        shell = re.sub(r'"[^"]*"', '""', run)  # not the `;` of a quoted python -c program
        assert ";" not in shell.replace("set -eu;", "") or "set -eu;" in shell, run


def test_the_last_run_records_the_image_files():
    """The digest of the files must be taken after every file is in place: by the runtime stage's
    last RUN, with no COPY, ADD or RUN after it in that stage."""
    text = FILES["cpu"].read_text()
    runtime = text[text.index("AS runtime\n") : text.index("AS test\n")]
    last = runtime.rindex("python -P -m meerkat.doctor --write /opt/meerkat/image.json")
    assert not [w for w in ("\nCOPY ", "\nADD ", "\nRUN ") if runtime.find(w, last) != -1]


def unkeyed_expansions(text: str) -> list[str]:
    """Steps that expand a build argument where podman 4.3's layer cache does not see its value.

    podman keys a cached RUN on every argument's value, a COPY on the copied files' digest, a FROM
    on its image; any other step (LABEL, ENV, USER, ...) on its text before expansion. Such a step
    may expand only arguments that a RUN before it in its stage already keyed."""
    found, declared, keyed = [], set(), set()
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            declared, keyed = set(), set()
        elif keyword == "ARG":
            declared.add(rest.split("=")[0].strip())
        elif keyword == "RUN":
            keyed |= declared
        elif keyword not in ("COPY", "ADD"):
            used = set(re.findall(r"\$\{?(\w+)", rest)) & declared
            found += [f"{keyword} {rest[:60]}... expands {name}" for name in sorted(used - keyed)]
    return found


def test_every_argument_a_cached_step_expands_is_keyed_by_a_run_before_it():
    """A CI run on a warm storage rebuilt the image to another id: the LABEL that expands REVISION
    was taken from the cache of an earlier commit's build, and the history named that build's
    intermediate images."""
    assert unkeyed_expansions(FILES["cpu"].read_text()) == []
    assert unkeyed_expansions("FROM x\nARG REVISION\nLABEL revision=${REVISION}\nRUN true\n") == [
        "LABEL revision=${REVISION}... expands REVISION"
    ]
    assert unkeyed_expansions("FROM x\nARG A\nRUN true\nARG B\nENV A=$A \\\n  B=${B}\n") == [
        "ENV A=$A B=${B}... expands B"
    ]


def test_files_digest_is_content_mode_and_links_not_times(tmp_path):
    import os

    from meerkat.doctor import files_digest

    root = tmp_path / "opt"
    (root / "venv" / "bin").mkdir(parents=True)
    (root / "venv" / "lib.py").write_text("x = 1\n")
    (root / "venv" / "bin" / "python").symlink_to("/usr/bin/python3")
    info = root / "image.json"
    info.write_text("{}")
    first, count = files_digest(roots=[root], skip=[info])
    assert first.startswith("sha256:") and count == 5  # opt, venv, venv/bin, bin/python, lib.py: not image.json
    os.utime(root / "venv" / "lib.py", (0, 0))
    info.write_text('{"files": "changed"}')
    assert files_digest(roots=[root], skip=[info]) == (first, count)
    (root / "venv" / "lib.py").chmod(0o600)
    assert files_digest(roots=[root], skip=[info])[0] != first
    (root / "venv" / "lib.py").chmod(0o644)
    assert files_digest(roots=[root], skip=[info])[0] == first
    (root / "venv" / "lib.py").write_text("x = 2\n")
    assert files_digest(roots=[root], skip=[info])[0] != first


def test_doctor_shows_the_record_and_the_id_podman_gives(tmp_path, monkeypatch):
    """What `meerkat doctor` prints of the image: the build's record (/opt/meerkat/image.json), the id
    podman writes into /run/.containerenv under --privileged (empty otherwise), Apptainer's SIF path."""
    from meerkat.doctor import image_lines

    monkeypatch.delenv("APPTAINER_CONTAINER", raising=False)
    monkeypatch.delenv("SINGULARITY_CONTAINER", raising=False)
    info, env = tmp_path / "image.json", tmp_path / "containerenv"
    assert image_lines(info, env) == ["image: none (meerkat is not running from its container image)"]
    files = "sha256:" + "ab" * 32
    record = {"files": files, "count": 7, "roots": ["/opt", "/usr"], "version": "0.1.0", "variant": "cpu"}
    info.write_text(json.dumps(record | {"revision": "f00d", "created": "2026-11-30T04:23:24Z"}))
    env.write_text("")
    lines = image_lines(info, env)
    assert lines[0] == "image: meerkat 0.1.0 cpu, revision f00d, created 2026-11-30T04:23:24Z"
    assert lines[1].startswith(f"image files: {files} (7 entries in /opt /usr at build time; ") and len(lines) == 2
    env.write_text(
        'engine="podman-4.3.1"\nname="x"\nid="c0ffee"\nimage="localhost/meerkat:cpu"\nimageid="' + "cd" * 32 + '"\n'
    )
    monkeypatch.setenv("APPTAINER_CONTAINER", "/home/u/meerkat.sif")
    assert image_lines(info, env)[2:] == [
        f"image id: sha256:{'cd' * 32} (podman-4.3.1, localhost/meerkat:cpu)",
        "SIF: /home/u/meerkat.sif (its own sha256: sha256sum on the host)",
    ]
