"""createdocs: folder discovery, CSV contents, balancing, hold-out split and its errors."""

import csv
import hashlib
import os
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


def ignored_rows(out: Path) -> dict[str, str]:
    """docs/ignored.txt: {file name: reason}."""
    return {Path(p).name: reason for p, reason in rows(out / "docs" / "ignored.txt")}


def test_a_link_out_of_its_class_folder_is_not_followed_and_is_listed(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(17, 12), test=(2, 2))
    train, pos = samples / "Training", samples / "Training" / "Positives"
    (pos / "loop").symlink_to("..", target_is_directory=True)  # up to Training/: its Negatives became positives
    (pos / "theirs.jpg").symlink_to(train / "Negatives" / "n0.jpg")
    (pos / "tested").symlink_to(samples / "Testing" / "Positives", target_is_directory=True)
    write_image(tmp_path / "album" / "a.jpg", seed=1, positive=True)
    (pos / "album").symlink_to(tmp_path / "album", target_is_directory=True)
    result = cli("createdocs", samples, "--output", tmp_path / "out", "--no-balance")
    assert result.exit_code == 0, result.output
    positives = [p for p, label in rows(tmp_path / "out" / "docs" / "trainingdata.csv") if label == "positive"]
    assert sorted(positives) == sorted(str(p) for p in pos.glob("p*.jpg")) and len(positives) == 17
    leaves = "a link that leaves Training/Positives/: it leads to "
    assert ignored_rows(tmp_path / "out") == {
        "loop": leaves + os.path.realpath(train),
        "theirs.jpg": leaves + os.path.realpath(train / "Negatives" / "n0.jpg"),
        "tested": leaves + os.path.realpath(samples / "Testing" / "Positives"),
        "album": leaves + os.path.realpath(tmp_path / "album"),
    }
    assert "Positive training samples: 17" in result.output
    assert "did not follow 4 links out of their class folder" in result.output, result.output

    negatives = samples / "Testing" / "Negatives"  # nothing but a link out: why there are no crops
    for p in negatives.iterdir():
        p.unlink()
    (negatives / "album").symlink_to(tmp_path / "album", target_is_directory=True)
    result = cli("createdocs", samples, "--output", tmp_path / "out")
    assert_user_error(result, 1, "no images in", "not followed: 1 link out of it")


def test_a_file_reached_twice_inside_its_class_folder_is_listed_once(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
    pos = samples / "Training" / "Positives"
    inner = write_image(pos / "site 1" / "s.jpg", seed=5, positive=True)
    (pos / "again").symlink_to("site 1", target_is_directory=True)
    (pos / "best.jpg").symlink_to("site 1/s.jpg")
    (pos / "site 1" / "up").symlink_to("..", target_is_directory=True)  # a loop inside the folder
    result = cli("createdocs", samples, "--output", tmp_path / "out", "--no-balance")
    assert result.exit_code == 0, result.output
    positives = [p for p, label in rows(tmp_path / "out" / "docs" / "trainingdata.csv") if label == "positive"]
    assert sorted(positives) == sorted([str(inner), *(str(pos / f"p{i}.jpg") for i in range(3))])
    assert not (tmp_path / "out" / "docs" / "ignored.txt").exists(), "nothing was left out"


def test_class_folders_that_overlap_are_refused(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
    testing = samples / "Testing" / "Positives"
    for p in testing.iterdir():
        p.unlink()
    testing.rmdir()
    testing.symlink_to(samples / "Training" / "Positives", target_is_directory=True)
    result = cli("createdocs", samples, "--output", tmp_path / "out")
    assert_user_error(result, 1, "Testing/Positives", "Training/Positives")


def test_the_same_bytes_under_both_labels_are_reported_and_listed(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
    first = samples / "Training" / "Positives" / "p0.jpg"
    copies = [samples / "Training" / "Negatives" / "copy.jpg", samples / "Testing" / "Negatives" / "copy.jpg"]
    for copy in copies:
        copy.write_bytes(first.read_bytes())
    for split in ("Training", "Testing"):  # empty files: no crops (preprocess skips them), so no copies
        (samples / split / "Negatives" / "empty.jpg").write_bytes(b"")
    result = cli("createdocs", samples, "--output", tmp_path / "out", "--no-balance")
    assert result.exit_code == 0, result.output
    listed = tmp_path / "out" / "docs" / "duplicates.txt"
    warning = next(line for line in result.output.splitlines() if "under both labels" in line)
    assert warning.startswith("warning: 1 image is under both labels") and str(listed) in warning, warning
    assert sorted(rows(listed)) == sorted([[str(c), f"the same bytes as {first}"] for c in copies])
    # Left in, under both labels: meerkat cannot tell which is right, and the counts stay the folders'.
    train = rows(tmp_path / "out" / "docs" / "trainingdata.csv")
    assert [str(first), "positive"] in train and [str(copies[0]), "negative"] in train

    for copy in copies:  # tidied up: no list of an earlier run's duplicates remains
        copy.unlink()
    result = cli("createdocs", samples, "--output", tmp_path / "out", "--no-balance")
    assert result.exit_code == 0 and "under both labels" not in result.output, result.output
    assert not listed.exists()


def test_by_default_no_video_has_frames_in_both_training_and_testing(tmp_path, cli):
    # Crops named as `meerkat clips` names them: frames 1/30 s apart must not train and test the model.
    for cls in ("Positives", "Negatives"):
        for video in range(8):
            for frame in range(60, 66):
                write_image(tmp_path / "S" / "Training" / cls / f"v{video}_{frame}_0.jpg", seed=frame)
    result = cli("createdocs", tmp_path / "S", "--output", tmp_path / "o")
    assert result.exit_code == 0, result.output

    def videos(name):
        return {Path(p).name.split("_")[0] for p, _ in rows(tmp_path / "o" / "docs" / name)}

    assert videos("testingdata.csv") and not videos("testingdata.csv") & videos("trainingdata.csv")
