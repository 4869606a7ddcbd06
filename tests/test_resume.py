"""kill -9 at any point of `meerkat run`, then the same command again: it finishes, reuses the
finished work, and ends with the model and metrics of a run that was never interrupted."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY, make_samples

pytestmark = pytest.mark.slow


def meerkat_run(samples, out, *extra, kill_at=None):
    env = {**os.environ, "MEERKAT_KILL_AT": kill_at or ""}
    cmd = [
        sys.executable,
        "-m",
        "meerkat",
        "run",
        str(samples),
        str(out),
        *TINY,
        "--epochs",
        "3",
        "--batch-size",
        "4",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def served_scores(model_dir, uris):
    import tensorflow as tf

    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    return serve(image_bytes=tf.constant([open(u, "rb").read() for u in uris]))["scores"].numpy()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    samples = make_samples(root / "Samples", train=(6, 6), test=(3, 3))
    out = root / "reference"
    proc = meerkat_run(samples, out)
    assert proc.returncode == 0, proc.stderr
    uris = sorted(line.split(",")[0] for line in (out / "docs" / "testingdata.csv").read_text().splitlines())
    return samples, out, uris


@pytest.mark.parametrize(
    "kill_at, evidence",
    [
        (
            "createdocs:training",
            "train-00000-of-00001.tfrecord.gz: 12 images, 0 embeddings from the cache, 12 to compute",
        ),
        ("preprocess:eval:0", "Reusing finished shard"),
        ("train:epoch-2", "Resuming training from the checkpoint at step 6 of 9"),
        ("export", "Resuming training from the checkpoint at step 9 of 9"),
    ],
)
def test_killed_run_resumes_to_the_uninterrupted_result(reference, tmp_path, kill_at, evidence):
    samples, ref, uris = reference
    out = tmp_path / "out"
    killed = meerkat_run(samples, out, kill_at=kill_at)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert not (out / "report" / "run.json").exists()
    again = meerkat_run(samples, out)
    assert again.returncode == 0, again.stdout + again.stderr
    assert evidence in again.stdout, again.stdout
    assert "ended without finishing" in again.stderr
    assert (out / "report" / "metrics.json").read_bytes() == (ref / "report" / "metrics.json").read_bytes()
    assert (out / "report" / "predictions.csv").read_bytes() == (ref / "report" / "predictions.csv").read_bytes()
    scores = served_scores(out / "model", uris)
    assert np.array_equal(scores, served_scores(ref / "model", uris))
    assert scores[:, 0].std() > 1e-3, "a degenerate model would make this comparison meaningless"
    assert not list(out.rglob(".*.tmp")), "no temporaries may survive the rerun"


def test_a_finished_run_is_not_redone_unless_forced(reference):
    samples, ref, _ = reference
    again = meerkat_run(samples, ref)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert "to compute" not in again.stdout and "Training on" not in again.stdout
    forced = meerkat_run(samples, ref, "--force")
    assert forced.returncode == 0
    # --force rewrites the shards (from the content-keyed cache, still valid) and retrains.
    assert "12 images, 12 embeddings from the cache, 0 to compute" in forced.stdout
    assert "Training on 12 embeddings" in forced.stdout
