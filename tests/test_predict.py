"""meerkat predict: reads files as preprocess does, skips the same ones, labels by --threshold."""

import csv
import shutil

import numpy as np
import pytest
from conftest import TINY, assert_user_error, write_image
from contract import check_tf2
from hypothesis import given
from hypothesis import strategies as st
from test_bad_inputs import SKIPPED, USABLE, animated_gif, peak_rss_growth_mb


def read_rows(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def scored(text: str) -> dict[str, tuple[str, float]]:
    rows = list(csv.reader(text.splitlines()))
    assert rows[0] == ["path", "label", "score_positive"], text
    return {p: (label, float(s)) for p, label, s in rows[1:]}


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """A folder with two good crops, two TIFFs (converted, so scored) and every kind preprocess skips."""
    folder = tmp_path_factory.mktemp("predict") / "crops"
    write_image(folder / "good.jpg", seed=1, positive=True)
    write_image(folder / "sub" / "good.png", seed=2)
    for name in ("own.tif", "tiff named.jpg"):
        (folder / name).write_bytes(USABLE[name]())
    for name, (make, _) in SKIPPED.items():
        (folder / name).write_bytes(make())
    return folder


def test_predict_scores_files_and_folders(tiny_run, tmp_path, cli):
    samples = tiny_run.parent / "Samples"
    out = tmp_path / "scores.csv"
    # A file named on the command line is scored whatever its extension; in folders, only images are.
    shutil.copytree(samples / "Testing", tmp_path / "Testing")
    (tmp_path / "Testing" / "notes.txt").write_text("not a crop")
    shutil.copy(samples / "Training" / "Negatives" / "n0.jpg", tmp_path / "crop.data")
    result = cli(
        "predict",
        tiny_run / "model",
        tmp_path / "Testing",
        samples / "Training" / "Positives" / "p0.jpg",
        tmp_path / "crop.data",
        "--output",
        out,
    )
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "path,label,score_positive" and len(lines) == 1 + 6 + 1 + 1
    assert str(tmp_path / "crop.data") in out.read_text() and "notes.txt" not in result.output
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    result = cli("predict", tiny_run / "model", tmp_path / "broken.jpg", samples / "Testing" / "Positives")
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / 'broken.jpg'}: not an image (text starting 'not a jpeg')" in result.stderr


def test_each_bad_file_is_skipped_with_the_reason_preprocess_gives(tiny_run, crops, tmp_path, cli):
    out = tmp_path / "scores.csv"
    result = cli("predict", tiny_run / "model", crops, crops / "deleted.jpg", "--output", out)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    reasons = dict(read_rows(tmp_path / "scores.skipped.csv")[1:])
    assert read_rows(tmp_path / "scores.skipped.csv")[0] == ["path", "reason"]
    assert set(reasons) == {str(crops / name) for name in (*SKIPPED, "deleted.jpg")}
    assert reasons[str(crops / "deleted.jpg")] == "file not found"
    for name, (_, reason) in SKIPPED.items():
        assert reasons[str(crops / name)].startswith(reason), (name, reasons)
        assert f"{crops / name}: {reasons[str(crops / name)]}" in result.stderr
    assert reasons[str(crops / "truncated.jpg")].startswith("cannot decode: ")
    assert "Graph execution error" not in result.output

    # Word for word what preprocess lists for the same files.
    docs = tmp_path / "docs.csv"
    docs.write_text("".join(f"{p},positive\n" for p in reasons) + f"{crops / 'good.jpg'},positive\n", encoding="utf-8")
    (tmp_path / "dict.txt").write_text("positive\nnegative\n")
    result = cli(
        "preprocess",
        "--input-path",
        docs,
        "--input-dict",
        tmp_path / "dict.txt",
        "--output-path",
        tmp_path / "rec",
        *TINY,
    )
    assert result.exit_code == 0, result.output
    assert dict(read_rows(tmp_path / "rec-00000-of-00001.skipped.csv")[1:]) == reasons


