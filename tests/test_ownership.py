"""meerkat deletes or replaces only what it can show it wrote; anything else in the way is named."""

import pytest
from conftest import TINY, assert_user_error, fit, make_samples, write_image


def test_demo_samples_refuses_a_folder_holding_a_users_files(tmp_path, cli):
    keep = write_image(tmp_path / "MySamples" / "Training" / "Positives" / "keep.jpg")
    result = cli("demo-samples", tmp_path / "MySamples")
    assert_user_error(result, 1, str(tmp_path / "MySamples"), "meerkat did not write")
    assert keep.is_file() and sorted(p.name for p in (tmp_path / "MySamples").rglob("*.jpg")) == ["keep.jpg"]


def test_demo_samples_fills_an_empty_folder_and_replaces_its_own(tmp_path, cli):
    demo = tmp_path / "demo"
    demo.mkdir()  # e.g. a mount point made beforehand
    assert cli("demo-samples", demo, "--train-per-class", 2, "--test-per-class", 1).exit_code == 0
    assert len(list(demo.rglob("*.jpg"))) == 6
    assert cli("demo-samples", demo, "--train-per-class", 3, "--test-per-class", 1).exit_code == 0
    assert len(list(demo.rglob("*.jpg"))) == 8
    write_image(demo / "Training" / "Positives" / "mine.jpg")  # now it holds a user's crop too
    assert_user_error(cli("demo-samples", demo), 1, "meerkat did not write")
    assert (demo / "Training" / "Positives" / "mine.jpg").is_file()


def test_train_keeps_a_users_files_in_its_output_folder(tmp_path, cli, tiny_run):
    project = tmp_path / "proj"
    (project / "logs").mkdir(parents=True)
    (project / "logs" / "important.txt").write_text("field notes")
    result = fit(cli, tiny_run / "records" / "train", tiny_run / "records" / "eval", project, "--epochs", 1)
    assert_user_error(result, 1, str(project / "logs" / "important.txt"), "meerkat did not write")
    assert (project / "logs" / "important.txt").read_text() == "field notes"


def test_a_users_model_folder_is_never_replaced(tmp_path, cli, tiny_run):
    project = tmp_path / "proj"
    (project / "model").mkdir(parents=True)
    (project / "model" / "saved_model.pb").write_bytes(b"someone else's model")
    result = fit(cli, tiny_run / "records" / "train", tiny_run / "records" / "eval", project, "--epochs", 1)
    assert_user_error(result, 1, str(project / "model"), "meerkat did not write")
    assert (project / "model" / "saved_model.pb").read_bytes() == b"someone else's model"


@pytest.mark.slow
def test_force_redoes_meerkats_work_but_never_deletes_a_users_file(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
    out = tmp_path / "out"
    assert cli("run", samples, out, *TINY, "--epochs", 1).exit_code == 0
    (out / "report" / "notes.md").write_text("keep me")
    forced = cli("run", samples, out, *TINY, "--epochs", 1, "--force")
    assert forced.exit_code == 0, forced.output
    assert (out / "report" / "notes.md").read_text() == "keep me"

    (out / "logs" / "train" / "my-plot.png").write_bytes(b"png")
    result = cli("run", samples, out, *TINY, "--epochs", 1, "--force")
    assert_user_error(result, 1, str(out / "logs" / "train" / "my-plot.png"))
    assert (out / "logs" / "train" / "my-plot.png").read_bytes() == b"png"


def test_an_output_file_of_the_users_is_not_overwritten(tmp_path):
    from meerkat.core import atomic
    from meerkat.core.errors import MeerkatError

    theirs = tmp_path / "scores.csv"
    theirs.write_text("their,data\n")
    try:
        atomic.write_text(theirs, "ours\n")
        raise AssertionError("a user's file was replaced")
    except MeerkatError as e:
        assert str(theirs) in str(e)
    assert theirs.read_text() == "their,data\n"
    ours = tmp_path / "again.csv"
    atomic.write_text(ours, "one\n")
    atomic.write_text(ours, "two\n")  # meerkat's own file: replaced
    assert ours.read_text() == "two\n"
