"""Names as users type them, through every stage: createdocs -> preprocess -> train -> predict.

Hypothesis draws the crops' file names: commas, quotes, spaces, shell and CSV metacharacters,
non-ASCII letters and emoji, leading dashes, names up to the file system's 255 bytes. Every crop
must reach the docs CSVs, the records, the report and predict's CSV under its exact path.

Names whose bytes are not UTF-8 (a Latin-1 export's `colibr\xed.jpg`) are held by Python as lone
surrogates. They go into the CSVs as their own bytes, so that a CSV read back with
core.atomic.TEXT names the file on disk; JSON, HTML, Markdown and the logs stay valid UTF-8.
"""

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import SAMPLES, TINY, make_samples, needs_shared, write_image
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from meerkat.cli import app

pytestmark = pytest.mark.slow

# What people put in crop names; no "/" or NUL (no file system allows them), no control characters
# (the typed examples below have a tab).
ODD = " ,;\"'`-_.()[]{}#$%&!@~^+=é中ñß😀"
STEM = st.text(alphabet=st.sampled_from(list("abcXYZ09") + list(ODD)), min_size=1, max_size=60)
LONG = st.integers(200, 245).map(lambda n: "ü" * (n // 2) + "-" * (n % 2))  # near NAME_MAX in bytes
NAMES = (
    (STEM | LONG)
    .map(lambda stem: stem + ".jpg")
    .filter(
        lambda name: not name.startswith(".") and len(name.encode()) <= 255  # dot files are hidden: ignored
    )
)


def unique(n):
    return st.lists(NAMES, min_size=n, max_size=n, unique=True)


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


# Each example is a whole run (seconds): a few of them, no shrinking (the failing names are printed).
SLOW_EXAMPLES = settings(
    max_examples=2,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


# Names from real exports, tried first.
TYPED = [
    "colibrí, wing up.jpg", 'say "cheese".jpg', "it's 2 birds.jpg", "-rf.jpg", "--help.jpg",
    "a;b&c$(d)|e.jpg", "中文 鸟.jpg", "😀 #1 (copy) [2].jpg", "ü" * 124 + ".jpg", "tab\there.jpg",
]  # fmt: skip


@SLOW_EXAMPLES
@given(train=unique(6), test=unique(4))
@example(train=TYPED[:6], test=TYPED[6:])
def test_every_crop_keeps_its_name_from_samples_to_predict(tmp_path_factory, cli, train, test):
    root = tmp_path_factory.mktemp("names")
    files = {}
    for split, names in (("Training", train), ("Testing", test)):
        half = len(names) // 2
        for i, name in enumerate(names):
            cls = "Positives" if i < half else "Negatives"
            files[str(write_image(root / "Samples" / split / cls / name, seed=i, positive=i < half))] = cls
    out = root / "out"
    result = cli("run", root / "Samples", out, *TINY, "--epochs", 1, "--validation-fraction", 0)
    assert result.exit_code == 0, result.output

    listed = {row[0]: row[1] for doc in ("trainingdata", "testingdata") for row in read(out / "docs" / f"{doc}.csv")}
    assert listed == {p: "positive" if c == "Positives" else "negative" for p, c in files.items()}
    tested = {p for p in files if "/Testing/" in p}
    assert {row[0] for row in read(out / "report" / "predictions.csv")[1:]} == tested

    # predict: the Testing folder, and each file named on the command line (a leading dash too).
    scores = out / "scores, v2.csv"
    predicted = cli("predict", out / "model", root / "Samples" / "Testing", *sorted(tested), "--output", scores)
    assert predicted.exit_code == 0, predicted.output
    rows = read(scores)
    assert rows[0] == ["path", "label", "score_positive"]
    assert sorted(row[0] for row in rows[1:]) == sorted([*tested, *tested])


# --- names that are not UTF-8 ----------------------------------------------------------------------

TEXT = {"encoding": "utf-8", "errors": "surrogateescape"}  # core.atomic.TEXT: a name's own bytes
# A Latin-1 letter, a cut multi-byte letter, bytes no encoding has; a folder of such a name too.
RENAMED = {
    ("Training", "Positives"): [b"colibr\xed.jpg", b"d\xeda 2/\x80\xff.jpg"],
    ("Training", "Negatives"): [b"\xe4\xb8 cut.jpg"],
    ("Testing", "Positives"): [b"\xe9t\xe9, wing.jpg"],
    ("Testing", "Negatives"): [b"n\xe9g.jpg"],
}
SAMPLES_NAME = b"Samples \xe0"
EMPTY = b"vac\xedo.jpg"  # zero bytes: skipped, and listed
NOTES = b"notas \xe9.txt"  # not an image: ignored, and listed


def fs(folder, raw: bytes) -> str:
    return os.path.join(folder, os.fsdecode(raw))


def read_names(path) -> list[list[str]]:
    with open(path, newline="", **TEXT) as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def bytes_run(tmp_path_factory):
    """A run on DeepMeerkat's real crops (6 training and 3 testing a class) in a Samples folder
    whose name is not UTF-8, some renamed so too, and predict on its Testing folder into a CSV and
    onto stdout."""
    root = tmp_path_factory.mktemp("bytes")
    samples = Path(fs(root, SAMPLES_NAME))
    for (split, cls), names in RENAMED.items():
        crops = sorted((SAMPLES / split / cls).iterdir())[: 6 if split == "Training" else 3]
        for i, crop in enumerate(crops):
            target = fs(samples / split / cls, names[i]) if i < len(names) else str(samples / split / cls / crop.name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy(crop, target)
    for split in ("Training", "Testing"):
        open(fs(samples / split / "Negatives", EMPTY), "wb").close()
    with open(fs(samples / "Training" / "Positives", NOTES), "wb") as f:
        f.write(b"not a crop\n")
    out = root / "out"
    result = CliRunner().invoke(app, ["run", str(samples), str(out), *TINY, "--epochs", "2"])
    assert result.exit_code == 0, result.output
    scores = root / "scores.csv"
    testing = str(samples / "Testing")
    predicted = CliRunner().invoke(app, ["predict", str(out / "model"), testing, "--output", str(scores)])
    assert predicted.exit_code == 0, predicted.output
    printed = CliRunner().invoke(app, ["predict", str(out / "model"), testing])
    assert printed.exit_code == 0, printed.output
    return {"samples": samples, "out": out, "scores": scores, "stdout": printed.stdout_bytes, "logs": result.output}


def images(samples, split: str) -> set[str]:
    return {os.path.join(d, n) for d, _, names in os.walk(samples / split) for n in names if n.endswith(".jpg")}


@needs_shared()
def test_a_name_that_is_not_utf8_is_the_file_on_disk_in_every_csv(bytes_run):
    samples, out = bytes_run["samples"], bytes_run["out"]
    for split, doc in (("Training", "trainingdata"), ("Testing", "testingdata")):
        listed = [row[0] for row in read_names(out / "docs" / f"{doc}.csv")]
        assert set(listed) == images(samples, split) and all(os.path.exists(p) for p in listed)
    usable = images(samples, "Testing") - {fs(samples / "Testing" / "Negatives", EMPTY)}
    assert {row[0] for row in read_names(out / "report" / "predictions.csv")[1:]} == usable
    assert {row[0] for row in read_names(bytes_run["scores"])[1:]} == usable
    # On stdout, the same CSV as in the file: `predict ... > scores.csv` gives the same bytes.
    assert bytes_run["stdout"] == bytes_run["scores"].read_bytes()
    skipped = [row[0] for csv_file in (out / "records").glob("*.skipped.csv") for row in read_names(csv_file)[1:]]
    assert sorted(skipped) == sorted(fs(samples / split / "Negatives", EMPTY) for split in ("Training", "Testing"))
    skipped_by_predict = read_names(bytes_run["scores"].with_name("scores.skipped.csv"))[1:]
    assert [row[0] for row in skipped_by_predict] == [fs(samples / "Testing" / "Negatives", EMPTY)]
    ignored = read_names(out / "docs" / "ignored.txt")
    assert ignored == [[fs(samples / "Training" / "Positives", NOTES), "not an image extension (.txt)"]]
    assert os.path.exists(ignored[0][0])


@needs_shared()
def test_json_html_markdown_and_logs_stay_utf8_and_show_the_bytes(bytes_run):
    out = bytes_run["out"]
    for path in [*out.rglob("*.json"), *out.rglob("*.html"), *out.rglob("*.md"), *out.rglob("*.txt")]:
        if path.name not in ("ignored.txt", "duplicates.txt"):  # lists of names, as the CSVs: their bytes
            path.read_bytes().decode("utf-8")  # raises on a byte that is not UTF-8
    page = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "vac\\xedo.jpg" in page  # the skipped crop, its byte shown as \xed
    assert "notas \\xe9.txt" in page  # the ignored file
    assert "vac\\xedo.jpg" in bytes_run["logs"] and "\udced" not in bytes_run["logs"]
    # JSON's escape \udce0 reads back as the name on disk; Markdown shows the byte.
    card = json.loads((out / "model" / "meerkat.json").read_text(encoding="utf-8"))
    source = card["training_data"]["source"]
    assert source == str(bytes_run["samples"]) and os.path.isdir(source)
    assert "Samples \\xe0" in (out / "model" / "README.md").read_text(encoding="utf-8")


def test_a_link_out_of_its_class_and_a_copy_are_listed_by_their_names_bytes(tmp_path, cli):
    samples = make_samples(Path(fs(tmp_path, SAMPLES_NAME)), train=(3, 3), test=(2, 2))
    pos = samples / "Training" / "Positives"
    loop, copy = fs(pos, b"boucl\xe9"), fs(samples / "Training" / "Negatives", b"copi\xe9.jpg")
    os.symlink("..", loop)
    shutil.copy(pos / "p0.jpg", copy)
    result = cli("createdocs", samples, "--output", tmp_path / "out", "--no-balance")
    assert result.exit_code == 0, result.output
    docs = tmp_path / "out" / "docs"
    leaves = f"a link that leaves Training/Positives/: it leads to {os.path.realpath(samples / 'Training')}"
    assert read_names(docs / "ignored.txt") == [[loop, leaves]] and os.path.islink(loop)
    assert read_names(docs / "duplicates.txt") == [[copy, f"the same bytes as {pos / 'p0.jpg'}"]]