def test_tiffs_are_scored_and_scores_equal_what_the_model_serves(tiny_run, crops, cli):
    from meerkat.samples.imagefiles import read_for_model

    result = cli("predict", tiny_run / "model", crops)
    assert result.exit_code == 0, result.output
    rows = scored(result.stdout)
    names = ["good.jpg", "sub/good.png", "own.tif", "tiff named.jpg"]
    assert sorted(rows) == sorted(str(crops / n) for n in names)
    # The reference: the model's own serving signature on the bytes preprocess would embed.
    served = check_tf2(tiny_run / "model", [read_for_model(crops / n) for n in names])["scores"][:, 0]
    np.testing.assert_allclose([rows[str(crops / n)][1] for n in names], served, atol=1e-6)


def test_nothing_scorable_is_exit_1_with_one_error_line_and_no_csv(tiny_run, crops, tmp_path, cli):
    out = tmp_path / "scores.csv"
    bad = [crops / name for name in SKIPPED]
    result = cli("predict", tiny_run / "model", *bad, "--output", out)
    assert_user_error(result, 1, "none of the 4 files could be scored")
    assert "empty file (0 bytes)" in result.stderr
    assert not out.exists() and not (tmp_path / "scores.skipped.csv").exists()

    (tmp_path / "empty").mkdir()
    assert_user_error(
        cli("predict", tiny_run / "model", tmp_path / "empty"), 1, "no images found in", tmp_path / "empty"
    )


