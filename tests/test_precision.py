"""--precision float16 on the CPU: the path a GPU takes by default, which CI otherwise never runs."""

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import embed, fit, make_samples
from contract import check_tf2, predictions

from meerkat.embed import tfrecords


@pytest.mark.slow
def test_float16_embeddings_and_model_match_float32(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
    assert cli("createdocs", samples, "--output", tmp_path / "run").exit_code == 0
    docs = tmp_path / "run" / "docs"
    for precision in ("float32", "float16"):
        for name, csv_name in (("train", "trainingdata.csv"), ("eval", "testingdata.csv")):
            result = embed(cli, docs, tmp_path / precision / name, "--precision", precision, csv_name=csv_name)
            assert result.exit_code == 0, result.output

    vectors = {}
    for precision in ("float32", "float16"):
        shards, manifest = tfrecords.find_shards(str(tmp_path / precision / "train"))
        assert manifest["backbone"]["precision"] == precision
        uris, _, v = tfrecords.read_shards(shards, manifest["embedding_dim"])
        vectors[precision] = v[np.argsort(uris)]
    # Stored as float32 (a FloatList) whatever the compute precision.
    first = tf.train.Example.FromString(next(iter(tf.data.TFRecordDataset(str(shards[0]), "GZIP"))).numpy())
    assert first.features.feature["embedding"].WhichOneof("kind") == "float_list"
    a, b = vectors["float32"], vectors["float16"]
    assert not np.array_equal(a, b)  # float16 really computed
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99, cosine

    out = tmp_path / "model16"
    result = fit(cli, tmp_path / "float16" / "train", tmp_path / "float16" / "eval", out, "--epochs", 1)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "report" / "run.json").read_text())["backbone"]["precision"] == "float16"
    preds = predictions(out)
    uris = sorted(preds)
    served = check_tf2(out / "model", [open(u, "rb").read() for u in uris])["scores"]
    np.testing.assert_allclose(served[:, 0], [preds[u][1] for u in uris], atol=1e-4)  # as for float32
