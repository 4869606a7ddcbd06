"""kill -9 at any point of `meerkat run`, then the same command again: it finishes, reuses the
finished work, and ends with the model, metrics, history and choice of epoch of a run that was never
interrupted; an early-stopped run included."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY, make_samples, needs_shared
from test_training import NOISY, make_noisy_samples

from meerkat.core import temporaries

pytestmark = pytest.mark.slow

# 6 + 6 training crops, 1 + 1 of them held out for validation: 10 to train on, 3 steps an epoch.
PLAIN = ["--epochs", "3", "--batch-size", "4"]


def meerkat_run(samples, out, *extra, kill_at=None, flags=PLAIN):
    env = {**os.environ, "MEERKAT_KILL_AT": kill_at or ""}
    cmd = [sys.executable, "-m", "meerkat", "run", str(samples), str(out), *TINY, *flags, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def served_scores(model_dir, uris):
    import tensorflow as tf

    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    return serve(image_bytes=tf.constant([open(u, "rb").read() for u in uris]))["scores"].numpy()


def assert_same_model(out, ref):
    """ref's saved_model.pb, byte for byte, whatever the process did before exporting; and the card says so."""
    from meerkat.embed.weights import sha256

    digests = [sha256(d / "model" / "saved_model.pb") for d in (out, ref)]
    assert digests[0] == digests[1]
    assert json.loads((out / "model" / "meerkat.json").read_text())["model_sha256"] == digests[0]


def _reference(root, samples, flags):
    out = root / "reference"
    proc = meerkat_run(samples, out, flags=flags)
    assert proc.returncode == 0, proc.stderr
    uris = sorted(line.split(",")[0] for line in (out / "docs" / "testingdata.csv").read_text().splitlines())
    return samples, out, uris, proc.stdout


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    ref = _reference(root, make_samples(root / "Samples", train=(6, 6), test=(3, 3)), PLAIN)
    assert "validating on 2 (1 positive, 1 negative)" in ref[3]
    return ref


@pytest.fixture(scope="module")
def stopped_reference(tmp_path_factory):
    """Overfits: the best validation loss is at epoch 6, and patience (3) runs out after epoch 9 of 30."""
    root = tmp_path_factory.mktemp("resume-stopped")
    ref = _reference(root, make_noisy_samples(root / "Samples"), NOISY)
    assert "Early stopping after epoch 9 of 30" in ref[3] and "Keeping epoch 6" in ref[3], ref[3]
    return ref


@pytest.mark.parametrize(
    "setup, kill_at, evidence",
    [
        (
            "reference",
            "createdocs:training",
            ["train-00000-of-00001.tfrecord.gz: 12 images, 0 embeddings from the cache, 12 to compute"],
        ),
        ("reference", "preprocess:eval:0", ["Reusing finished shard"]),
        ("reference", "train:epoch-2", ["Resuming training from the checkpoint at step 6 of 9"]),
        ("reference", "export", ["Resuming training from the checkpoint at step 9 of 9"]),
        # After the best epoch (6), with patience left: the history and best weights come from the checkpoint.
        pytest.param(
            "stopped_reference",
            "train:epoch-8",
            ["Resuming training from the checkpoint at step 24 of 90", "Early stopping after epoch 9 of 30"],
            marks=needs_shared(),
        ),
        pytest.param(
            "stopped_reference",
            "export",
            ["Resuming training from the checkpoint at step 27 of 90", "Early stopping after epoch 9 of 30"],
            marks=needs_shared(),
        ),
    ],
)
def test_killed_run_resumes_to_the_uninterrupted_result(request, tmp_path, cli, setup, kill_at, evidence):
    samples, ref, uris, _ = request.getfixturevalue(setup)
    flags = PLAIN if setup == "reference" else NOISY
    out = tmp_path / "out"
    killed = meerkat_run(samples, out, kill_at=kill_at, flags=flags)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert not (out / "report" / "run.json").exists()
    again = cli("run", samples, out, *TINY, *flags)  # the rerun in this process: no second TensorFlow start
    assert again.exit_code == 0, again.output
    for line in evidence:
        assert line in again.output, again.output
    assert "ended without finishing" in again.output
    for name in ("metrics.json", "predictions.csv", "history.csv"):
        assert (out / "report" / name).read_bytes() == (ref / "report" / name).read_bytes(), name
    assert_same_model(out, ref)  # ref was exported by a fresh process, out by this one after other tests' work
    runs = [json.loads((d / "report" / "run.json").read_text()) for d in (out, ref)]
    for key in ("best_epoch", "stopped_epoch", "epochs_trained", "train_counts", "validation_counts"):
        assert runs[0][key] == runs[1][key], key
    scores = served_scores(out / "model", uris)
    assert np.array_equal(scores, served_scores(ref / "model", uris))
    assert scores[:, 0].std() > 1e-3, "a degenerate model would make this comparison meaningless"
    assert not [p for p in out.rglob("*") if temporaries.is_temp(p)], "no temporaries may survive the rerun"


