"""createdocs: folder discovery, CSV contents, balancing, hold-out split and its errors."""

import csv
import hashlib
from pathlib import Path

from conftest import assert_user_error, make_samples, write_image

from meerkat.core import locks, ownership


def rows(path: Path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def test_writes_csvs_dict_and_counts_for_case_and_plural_variants(tmp_path, cli):
    samples = make_samples(
        tmp_path / "S", train=(4, 4), test=(2, 3), names=("training", "TESTING", "positive", "NEGATIVES")
    )
    before = tree_digest(samples)
    result = cli("createdocs", samples, "--output", tmp_path / "out")
    assert result.exit_code == 0, result.output
    docs = tmp_path / "out" / "docs"
    train, test = rows(docs / "trainingdata.csv"), rows(docs / "testingdata.csv")
    assert (docs / "dict.txt").read_text() == "positive\nnegative\n"
    assert [label for _, label in train] == ["positive"] * 4 + ["negative"] * 4
    assert sorted(label for _, label in test) == ["negative"] * 3 + ["positive"] * 2
    assert all(Path(p).is_absolute() and Path(p).is_file() for p, _ in train + test)
    assert "Positive training samples: 4" in result.output
    assert "Negative testing samples: 3" in result.output
    assert tree_digest(samples) == before, "createdocs must never write into Samples"


def test_undersamples_negatives_repeatably_and_no_balance_keeps_all(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(3, 9))
    outputs = []
    for name in ("a", "b"):
        assert cli("createdocs", samples, "--output", tmp_path / name, "--seed", "7", "--balance").exit_code == 0
        outputs.append((tmp_path / name / "docs" / "trainingdata.csv").read_bytes())
    assert outputs[0] == outputs[1], "same inputs and seed must give the same CSV byte for byte"
    train = rows(tmp_path / "a" / "docs" / "trainingdata.csv")
    assert [label for _, label in train].count("negative") == 3
    result = cli("createdocs", samples, "--output", tmp_path / "c", "--no-balance")
    assert "Negative training samples: 9" in result.output
    assert len(rows(tmp_path / "c" / "docs" / "trainingdata.csv")) == 12


def test_without_testing_holds_out_a_stable_sixth(tmp_path, cli):
    samples = make_samples(
        tmp_path / "S",
        train=(30, 30),
        test=None,
    )
    assert cli("createdocs", samples, "--output", tmp_path / "a", "--no-balance").exit_code == 0
    held = {p for p, _ in rows(tmp_path / "a" / "docs" / "testingdata.csv")}
    trained = {p for p, _ in rows(tmp_path / "a" / "docs" / "trainingdata.csv")}
    assert held and not held & trained and len(held | trained) == 60
    assert 3 <= len(held) <= 20
    assert {label for _, label in rows(tmp_path / "a" / "docs" / "testingdata.csv")} == {"positive", "negative"}
    for i in range(30, 60):  # new files must not move old ones across the split
        write_image(samples / "Training" / "Positives" / f"extra{i}.jpg", seed=i)
    assert cli("createdocs", samples, "--output", tmp_path / "b", "--no-balance").exit_code == 0
    held_after = {p for p, _ in rows(tmp_path / "b" / "docs" / "testingdata.csv")}
    assert held <= held_after
    assert not held_after & trained


def test_lists_ignored_files_and_warns_about_train_test_duplicates(tmp_path, cli):
    samples = make_samples(tmp_path / "S")
    (samples / "Training" / "Positives" / "notes.txt").write_text("field notes")
    (samples / "Training" / "Negatives" / ".DS_Store").write_bytes(b"\0")
    write_image(samples / "Training" / "Positives" / "UPPER.JPG", seed=99)
    dup = samples / "Testing" / "Negatives" / "copy.jpg"
    dup.write_bytes((samples / "Training" / "Negatives" / "n0.jpg").read_bytes())
    result = cli("createdocs", samples, "--output", tmp_path / "out", "--no-balance")
    assert result.exit_code == 0, result.output
    ignored = (tmp_path / "out" / "docs" / "ignored.txt").read_text()
    assert "notes.txt" in ignored and ".DS_Store" in ignored
    assert any(p.endswith("UPPER.JPG") for p, _ in rows(tmp_path / "out" / "docs" / "trainingdata.csv"))
    assert "also appear in Testing" in result.output and "copy.jpg" in result.output

    # Tidied up: the next run ignores nothing, so no list of an earlier run's files remains.
    (samples / "Training" / "Positives" / "notes.txt").unlink()
    (samples / "Training" / "Negatives" / ".DS_Store").unlink()
    assert cli("createdocs", samples, "--output", tmp_path / "out", "--no-balance").exit_code == 0
    assert not (tmp_path / "out" / "docs" / "ignored.txt").exists()


def test_meerkats_own_list_and_lock_are_neither_crops_nor_ignored_files(tmp_path, cli):
    samples = make_samples(tmp_path / "S")
    for name in (ownership.OWNED, locks.LOCK_NAME):
        (samples / "Training" / "Positives" / name).write_text("")
    result = cli("createdocs", samples, "--output", tmp_path / "out", "--no-balance")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "out" / "docs" / "ignored.txt").exists()


def test_paths_with_commas_spaces_and_unicode_round_trip(tmp_path, cli):
    samples = make_samples(tmp_path / "S")
    odd = write_image(samples / "Training" / "Positives" / "colibrí, wing up.jpg", seed=5)
    assert cli("createdocs", samples, "--output", tmp_path / "out").exit_code == 0
    assert [str(odd), "positive"] in rows(tmp_path / "out" / "docs" / "trainingdata.csv")


def test_missing_samples_folder(tmp_path, cli):
    assert_user_error(
        cli("createdocs", tmp_path / "nope", "--output", tmp_path / "o"), 1, "Samples folder not found", "nope"
    )


def test_missing_training_folder(tmp_path, cli):
    (tmp_path / "S" / "Other").mkdir(parents=True)
    assert_user_error(cli("createdocs", tmp_path / "S", "--output", tmp_path / "o"), 1, "no Training folder")


def test_class_folder_missing_or_without_images(tmp_path, cli):
    samples = make_samples(tmp_path / "S")
    for p in (samples / "Testing" / "Negatives").iterdir():
        p.unlink()
    (samples / "Testing" / "Negatives" / "readme.txt").write_text("x")
    assert_user_error(cli("createdocs", samples, "--output", tmp_path / "o"), 1, "no images in", "Negatives")
    (samples / "Testing" / "Negatives" / "readme.txt").unlink()
    (samples / "Testing" / "Negatives").rmdir()
    assert_user_error(cli("createdocs", samples, "--output", tmp_path / "o"), 1, "no Negatives folder")


def test_unwritable_output_folder(tmp_path, cli):
    samples = make_samples(tmp_path / "S")
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should go")
    assert_user_error(cli("createdocs", samples, "--output", blocker / "out"), 1, str(blocker))
