"""preprocess: shards, manifests, bad files skipped and listed, splitting across workers."""

import csv
import json
import os

import numpy as np
import pytest
from conftest import TINY, assert_user_error, embed, fit, make_samples, write_image

from meerkat.core.errors import MeerkatError
from meerkat.embed import tfrecords


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    from typer.testing import CliRunner

    from meerkat.cli import app

    root = tmp_path_factory.mktemp("pre")
    samples = make_samples(root / "S", train=(5, 6))
    assert (
        CliRunner().invoke(app, ["createdocs", str(samples), "--output", str(root / "out"), "--no-balance"]).exit_code
        == 0
    )
    return root / "out" / "docs"


def read(prefix):
    shards, manifest = tfrecords.find_shards(str(prefix))
    return tfrecords.read_shards(shards, manifest["embedding_dim"]), manifest


def test_writes_a_complete_shard_with_manifest(tmp_path, cli, docs):
    result = embed(cli, docs, tmp_path / "rec" / "train")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rec" / "train-00000-of-00001.tfrecord.gz").is_file()
    (uris, labels, vectors), manifest = read(tmp_path / "rec" / "train")
    rows = list(csv.reader(open(docs / "trainingdata.csv")))
    assert uris == [p for p, _ in rows]
    assert labels.tolist() == [0 if label == "positive" else 1 for _, label in rows]
    assert vectors.shape == (11, 1280) and np.isfinite(vectors).all()
    assert manifest["records"] == 11 and manifest["skipped"] == 0
    assert manifest["backbone"]["name"] == "mobilenet_v2" and manifest["backbone"]["alpha"] == 0.35
    assert not list((tmp_path / "rec").glob(".*tmp")), "no temporary files may be left behind"


def test_bad_files_are_skipped_listed_and_the_run_finishes(tmp_path, cli, docs):
    good = list(csv.reader(open(docs / "trainingdata.csv")))
    bad = tmp_path / "bad"
    bad.mkdir()
    jpeg = open(good[0][0], "rb").read()
    (bad / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("<html>not an image</html>")
    gone = bad / "vanished.jpg"
    rows = (
        good
        + [[str(bad / n), "negative"] for n in ("truncated.jpg", "empty.jpg", "text.jpg")]
        + [[str(gone), "positive"]]
    )
    with open(tmp_path / "mixed.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    (tmp_path / "dict.txt").write_text((docs / "dict.txt").read_text())

    result = embed(cli, tmp_path, tmp_path / "rec" / "mixed", csv_name="mixed.csv")
    assert result.exit_code == 0, result.output
    (uris, _, _), manifest = read(tmp_path / "rec" / "mixed")
    assert uris == [p for p, _ in good]
    skipped = dict(list(csv.reader(open(tmp_path / "rec" / "mixed-00000-of-00001.skipped.csv")))[1:])
    assert set(skipped) == {str(bad / "truncated.jpg"), str(bad / "empty.jpg"), str(bad / "text.jpg"), str(gone)}
    assert skipped[str(bad / "empty.jpg")] == "empty file (0 bytes)"
    assert skipped[str(gone)] == "file not found"
    assert skipped[str(bad / "text.jpg")].startswith("not an image (text starting")
    assert skipped[str(bad / "truncated.jpg")].startswith("cannot decode")
    assert manifest["records"] + manifest["skipped"] == len(rows)
    assert "skipped 4 unusable files" in result.output


@pytest.mark.slow
def test_shards_split_the_csv_and_together_equal_one_process(tmp_path, cli, docs):
    assert embed(cli, docs, tmp_path / "one" / "train").exit_code == 0
    for i in range(3):
        result = embed(cli, docs, tmp_path / "three" / "train", "--shard-index", i, "--num-shards", 3)
        assert result.exit_code == 0, result.output
    (u1, l1, v1), _ = read(tmp_path / "one" / "train")
    (u3, l3, v3), _ = read(tmp_path / "three" / "train")
    order = [u3.index(u) for u in u1]
    assert sorted(u3) == sorted(u1)
    assert (l3[order] == l1).all()
    np.testing.assert_allclose(v3[order], v1, rtol=1e-4, atol=1e-5)


def test_slurm_array_variables_pick_the_shard(tmp_path, cli, docs):
    env = {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}
    result = embed(cli, docs, tmp_path / "s" / "t", env=env)
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "s").glob("*.tfrecord.gz")] == ["t-00001-of-00004.tfrecord.gz"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--num-shards", "0"], ["--num-shards", "0"]),
        (["--shard-index", "3", "--num-shards", "3"], ["--shard-index", "0..2", "3"]),
    ],
)
def test_bad_shard_options_are_usage_errors(tmp_path, cli, docs, args, words):
    assert_user_error(embed(cli, docs, tmp_path / "r" / "t", *args), 2, *words)


