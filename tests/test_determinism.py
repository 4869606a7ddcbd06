"""Same inputs and seed on the same machine: byte-identical docs, records, metrics and model outputs."""

import gzip
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY, make_samples
from test_resume import served_scores

pytestmark = pytest.mark.slow


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
    uris = [line.split(",")[0] for line in (a / "docs" / "testingdata.csv").read_text().splitlines()]
    assert np.array_equal(served_scores(a / "model", uris), served_scores(b / "model", uris))
