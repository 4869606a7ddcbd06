import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from meerkat.cli import app

# Hermetic: a caller's MEERKAT_* settings (the README invites exporting them) must not change what
# the tests run. Subprocesses inherit this cleaned environment.
for _name in [n for n in os.environ if n.startswith("MEERKAT_")]:
    del os.environ[_name]

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SAMPLES = SHARED / "data" / "deepmeerkat_samples"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_0.35_224_no_top.weights.h5"
# A fast, download-free backbone for tests of the plumbing: the small ImageNet MobileNetV2 from
# ../shared when it is there (real features, so scores mean something), else random weights.
TINY = ["--backbone", "mobilenet_v2", "--alpha", "0.35", "--weights", str(WEIGHTS) if WEIGHTS.exists() else "none"]


MISSING_SHARED = [p for p in (SAMPLES, WEIGHTS) if not p.exists()]


# Fixtures that train, export or score with a real model (seconds to a minute each). A test that uses
# one is slow: `make test-fast` (-m "not slow") leaves it out, `make test` runs it.
MODEL_FIXTURES = frozenset(
    {"tiny_run", "messy", "real_run", "records", "noisy_run", "reference", "stopped_reference", "model",
     "scored", "with_workers", "array_run", "runs", "inputs", "page"}
)  # fmt: skip


def pytest_collection_modifyitems(items):
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def needs_shared():
    return pytest.mark.skipif(
        bool(MISSING_SHARED),
        reason=f"shared test data not found: {', '.join(map(str, MISSING_SHARED))} (it sits beside the repo)",
    )


def pytest_sessionstart(session):
    # In CI a missing ../shared would quietly skip every accuracy test and swap in random weights.
    if os.environ.get("CI") == "true" and MISSING_SHARED:
        pytest.exit(f"CI=true but the shared test data is missing: {', '.join(map(str, MISSING_SHARED))}", returncode=1)


def write_image(path: Path, seed: int = 0, size=(96, 128), ext=None, positive=False) -> Path:
    """A small real image file; positives get a bright disc so a head can tell them apart."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 120, (*size, 3), dtype=np.uint8)
    if positive:
        cv2.circle(img, (size[1] // 2, size[0] // 2), min(size) // 3, (0, 200, 255), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(ext or path.suffix or ".jpg", img)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def make_samples(
    root: Path, train=(6, 8), test=(3, 3), names=("Training", "Testing", "Positives", "Negatives")
) -> Path:
    """Samples/{Training,Testing}/{Positives,Negatives} of generated JPEGs; test=None: no Testing."""
    tr, te, pos, neg = names
    for split, counts in ((tr, train), (te, test)):
        if counts is None:
            continue
        for i in range(counts[0]):
            write_image(root / split / pos / f"p{i}.jpg", seed=zlib.crc32(f"{split}p{i}".encode()), positive=True)
        for i in range(counts[1]):
            write_image(root / split / neg / f"n{i}.jpg", seed=zlib.crc32(f"{split}n{i}".encode()))
    return root


SPECIES = ("Red fox", "deer", "Élan", "empty")  # names as users type them: a space, case, an accent


def write_species_image(path: Path, index: int, seed: int) -> Path:
    """A small real image of class `index`: a disc of that class's colour and place (none for the last)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 120, (96, 128, 3), dtype=np.uint8)
    colours = ((0, 200, 255), (255, 80, 0), (60, 255, 60), (200, 0, 200), (255, 255, 255), (0, 0, 255))
    if index < 6:
        cv2.circle(img, (24 + 16 * index, 48), 22, colours[index], -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cv2.imencode(path.suffix, img)[1].tobytes())
    return path


def make_species(root: Path, classes=SPECIES, train=6, test: int | None = 3) -> Path:
    """Samples/{Training,Testing}/<class>/ of generated JPEGs, one look a class; test=None: no Testing."""
    for split, count in (("Training", train), ("Testing", test)):
        for index, name in enumerate(classes):
            for i in range(count or 0):
                write_species_image(
                    root / split / name / f"{split[:2]}{index}_{i}.jpg", index, zlib.crc32(f"{split}{name}{i}".encode())
                )
    return root


def embed(cli, docs, prefix, *extra, csv_name="trainingdata.csv", env=None):
    """`meerkat preprocess` of a docs folder's CSV with the tiny backbone; `extra` options after."""
    csv = docs / csv_name
    return cli(
        "preprocess",
        "--input-path",
        csv,
        "--input-dict",
        docs / "dict.txt",
        "--output-path",
        prefix,
        *TINY,
        *extra,
        env=env,
    )


def fit(cli, train_data, eval_data, output, *extra, env=None):
    """`meerkat train` on preprocessed sets; `extra` options after."""
    return cli("train", "--train-data", train_data, "--eval-data", eval_data, "--output-dir", output, *extra, env=env)


@pytest.fixture(scope="session", autouse=True)
def own_state_folder(tmp_path_factory):
    """Where xattrs are missing, core.ownership keeps its records in $XDG_STATE_HOME/meerkat: the tests' own,
    not the developer's ~/.local/state (subprocesses inherit it)."""
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))


# SLURM's array variables: inside an array job, scan and preprocess would take only their task's share.
SLURM = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX",
         "SLURM_ARRAY_TASK_STEP")  # fmt: skip


@pytest.fixture
def outside_slurm(monkeypatch):
    """The test runs as outside a SLURM array job, even inside one (`pytestmark = usefixtures(...)`)."""
    for name in SLURM:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args, env=None):
        return runner.invoke(app, [str(a) for a in args], env=env)

    return invoke


FRESH = """
import json, sys
from typer.testing import CliRunner
from meerkat.cli import app
outputs = []
for args, code in json.loads(sys.argv[1]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, result.output
    outputs.append(result.output)
print(json.dumps({"tensorflow": "tensorflow" in sys.modules, "outputs": outputs}))
"""


def in_fresh_process(*invocations, env=None) -> tuple[bool, list[str]]:
    """Each (arguments, exit code) through the CLI, in order, in one new Python process, as a user's
    commands start: (whether TensorFlow was imported, each invocation's output)."""
    calls = json.dumps([[[str(a) for a in args], code] for args, code in invocations])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")} | (env or {})
    proc = subprocess.run([sys.executable, "-c", FRESH, calls], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    return found["tensorflow"], found["outputs"]


def assert_user_error(result, code: int, *words):
    """A user error: the given exit code, one `error:` line naming the thing, no traceback."""
    out = result.output
    assert result.exit_code == code, out
    assert "Traceback" not in out, out
    lines = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out
    for w in words:
        assert str(w) in lines[0], out
    assert isinstance(result.exception, SystemExit)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A whole `meerkat run` on generated crops with the random tiny backbone: for contract checks."""
    root = tmp_path_factory.mktemp("tiny")
    samples = make_samples(root / "Samples")
    out = root / "out"
    result = CliRunner().invoke(app, ["run", str(samples), str(out), *TINY, "--epochs", "3"])
    assert result.exit_code == 0, result.output
    return out


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