def test_unknown_label_and_wrong_dict_are_named(tmp_path, cli, docs):
    (tmp_path / "dict.txt").write_text((docs / "dict.txt").read_text())
    (tmp_path / "bad.csv").write_text(f"{tmp_path / 'a.jpg'},cat\n")
    assert_user_error(embed(cli, tmp_path, tmp_path / "r" / "t", csv_name="bad.csv"), 1, "row 1", "unknown label 'cat'")
    (tmp_path / "bad.csv").write_text(f"{tmp_path / 'a.jpg'},positive,extra\n")
    assert_user_error(
        embed(cli, tmp_path, tmp_path / "r" / "t", csv_name="bad.csv"),
        1,
        "row 1",
        "expected `path,label`, received 3 fields",
    )
    (tmp_path / "dict.txt").write_text("negative\npositive\n")
    (tmp_path / "trainingdata.csv").write_text((docs / "trainingdata.csv").read_text())
    assert_user_error(embed(cli, tmp_path, tmp_path / "r" / "t"), 1, "dict.txt", "positive, negative")


def test_missing_weights_file_is_named(tmp_path, cli, docs):
    result = cli(
        "preprocess",
        "--input-path",
        docs / "trainingdata.csv",
        "--input-dict",
        docs / "dict.txt",
        "--output-path",
        tmp_path / "t",
        "--backbone",
        "mobilenet_v2",
        "--weights",
        tmp_path / "nope.h5",
    )
    assert_user_error(result, 1, "weights file not found", "nope.h5")


def test_manifest_is_json_with_labels(tmp_path, cli, docs):
    assert embed(cli, docs, tmp_path / "t").exit_code == 0
    manifest = json.loads((tmp_path / "t-00000-of-00001.json").read_text())
    assert manifest["labels"] == ["positive", "negative"]
    assert manifest["embedding_dim"] == 1280 and manifest["image_size"] == 224


def test_a_corrupt_shard_manifest_is_one_line_naming_it(tmp_path, cli, docs):
    assert embed(cli, docs, tmp_path / "r" / "train").exit_code == 0
    manifest = tmp_path / "r" / "train-00000-of-00001.json"
    manifest.write_text('{"backbone": {"name": "mobil')  # cut off mid-write by a disk full, say
    result = fit(cli, tmp_path / "r" / "train", tmp_path / "r" / "train", tmp_path / "t")
    assert_user_error(result, 1, f"shard manifest {manifest} is unreadable or corrupt", "rerun `meerkat preprocess`")


def test_shards_of_different_csvs_do_not_make_one_set(tmp_path, cli, docs):
    other = tmp_path / "other.csv"
    other.write_text("".join(line + "\n" for line in (docs / "trainingdata.csv").read_text().splitlines()[:-1]))
    (tmp_path / "dict.txt").write_text((docs / "dict.txt").read_text())
    prefix = tmp_path / "r" / "train"
    assert embed(cli, docs, prefix, "--shard-index", 0, "--num-shards", 2).exit_code == 0
    result = cli(
        "preprocess",
        "--input-path",
        other,
        "--input-dict",
        tmp_path / "dict.txt",
        "--output-path",
        prefix,
        *TINY,
        "--shard-index",
        1,
        "--num-shards",
        2,
    )
    assert result.exit_code == 0, result.output
    result = cli("train", "--train-data", prefix, "--eval-data", prefix, "--output-dir", tmp_path / "t")
    assert_user_error(
        result, 1, "train-00001-of-00002.tfrecord.gz", "train-00000-of-00002.tfrecord.gz", "different CSVs"
    )


def test_shards_with_different_label_lists_do_not_make_one_set(tmp_path, cli, docs):
    prefix = tmp_path / "r" / "train"
    for i in range(2):
        assert embed(cli, docs, prefix, "--shard-index", i, "--num-shards", 2).exit_code == 0
    manifest = tmp_path / "r" / "train-00001-of-00002.json"
    m = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**m, "labels": ["negative", "positive"]}))  # made by a hand-edited dict.txt
    with pytest.raises(MeerkatError, match="different label lists"):
        tfrecords.find_shards(str(prefix))


