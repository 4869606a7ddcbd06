"""The classes of a model (samples/classes.py): from folders as users type them, in one order, with
DeepMeerkat's pair kept as it was and the background classes that scan's keep rule leaves out."""

import numpy as np
import pytest
from conftest import SPECIES, TINY, assert_user_error, make_samples, make_species
from hypothesis import given
from hypothesis import strategies as st

from meerkat.core.errors import MeerkatError
from meerkat.samples import classes
from meerkat.samples.docs import read_csv, read_dict

PROBABILITIES = (
    st.integers(2, 7)
    .flatmap(lambda k: st.lists(st.lists(st.floats(0.001, 1), min_size=k, max_size=k), min_size=1, max_size=20))
    .map(lambda rows: np.array(rows) / np.array(rows).sum(axis=1, keepdims=True))
)


@pytest.mark.parametrize("folders", [["Positives", "Negatives"], ["negative", "POSITIVE"], ["Positive", "negatives"]])
def test_deepmeerkats_pair_in_any_spelling_is_the_pair_positive_first(folders):
    found, folder_of = classes.from_folders(folders)
    assert found.names == ("positive", "negative") and found.is_pair and found.background == {"negative"}
    assert sorted(folder_of.values()) == sorted(folders)


@given(st.permutations(SPECIES))
def test_species_keep_their_names_in_one_order_whatever_the_listing(listing):
    found, _ = classes.from_folders(listing)
    assert found.names == ("deer", "empty", "Red fox", "Élan") and not found.is_pair  # by code point: É after r
    assert found.background == {"empty"}


@pytest.mark.parametrize(
    "names, words",
    [(["Deer"], "at least 2 classes"), (["Deer", "deer"], "differ only in case"), (["Deer", " Fox"], "space")],
)
def test_class_names_that_cannot_make_a_model_are_refused(names, words):
    with pytest.raises(MeerkatError, match=words):
        classes.Classes.of(names)


@given(PROBABILITIES)
def test_the_keep_score_is_one_less_the_background_and_for_the_pair_p_positive(p):
    k = p.shape[1]
    names = [f"species {i}" for i in range(k - 1)] + ["Blank"]
    np.testing.assert_allclose(classes.Classes.of(names).keep_scores(p), 1 - p[:, -1], atol=1e-12)
    if k == 2:
        assert np.array_equal(classes.Classes.of(classes.PAIR).keep_scores(p), p[:, 0])
        called = classes.Classes.of(classes.PAIR).predicted(p)
        assert np.array_equal(called, np.where(np.round(p[:, 0], 6) >= 0.5, 0, 1))
    else:
        assert np.array_equal(classes.Classes.of(names).predicted(p), p.argmax(axis=1))


def test_background_can_be_named_and_must_be_a_class():
    found = classes.Classes.of(["cat", "dog", "nothing to see"], background=["NOTHING TO SEE"])
    assert found.background == {"nothing to see"}
    with pytest.raises(MeerkatError, match="--background 'grass' is not one of the classes"):
        classes.Classes.of(["cat", "dog"], background=["grass"])


def test_createdocs_lists_species_as_typed_and_dict_txt_in_model_order(tmp_path, cli):
    samples = make_species(tmp_path / "S")
    result = cli("createdocs", samples, "--output", tmp_path / "o")
    assert result.exit_code == 0, result.output
    docs = tmp_path / "o" / "docs"
    assert (docs / "dict.txt").read_text(encoding="utf-8") == "deer\nempty\nRed fox\nÉlan\n"
    labels = read_dict(docs / "dict.txt")
    rows = read_csv(docs / "trainingdata.csv", classes.from_labels(labels))
    assert [label for _, label in rows] == [name for name in labels for _ in range(6)]
    assert all(f"/Training/{label}/" in path for path, label in rows)
    assert "4 classes: deer, empty, Red fox, Élan" in result.output


def test_without_testing_each_species_holds_out_its_share(tmp_path, cli):
    samples = make_species(tmp_path / "S", train=12, test=None)
    assert cli("createdocs", samples, "--output", tmp_path / "o").exit_code == 0
    found = classes.from_labels(read_dict(tmp_path / "o" / "docs" / "dict.txt"))
    held = read_csv(tmp_path / "o" / "docs" / "testingdata.csv", found)
    assert {label for _, label in held} == set(SPECIES)


def test_a_testing_folder_must_hold_the_training_classes(tmp_path, cli):
    samples = make_species(tmp_path / "S")
    (samples / "Testing" / "deer").rename(samples / "Testing" / "Deer")  # another case: the same class
    assert cli("createdocs", samples, "--output", tmp_path / "o").exit_code == 0
    for p in (samples / "Testing" / "Deer").iterdir():
        p.unlink()
    (samples / "Testing" / "Deer").rmdir()
    assert_user_error(cli("createdocs", samples, "--output", tmp_path / "o"), 1, "no deer folder in", "Testing")
    (samples / "Testing" / "deer" / "x").mkdir(parents=True)
    (samples / "Testing" / "wolf").mkdir()
    assert_user_error(cli("createdocs", samples, "--output", tmp_path / "o"), 1, "wolf", "not of Training")


def test_one_class_folder_is_one_line(tmp_path, cli):
    samples = make_species(tmp_path / "S", classes=("deer",))
    assert_user_error(cli("createdocs", samples, "--output", tmp_path / "o"), 1, "one class folder (deer)")
    pair = make_samples(tmp_path / "P", train=(2, 0), test=None)
    assert_user_error(cli("createdocs", pair, "--output", tmp_path / "o2"), 1, "no Negatives folder in")


def test_balance_cuts_background_classes_to_the_largest_animal_class(tmp_path, cli):
    samples = make_species(tmp_path / "S", classes=("deer", "fox", "empty"), train=4, test=2)
    for i in range(6):
        (samples / "Training" / "empty" / f"extra{i}.jpg").write_bytes(
            (samples / "Training" / "empty" / "Tr2_0.jpg").read_bytes() + bytes([i])
        )
    result = cli("createdocs", samples, "--output", tmp_path / "o", "--balance")
    assert result.exit_code == 0, result.output
    assert "empty training samples: 4 (undersampled from 10)" in result.output
    assert "deer training samples: 4\n" in result.output


@pytest.mark.parametrize("train, test, words", [(2, 2, "2 training and 2 testing"), (4, 1, "4 training and 1 testing")])
def test_a_class_too_small_to_train_and_test_stops_run_before_any_crop_is_embedded(tmp_path, cli, train, test, words):
    samples = make_species(tmp_path / "S", classes=("deer", "fox"), train=6, test=3)
    small = make_species(tmp_path / "small", classes=("owl",), train=train, test=test)
    for split in ("Training", "Testing"):
        (small / split / "owl").rename(samples / split / "owl")
    result = cli("run", samples, tmp_path / "out", *TINY, "--epochs", 1)
    assert_user_error(result, 1, "class 'owl' has", words, "--validation-fraction 0.15")
    assert "Embedded" not in result.output and not (tmp_path / "out" / "records").exists()
