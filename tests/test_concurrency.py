"""Array tasks sharing a folder, and two runs fighting over one output folder (locks: test_locks.py)."""

import socket
import subprocess
import sys
import time

import pytest
from conftest import TINY, make_samples

from meerkat.embed import tfrecords

pytestmark = pytest.mark.slow


def test_two_processes_write_different_shards_into_one_folder(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(8, 8), test=(2, 2))
    assert cli("createdocs", samples, "--output", tmp_path / "o").exit_code == 0
    docs = tmp_path / "o" / "docs"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "meerkat",
                "preprocess",
                "--input-path",
                str(docs / "trainingdata.csv"),
                "--input-dict",
                str(docs / "dict.txt"),
                "--output-path",
                str(tmp_path / "shared" / "train"),
                "--shard-index",
                str(i),
                "--num-shards",
                "2",
                *TINY,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    shards, manifest = tfrecords.find_shards(str(tmp_path / "shared" / "train"))
    uris, _, _ = tfrecords.read_shards(shards, manifest["embedding_dim"])
    assert sorted(uris) == sorted(line.split(",")[0] for line in (docs / "trainingdata.csv").read_text().splitlines())


def test_second_run_on_the_same_output_refuses_while_the_first_works(tmp_path):
    samples = make_samples(tmp_path / "S", train=(6, 6), test=(3, 3))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "meerkat", "run", str(samples), str(out), *TINY, "--epochs", "3"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = out / ".meerkat.lock"
    deadline = time.time() + 60
    while not lock.exists() and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert lines[-1].startswith(
        f"error: {out} is in use by another meerkat run (pid {first.pid} on {socket.gethostname()},"
    )
    assert not lock.exists(), "the lock is released when the run ends"
