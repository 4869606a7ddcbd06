"""The container's entrypoint (entrypoint/entrypoint.sh, POSIX sh), run here on the host: with a stub
`meerkat` that prints what it was given, and with the real one. tests/test_image.py runs it in the image."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "entrypoint" / "entrypoint.sh"
# The stub prints one line per call: its arguments, then the TensorBoard address it was handed.
STUB = '#!/bin/sh\necho "call: $* | host=${MEERKAT_TENSORBOARD_HOST-unset}"\n'


@pytest.fixture
def stub(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "meerkat").write_text(STUB)
    (bin_dir / "meerkat").chmod(0o755)
    return bin_dir


def entrypoint(*args, path: Path, env=None, wrap=()):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("APPTAINER_", "SINGULARITY_"))}
    environ = {**base, "PATH": f"{path}:{os.environ['PATH']}", **(env or {})}
    return subprocess.run(
        [*wrap, "sh", str(ENTRYPOINT), *map(str, args)], capture_output=True, text=True, env=environ, timeout=300
    )


def calls(result) -> list[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return [line.removeprefix("call: ") for line in result.stdout.splitlines() if line.startswith("call: ")]


def test_no_arguments_run_the_whole_job_on_the_default_folders(stub):
    assert calls(entrypoint(path=stub)) == ["run /data/Samples /data/Output | host=unset"]
    moved = entrypoint(path=stub, env={"MEERKAT_SAMPLES": "/in", "MEERKAT_OUTPUT": "/out"})
    assert calls(moved) == ["run /in /out | host=unset"]
    assert calls(entrypoint("doctor", path=stub)) == ["doctor | host=unset"]
    assert calls(entrypoint("--help", path=stub)) == ["--help | host=unset"]


def test_preprocessed_sets_given_as_variables_need_no_samples(stub, tmp_path):
    """Issue 22: the entrypoint looked for --preprocessed-train-set on the command line only, and
    checked a Samples folder that such a run never reads. `meerkat run` reads every option, from the
    command line or its variable, and does the checks itself: the entrypoint hands it over as is."""
    env = {"MEERKAT_PREPROCESSED_TRAIN_SET": "/data/Prev/train", "MEERKAT_PREPROCESSED_EVAL_SET": "/data/Prev/eval"}
    assert calls(entrypoint(path=stub, env=env)) == ["run /data/Samples /data/Output | host=unset"]
    given = entrypoint("run", "--epochs", "3", tmp_path / "S", tmp_path / "O", path=stub)
    assert calls(given) == [f"run --epochs 3 {tmp_path / 'S'} {tmp_path / 'O'} | host=unset"]


@pytest.mark.slow
def test_every_option_works_as_a_variable_through_the_entrypoint(tiny_run, tmp_path):
    """The real meerkat, every setting a MEERKAT_* variable, Samples empty: the run trains on the
    preprocessed sets instead of stopping at `Samples folder ... is empty`."""
    (tmp_path / "Samples").mkdir()
    backbone = dict(zip(("MEERKAT_BACKBONE", "MEERKAT_ALPHA", "MEERKAT_WEIGHTS"), TINY[1::2], strict=True))
    env = backbone | {
        "MEERKAT_SAMPLES": str(tmp_path / "Samples"),
        "MEERKAT_OUTPUT": str(tmp_path / "Output"),
        "MEERKAT_PREPROCESSED_TRAIN_SET": str(tiny_run / "records" / "train"),
        "MEERKAT_PREPROCESSED_EVAL_SET": str(tiny_run / "records" / "eval"),
        "MEERKAT_EPOCHS": "1",
    }
    result = entrypoint(path=Path(sys.executable).parent, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "Output" / "model" / "saved_model.pb").is_file()
    assert "Using preprocessed sets" in result.stdout + result.stderr


def hosts_network_has_a_device() -> bool:
    net = Path("/sys/class/net")
    return any("/devices/virtual/" not in os.readlink(i) for i in net.iterdir()) if net.is_dir() else False


@pytest.mark.skipif(not hosts_network_has_a_device(), reason="this machine's network has no device of its own")
def test_tensorboard_stays_on_loopback_on_the_hosts_network(stub):
    """Issue 22: `docker run --network host ... tensorboard` answered on every address of the host.
    Here the entrypoint runs in the host's network, as a container under --network host does."""
    assert calls(entrypoint("tensorboard", path=stub)) == ["tensorboard | host=unset"]
    mine = entrypoint("tensorboard", path=stub, env={"MEERKAT_TENSORBOARD_HOST": "10.1.2.3"})
    assert calls(mine) == ["tensorboard | host=10.1.2.3"]


# A network namespace of its own, as a container's, with a sysfs that shows its interfaces (only lo):
# a user namespace makes both without root.
OWN_NETWORK = [
    "unshare",
    "--user",
    "--map-root-user",
    "--net",
    "--mount",
    "sh",
    "-c",
    'mount -t sysfs s /sys && "$@"',
    "-",
]


def test_tensorboard_answers_on_every_address_of_a_network_of_its_own(stub):
    probe = subprocess.run([*OWN_NETWORK, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no user and network namespaces here: {probe.stderr.strip()}")
    assert calls(entrypoint("tensorboard", path=stub, wrap=OWN_NETWORK)) == ["tensorboard | host=0.0.0.0"]
    # Apptainer shares the host's network unless told otherwise: loopback, whatever it sees.
    apptainer = entrypoint("tensorboard", path=stub, wrap=OWN_NETWORK, env={"APPTAINER_CONTAINER": "/x.sif"})
    assert calls(apptainer) == ["tensorboard | host=unset"]


def test_the_docs_publish_tensorboard_on_loopback():
    """Issue 22: the documented `-p 6006:6006` published the page (crops, file paths) on every address."""
    texts = {p: p.read_text() for p in [ROOT / "README.md", ROOT / "meerkat" / "cli.py", *(ROOT / "docs").glob("*.md")]}
    published = [(p.name, m) for p, text in texts.items() for m in re.findall(r"docker run [^`\n]*?-p (\S+)", text)]
    assert published and all(m.startswith("127.0.0.1:") for _, m in published), published
    assert "-p 127.0.0.1:6006:6006" in texts[ROOT / "docs" / "containers.md"]


def test_sort_answers_on_every_address_of_a_network_of_its_own_only(tmp_path):
    """`docker run -p 127.0.0.1:8765:8765 ... sort` reaches the page only if it listens on the container's
    addresses; on the host's network, and under Apptainer, it stays on loopback (its token guards both)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "meerkat").write_text('#!/bin/sh\necho "call: $* | sort=${MEERKAT_SORT_HOST-unset}"\n')
    (bin_dir / "meerkat").chmod(0o755)
    probe = subprocess.run([*OWN_NETWORK, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no user and network namespaces here: {probe.stderr.strip()}")
    assert calls(entrypoint("sort", "/c", path=bin_dir, wrap=OWN_NETWORK)) == ["sort /c | sort=0.0.0.0"]
    apptainer = entrypoint("sort", "/c", path=bin_dir, wrap=OWN_NETWORK, env={"APPTAINER_CONTAINER": "/x.sif"})
    assert calls(apptainer) == ["sort /c | sort=unset"]
    if hosts_network_has_a_device():
        assert calls(entrypoint("sort", "/c", path=bin_dir)) == ["sort /c | sort=unset"]
