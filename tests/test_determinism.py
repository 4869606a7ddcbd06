"""Same inputs and seed on the same machine: byte-identical docs, records, metrics and model."""

import gzip
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY, make_samples
from test_resume import served_scores

pytestmark = pytest.mark.slow


def graph_def(saved_model_pb: bytes):
    from tensorflow.core.protobuf import saved_model_pb2

    return saved_model_pb2.SavedModel.FromString(saved_model_pb).meta_graphs[0].graph_def


def names(saved_model_pb: bytes) -> list:
    """Each node's name and the functions its debug info says it came from."""
    return [(n.name, *n.experimental_debug_info.original_func_names) for n in graph_def(saved_model_pb).node]


def test_the_export_does_not_depend_on_what_the_process_did_before(tmp_path):
    """A cold run, a resumed one and one on a warm cache trace other functions and build other
    layers before they export (TensorFlow and Keras number both process-wide): the same model."""
    import tensorflow as tf

    from meerkat.core.config import BackboneConfig, TrainConfig
    from meerkat.embed import backbones
    from meerkat.embed.decode import decode_batch
    from meerkat.embed.embedder import Embedder
    from meerkat.train.export import export_model
    from meerkat.train.fit import build_head

    spec = backbones.resolve(BackboneConfig("mobilenet_v2", 0.35, "none"))  # random, repeatable weights

    def build():
        return Embedder(spec, ["/CPU:0"]), build_head(spec.arch.embedding_dim(spec.alpha), 2, TrainConfig())

    embedder, head = build()
    export_model(embedder, head, ["positive", "negative"], tmp_path / "first")
    tf.function(lambda b: decode_batch(b, 8)).get_concrete_function(tf.TensorSpec([None], tf.string))
    later_embedder, later_head = build()
    later_head.set_weights(head.get_weights())
    export_model(later_embedder, later_head, ["positive", "negative"], tmp_path / "later")
    first, later = ((tmp_path / d / "saved_model.pb").read_bytes() for d in ("first", "later"))
    assert names(first) == names(later)
    assert first == later
    # Function names are numbered only where they are now: the graph calls no function.
    assert not graph_def(first).library.function


def test_two_runs_are_identical(tmp_path):
    samples = make_samples(tmp_path / "Samples", train=(8, 10), test=(3, 3))
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        cmd = [
            sys.executable,
            "-m",
            "meerkat",
            "run",
            str(samples),
            str(out),
            *TINY,
            "--epochs",
            "4",
            "--batch-size",
            "4",
            "--seed",
            "3",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
    a, b = outs
    for rel in (
        "docs/trainingdata.csv",
        "docs/testingdata.csv",
        "docs/dict.txt",
        "report/metrics.json",
        "report/predictions.csv",
        "report/history.csv",
    ):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    for shard in ("train-00000-of-00001.tfrecord.gz", "eval-00000-of-00001.tfrecord.gz"):
        payload = [gzip.decompress((out / "records" / shard).read_bytes()) for out in outs]
        assert payload[0] == payload[1], shard
    # Two processes (two pids), two output folders: the same model, which names neither.
    models = [(out / "model" / "saved_model.pb").read_bytes() for out in outs]
    assert models[0] == models[1]
    assert str(tmp_path).encode() not in models[0]
    strings = [s for n in graph_def(models[0]).node for s in n.attr["value"].tensor.string_val]
    assert b"dict.txt" in strings
    for value in strings:  # dict.txt's name and the labels: no path, host name or pid
        assert b"/" not in value and socket.gethostname().encode() not in value and b".tmp" not in value, value
    uris = [line.split(",")[0] for line in (a / "docs" / "testingdata.csv").read_text().splitlines()]
    assert np.array_equal(served_scores(a / "model", uris), served_scores(b / "model", uris))
