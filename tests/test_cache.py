"""The embedding cache and precision: rerun only what changed, in the precision asked for."""

import hashlib
import json
import re
import sqlite3

import numpy as np
import pytest
from conftest import TINY, embed, make_samples, write_image

from meerkat.embed import tfrecords

pytestmark = pytest.mark.slow


@pytest.fixture
def meerkat_run(cli):
    """`meerkat run` in this process (the backbone is built once for all of a test's runs); its log."""

    def run(samples, out, *extra):
        result = cli("run", samples, out, *TINY, "--epochs", "2", *extra)
        assert result.exit_code == 0, result.output
        return result.output

    return run


def computed(stdout) -> list[int]:
    return [int(n) for n in re.findall(r"embeddings from the cache, (\d+) to compute", stdout)]


def test_warm_cache_new_images_and_head_options(tmp_path, meerkat_run):
    samples = make_samples(tmp_path / "Samples", train=(6, 6), test=(3, 3))
    cache = tmp_path / "cache"
    assert computed(meerkat_run(samples, tmp_path / "a", "--cache-dir", cache)) == [12, 6]
    # Same Samples, new output folder, shared cache: nothing is embedded again.
    warm = meerkat_run(samples, tmp_path / "b", "--cache-dir", cache)
    assert computed(warm) == [0, 0]
    assert (tmp_path / "a" / "report" / "metrics.json").read_bytes() == (
        tmp_path / "b" / "report" / "metrics.json"
    ).read_bytes()
    # Two new crops: only they are embedded.
    for i in range(2):
        write_image(samples / "Training" / "Positives" / f"new{i}.jpg", seed=100 + i, positive=True)
    assert computed(meerkat_run(samples, tmp_path / "b", "--cache-dir", cache, "--no-balance")) == [
        2
    ]  # eval: reused whole
    # Only a head option changed: shards are reused as they are, the head is retrained.
    head_only = meerkat_run(samples, tmp_path / "b", "--cache-dir", cache, "--no-balance", "--hidden-units", "64")
    assert head_only.count("Reusing finished shard") == 2 and "Training on 12 embeddings" in head_only


def test_renamed_crop_is_a_cache_hit(tmp_path, meerkat_run):
    samples = make_samples(tmp_path / "Samples", train=(3, 3), test=(2, 2))
    meerkat_run(samples, tmp_path / "a")
    (samples / "Training" / "Positives" / "p0.jpg").rename(samples / "Training" / "Positives" / "renamed.jpg")
    assert computed(meerkat_run(samples, tmp_path / "a")) == [0]  # the eval shard is reused whole


def test_bfloat16_embeddings_stay_close_to_float32(tmp_path, meerkat_run):
    samples = make_samples(tmp_path / "Samples", train=(4, 4), test=(2, 2))
    meerkat_run(samples, tmp_path / "f32", "--precision", "float32")
    out = meerkat_run(samples, tmp_path / "bf16", "--precision", "bfloat16")
    assert "(bfloat16)" in out
    vectors = {}
    for name in ("f32", "bf16"):
        shards, manifest = tfrecords.find_shards(str(tmp_path / name / "records" / "train"))
        uris, _, v = tfrecords.read_shards(shards, manifest["embedding_dim"])
        vectors[name] = v[np.argsort(uris)]
        assert manifest["backbone"]["precision"] == {"f32": "float32", "bf16": "bfloat16"}[name]
    a, b = vectors["f32"], vectors["bf16"]
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.98, cosine
    run = json.loads((tmp_path / "bf16" / "report" / "run.json").read_text())
    assert run["backbone"]["precision"] == "bfloat16"
    assert (tmp_path / "bf16" / "model" / "saved_model.pb").is_file()


def cached_vectors(cache_dir) -> dict[bytes, np.ndarray]:
    with sqlite3.connect(cache_dir / "embeddings.sqlite") as db:
        rows = db.execute("SELECT sha256, vector FROM embeddings").fetchall()
    return {h: np.frombuffer(v, np.float32) for h, v in rows}


def write_docs(folder, crops) -> None:
    """trainingdata.csv listing `crops` (all positive) and dict.txt, in `folder`."""
    (folder / "trainingdata.csv").write_text("".join(f"{c},positive\n" for c in crops))
    (folder / "dict.txt").write_text("positive\nnegative\n")


def test_a_crop_replaced_during_preprocess_never_lends_its_vector_to_the_old_bytes(tmp_path, cli, monkeypatch):
    """The scan hashes a crop, then it is replaced before the embedding reads it: the cache must hold, for
    each hash, the vector of the bytes with that hash (every later run and project sharing it trusts it)."""
    from meerkat.embed import preprocess

    crops = [write_image(tmp_path / "crops" / f"c{i}.jpg", seed=i) for i in range(4)]
    old = crops[0].read_bytes()
    new = write_image(tmp_path / "elsewhere" / "new.jpg", seed=99).read_bytes()
    write_docs(tmp_path, crops)
    scan = preprocess._scan

    def scan_then_replace(*args):
        found = scan(*args)
        crops[0].write_bytes(new)  # after the scan hashed `old`, before the embedding reads the file
        return found

    monkeypatch.setattr(preprocess, "_scan", scan_then_replace)
    result = embed(cli, tmp_path, tmp_path / "r" / "train", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    monkeypatch.undo()

    # The reference: each content embedded where nothing changes under it.
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "old.jpg").write_bytes(old)
    (ref / "new.jpg").write_bytes(new)
    write_docs(ref, [ref / "old.jpg", ref / "new.jpg", *crops[1:]])
    assert embed(cli, ref, ref / "r" / "train", "--cache-dir", ref / "cache").exit_code == 0
    got, want = cached_vectors(tmp_path / "cache"), cached_vectors(ref / "cache")
    assert got and set(got) <= set(want)
    for h, vector in got.items():
        np.testing.assert_allclose(vector, want[h], rtol=1e-4, atol=1e-5)
    assert f"{crops[0]}: changed while preprocess read it" in result.output

    # The shard listed the changed crop as skipped and is not reused: the rerun embeds what is there now.
    again = embed(cli, tmp_path, tmp_path / "r" / "train", "--cache-dir", tmp_path / "cache")
    assert again.exit_code == 0 and "Reusing finished shard" not in again.output, again.output
    shards, manifest = tfrecords.find_shards(str(tmp_path / "r" / "train"))
    uris, _, vectors = tfrecords.read_shards(shards, manifest["embedding_dim"])
    assert uris == list(map(str, crops)) and manifest["skipped"] == 0
    np.testing.assert_allclose(vectors[0], want[hashlib.sha256(new).digest()], rtol=1e-4, atol=1e-5)
