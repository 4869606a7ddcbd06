"""`meerkat run` on DeepMeerkat's own sample crops with real ImageNet weights, as a user runs it."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import SAMPLES, WEIGHTS, needs_shared
from contract import check_dict, check_tf1, check_tf2, jpeg_of, predictions

pytestmark = [pytest.mark.slow, needs_shared()]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "out"
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "meerkat",
            "run",
            str(SAMPLES),
            str(out),
            "--backbone",
            "mobilenet_v2",
            "--alpha",
            "0.35",
            "--weights",
            str(WEIGHTS),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(f"\nend-to-end `meerkat run` wall time: {seconds:.1f} s")
    print(
        "\n".join(
            line
            for line in proc.stdout.splitlines()
            if line.startswith(("Embedded", "Eval set", "Positive", "Negative", "Early stopping", "Keeping"))
        )
    )
    return out, proc.stdout


def test_reaches_real_accuracy_on_the_testing_set(real_run):
    out, stdout = real_run
    m = json.loads((out / "report" / "metrics.json").read_text())
    assert m["counts"] == {"total": 100, "positive": 50, "negative": 50}
    assert m["accuracy"] >= 0.72, m
    assert "Positive training samples: 100" in stdout and "Negative testing samples: 50" in stdout


def test_the_exported_epoch_is_the_best_on_validation(real_run):
    out, stdout = real_run
    run = json.loads((out / "report" / "run.json").read_text())
    rows = (out / "report" / "history.csv").read_text().splitlines()
    assert rows[0] == "epoch,step,train_loss,train_accuracy,validation_loss,validation_accuracy"
    losses = [float(row.split(",")[4]) for row in rows[1:]]
    assert run["best_epoch"] == 1 + losses.index(min(losses))
    assert run["validation_counts"] == {"positive": 15, "negative": 15}
    assert run["train_counts"] == {"positive": 85, "negative": 85}
    assert len(losses) == (run["stopped_epoch"] or 30)
    assert f"Keeping epoch {run['best_epoch']}, the lowest validation loss" in stdout


def test_both_loaders_serve_the_reported_predictions_positive_first(real_run):
    out, _ = real_run
    check_dict(out / "model")
    preds = predictions(out)
    uris = sorted(preds)
    raw = [open(u, "rb").read() for u in uris]
    served = check_tf2(out / "model", raw)
    np.testing.assert_allclose(served["scores"][:, 0], [preds[u][1] for u in uris], atol=1e-4)
    # DeepMeerkat's way: OpenCV BGR crops re-encoded to JPEG, through the TF1 loader by tensor name.
    tf1 = check_tf1(out / "model", [jpeg_of(u) for u in uris])
    truth = np.array([preds[u][2] == "positive" for u in uris])
    assert ((tf1[:, 0] > 0.5) == truth).mean() >= 0.72, "column 0 must be the positive class"


def test_tensorboard_logs_and_records_exist(real_run):
    out, _ = real_run
    from test_training import curves

    run = json.loads((out / "report" / "run.json").read_text())
    # Curves of the training and validation parts only: the Testing set is for the final report.
    assert curves(out / "logs") == {"train": run["epochs_trained"], "validation": run["epochs_trained"]}
    assert (out / "records" / "train-00000-of-00001.tfrecord.gz").is_file()
    assert (out / "docs" / "trainingdata.csv").read_text().count("\n") == 200