def test_many_skipped_files_are_listed_in_full_in_the_skipped_csv(tiny_run, tmp_path, cli):
    samples = tiny_run.parent / "Samples"
    for i in range(12):
        (tmp_path / "in" / f"zero{i:02}.jpg").parent.mkdir(exist_ok=True)
        (tmp_path / "in" / f"zero{i:02}.jpg").write_bytes(b"")
    result = cli("predict", tiny_run / "model", tmp_path / "in", samples / "Testing", "--output", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    assert "zero09.jpg: empty file (0 bytes)" in result.stderr and "zero10.jpg" not in result.stderr
    assert "  ... and 2 more" in result.stderr
    assert len(read_rows(tmp_path / "s.skipped.csv")) == 1 + 12
    assert len(read_rows(tmp_path / "s.csv")) == 1 + 6


def test_summary_goes_where_the_csv_does_not(tiny_run, tmp_path, cli):
    testing = tiny_run.parent / "Samples" / "Testing"
    (tmp_path / "zero.jpg").write_bytes(b"")
    result = cli("predict", tiny_run / "model", testing, tmp_path / "zero.jpg", "--output", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    assert f"Scored 6 images, skipped 1 -> {tmp_path / 's.csv'}" in result.stdout.splitlines()

    result = cli("predict", tiny_run / "model", testing, tmp_path / "zero.jpg")
    assert result.exit_code == 0, result.output
    assert "Scored 6 images, skipped 1" in result.stderr.splitlines()
    assert len(scored(result.stdout)) == 6  # stdout is the CSV and nothing else


def test_threshold_labels_positive_from_exactly_that_score(tiny_run, cli):
    samples = tiny_run.parent / "Samples"
    model = tiny_run / "model"
    result = cli("predict", model, samples)
    assert result.exit_code == 0, result.output
    default = scored(result.stdout)
    assert all(label == ("positive" if s >= 0.5 else "negative") for label, s in default.values())

    # The file whose score is nearest 0.5 (and not 0 or 1) sits exactly on the threshold.
    path, (_, t) = min(((p, v) for p, v in default.items() if 0 < v[1] < 1), key=lambda pv: abs(pv[1][1] - 0.5))
    at = scored(cli("predict", model, samples, "--threshold", repr(t)).stdout)
    assert at[path] == ("positive", t)
    assert all(label == ("positive" if s >= t else "negative") for label, s in at.values())
    above = scored(cli("predict", model, samples, env={"MEERKAT_THRESHOLD": repr(t + 1e-6)}).stdout)
    assert above[path] == ("negative", t)


@pytest.mark.parametrize(
    "args, env", [(["--threshold", "1.5"], None), (["--threshold", "-0.01"], None), ([], {"MEERKAT_THRESHOLD": "2"})]
)
def test_threshold_out_of_range_is_exit_2(tiny_run, cli, args, env):
    result = cli("predict", tiny_run / "model", tiny_run.parent / "Samples", *args, env=env)
    assert_user_error(result, 2, "--threshold must be between 0 and 1")


def test_predict_output_in_a_users_folder_leaves_no_hidden_file_and_keeps_the_users_csv(
    tiny_run, tmp_path, cli, monkeypatch
):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    home = tmp_path / "home"
    home.mkdir()
    (home / ".profile").write_text("mine")
    args = ("predict", tiny_run / "model", tiny_run.parent / "Samples" / "Testing", "--output", home / "scores.csv")
    for _ in range(2):  # the rerun replaces the first run's files
        result = cli(*args)
        assert result.exit_code == 0, result.output
        assert sorted(p.name for p in home.iterdir()) == [".profile", "scores.csv", "scores.skipped.csv"]
    scores = (home / "scores.csv").read_bytes()
    (home / "scores.skipped.csv").unlink()
    (home / "scores.skipped.csv").write_text("my notes\n")  # the user's own file, at a name meerkat used
    assert_user_error(cli(*args), 1, home / "scores.skipped.csv", "predict's output")
    assert (home / "scores.skipped.csv").read_text() == "my notes\n" and (home / "scores.csv").read_bytes() == scores


def test_a_folder_that_is_not_a_meerkat_model_is_one_line(tmp_path, cli):
    import tensorflow as tf

    crop = write_image(tmp_path / "crop.jpg")
    foreign = tmp_path / "foreign"
    tf.saved_model.save(tf.Module(), str(foreign))  # a SavedModel, but with no serving_default
    assert_user_error(cli("predict", foreign, crop), 1, str(foreign), "no serving_default signature")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protobuf at all")
    assert_user_error(cli("predict", broken, crop), 1, "cannot load the SavedModel", str(broken))


def test_the_model_scores_an_animated_gif_by_its_first_frame_alone(tiny_run, tmp_path):
    """What predict and scan hand the model; the frames after the first are never decoded."""
    for name, frames, side in (("big", 150, 1000), ("first", 1, 1000), ("small", 3, 32)):
        (tmp_path / f"{name}.gif").write_bytes(animated_gif(frames, side))
    setup = (
        "from meerkat.apply.scorer import Scorer\n"
        f"model = Scorer({str(tiny_run / 'model')!r})\n"
        f"gifs = {{n: open(f'{tmp_path}/{{n}}.gif', 'rb').read() for n in ('big', 'first', 'small')}}\n"
        "model([gifs['small']])"  # TensorFlow's first-use allocations, not counted
    )
    growth = peak_rss_growth_mb(setup, "assert model([gifs['big']])[0] == model([gifs['first']])[0]")
    assert growth < 50, f"scoring a 150-frame GIF raised the peak by {growth:.0f} MB"


@given(
    rows=st.lists(st.lists(st.floats(0, 1), min_size=3, max_size=5), min_size=1, max_size=6),
    threshold=st.floats(0, 1),
)
def test_the_pair_is_labelled_by_printed_score_positive_and_any_other_model_by_its_top_class(rows, threshold):
    from meerkat.apply.scorer import label, shown, strongest
    from meerkat.samples.classes import PAIR, Classes

    width = min(map(len, rows))
    p = np.array([r[:width] for r in rows]) + 1e-9
    p /= p.sum(axis=1, keepdims=True)
    pair = Classes.of(PAIR)
    for row in p[:, :2] / p[:, :2].sum(axis=1, keepdims=True):
        assert pair.score_columns() == ["score_positive"] and shown(pair, row) == (round(float(row[0]), 6),)
        assert label(pair, row, threshold) == ("positive" if round(float(row[0]), 6) >= threshold else "negative")
    names = ("deer", "empty", "Red fox", "blank", "stoat")[:width]
    species = Classes.of(names)
    assert species.score_columns() == [f"score_{n}" for n in names]
    for row in p:
        assert label(species, row, threshold) == names[int(np.argmax(row))]
        assert shown(species, row) == tuple(round(float(v), 6) for v in row)
    animal, top = strongest(species, p)
    keep = 1 - p[:, [n in ("empty", "blank") for n in names]].sum(axis=1)
    assert animal == round(float(keep.max()), 6) and top == names[int(np.argmax(p[int(np.argmax(keep))]))]