@pytest.mark.parametrize(
    "env, words",
    [
        ({"SLURM_ARRAY_TASK_ID": "two"}, ["$SLURM_ARRAY_TASK_ID must be an integer", "'two'"]),
        (
            {
                "SLURM_ARRAY_TASK_ID": "5",
                "SLURM_ARRAY_TASK_MIN": "1",
                "SLURM_ARRAY_TASK_MAX": "5",
                "SLURM_ARRAY_TASK_COUNT": "3",
            },
            ["not an evenly spaced range", "--array=0-N"],
        ),
    ],
)
def test_unusable_slurm_array_variables_are_one_line(tmp_path, cli, docs, env, words):
    result = embed(cli, docs, tmp_path / "s" / "t", env=env)
    assert_user_error(result, 2, *words)


def test_a_stepped_slurm_array_maps_tasks_to_consecutive_shards(monkeypatch):
    from meerkat.core.slurm import array_shard

    array = {
        "SLURM_ARRAY_TASK_MIN": "10",
        "SLURM_ARRAY_TASK_MAX": "16",
        "SLURM_ARRAY_TASK_STEP": "2",
        "SLURM_ARRAY_TASK_COUNT": "4",
    }
    for name, value in array.items():
        monkeypatch.setenv(name, value)
    got = []
    for task in (10, 12, 14, 16):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
        got.append(array_shard(None, None))
    assert got == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert array_shard(2, 3) == (2, 3)  # options win


def keep_times(path, write):
    """Run `write`, then give `path` its size-and-times look of before: as a restore, `cp -p` or `rsync -t` do."""
    st = os.stat(path)
    write()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size


def test_a_crop_replaced_by_one_of_the_same_size_and_time_redoes_the_shard(tmp_path, cli):
    crops = [write_image(tmp_path / "crops" / f"c{i}.bmp", seed=i) for i in range(3)]  # BMPs of one size
    (tmp_path / "trainingdata.csv").write_text("".join(f"{c},positive\n" for c in crops))
    (tmp_path / "dict.txt").write_text("positive\nnegative\n")
    prefix = tmp_path / "r" / "train"
    assert embed(cli, tmp_path, prefix).exit_code == 0
    (_, _, before), _ = read(prefix)
    other = write_image(tmp_path / "other" / "c0.bmp", seed=99)
    keep_times(crops[0], lambda: crops[0].write_bytes(other.read_bytes()))

    result = embed(cli, tmp_path, prefix)
    assert result.exit_code == 0, result.output
    assert "Reusing finished shard" not in result.output
    (uris, _, after), _ = read(prefix)
    (tmp_path / "o.csv").write_text(f"{other},positive\n")
    assert embed(cli, tmp_path, tmp_path / "o" / "train", csv_name="o.csv").exit_code == 0
    (_, _, want), _ = read(tmp_path / "o" / "train")
    np.testing.assert_allclose(after[0], want[0], rtol=1e-4, atol=1e-5)  # the new picture's vector
    np.testing.assert_array_equal(after[1:], before[1:])
    assert "Reusing finished shard" in embed(cli, tmp_path, prefix).output  # unchanged: reused


def flip_bytes(shard) -> None:
    """Damage a shard in its middle, as a bad disk or a torn copy does, and keep its times."""
    data = bytearray(shard.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    keep_times(shard, lambda: shard.write_bytes(bytes(data)))


def test_a_damaged_shard_is_named_and_redone_not_reused(tmp_path, cli, docs):
    prefix = tmp_path / "r" / "train"
    assert embed(cli, docs, prefix).exit_code == 0
    (uris, _, vectors), _ = read(prefix)
    shard = tmp_path / "r" / "train-00000-of-00001.tfrecord.gz"
    flip_bytes(shard)

    result = embed(cli, docs, prefix)
    assert result.exit_code == 0, result.output
    assert "Reusing finished shard" not in result.output
    assert f"{shard} is damaged" in result.output and "redoing it" in result.output
    (again, _, redone), _ = read(prefix)  # whole again
    assert again == uris
    np.testing.assert_array_equal(redone, vectors)


def test_training_on_a_damaged_shard_names_it_and_the_fix(tmp_path, cli, docs):
    prefix = tmp_path / "r" / "train"
    assert embed(cli, docs, prefix).exit_code == 0
    shard = tmp_path / "r" / "train-00000-of-00001.tfrecord.gz"
    flip_bytes(shard)
    result = fit(cli, prefix, prefix, tmp_path / "t")
    assert_user_error(result, 1, f"{shard} is damaged", "rerun `meerkat preprocess`")
