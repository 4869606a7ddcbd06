"""Names as users type them, through every stage: createdocs -> preprocess -> train -> predict.

Hypothesis draws the crops' file names: commas, quotes, spaces, shell and CSV metacharacters,
non-ASCII letters and emoji, leading dashes, names up to the file system's 255 bytes. Every crop
must reach the docs CSVs, the records, the report and predict's CSV under its exact path.
"""

import csv

import pytest
from conftest import TINY, write_image
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

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