def test_a_run_on_a_warm_embedding_cache_exports_the_cold_runs_model(reference, tmp_path, cli):
    samples, ref, _, _ = reference
    out = tmp_path / "warm"
    warm = cli("run", samples, out, *TINY, *PLAIN, "--cache-dir", ref / "cache")
    assert warm.exit_code == 0, warm.output
    assert "12 images, 12 embeddings from the cache, 0 to compute" in warm.output  # so fewer functions traced
    for name in ("metrics.json", "predictions.csv"):
        assert (out / "report" / name).read_bytes() == (ref / "report" / name).read_bytes(), name
    assert_same_model(out, ref)


def test_a_finished_run_is_not_redone_unless_forced(reference, cli):
    samples, ref, _, _ = reference
    again = cli("run", samples, ref, *TINY, *PLAIN)
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert "to compute" not in again.output and "Training on" not in again.output
    forced = cli("run", samples, ref, *TINY, *PLAIN, "--force")
    assert forced.exit_code == 0
    # --force rewrites the shards (from the content-keyed cache, still valid) and retrains.
    assert "12 images, 12 embeddings from the cache, 0 to compute" in forced.output
    assert "Training on 10 embeddings (5 positive, 5 negative)" in forced.output


def test_a_report_step_that_fails_is_listed_in_run_json_and_the_rerun_redoes_only_the_report(tmp_path, cli):
    samples = make_samples(tmp_path / "Samples", train=(4, 4), test=(2, 2))
    out = tmp_path / "out"
    first = cli("run", samples, out, *TINY, "--epochs", 1, env={"MEERKAT_FAIL_AT": "report:card"})
    assert first.exit_code == 0, first.output
    assert "report is incomplete (the model card could not be written)" in first.output
    run = json.loads((out / "report" / "run.json").read_text())
    assert run["report_problems"] == ["the model card"]
    assert not (out / "model" / "meerkat.json").exists() and (out / "report" / "index.html").is_file()
    model = out / "model" / "saved_model.pb"
    exported, metrics = os.stat(model), (out / "report" / "metrics.json").read_bytes()

    again = cli("run", samples, out, *TINY, "--epochs", 1)
    assert again.exit_code == 0, again.output
    assert "redoing only the report" in again.output and "Training on" not in again.output
    card = json.loads((out / "model" / "meerkat.json").read_text())
    from meerkat.embed.weights import sha256

    assert card["model_sha256"] == sha256(model)
    after = os.stat(model)
    assert (after.st_ino, after.st_mtime_ns) == (exported.st_ino, exported.st_mtime_ns)  # not exported again
    assert (out / "report" / "metrics.json").read_bytes() == metrics
    assert json.loads((out / "report" / "run.json").read_text())["report_problems"] == []

    assert "nothing to do" in cli("run", samples, out, *TINY, "--epochs", 1).output
