"""Training the head: the validation split, early stopping on it, the exported best epoch, class weights.

The Testing set is for the final report only: nothing of it may reach the choice of epoch.
"""

import csv
import json
import math
import zlib

import numpy as np
import pytest
from conftest import TINY, make_samples, needs_shared, write_image
from contract import predictions
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from meerkat.core.config import TrainConfig
from meerkat.core.errors import MeerkatError
from meerkat.train import fit
from meerkat.train.data import Embeddings, class_weights, load, split, validation_size

# Training that overfits after a few epochs: the disc tells the classes apart, but 4 of every 16
# crops a class are labelled the other way round. The head first learns the disc (the validation
# loss falls), then memorises the flipped crops (it rises again).
NOISY = ["--epochs", "30", "--patience", "3", "--validation-fraction", "0.25", "--batch-size", "8"]


def make_noisy_samples(root, n=16, flipped=4):
    for i in range(n):
        write_image(root / "Training" / "Positives" / f"p{i}.jpg", zlib.crc32(f"np{i}".encode()), positive=i >= flipped)
        write_image(root / "Training" / "Negatives" / f"n{i}.jpg", zlib.crc32(f"nn{i}".encode()), positive=i < flipped)
    for i in range(3):
        write_image(root / "Testing" / "Positives" / f"p{i}.jpg", zlib.crc32(f"tp{i}".encode()), positive=True)
        write_image(root / "Testing" / "Negatives" / f"n{i}.jpg", zlib.crc32(f"tn{i}".encode()))
    return root


def history(out) -> list[dict]:
    with open(out / "report" / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def curves(logs) -> dict[str, int]:
    """Points of the loss curve in each TensorBoard folder of logs/ that has one (other folders, e.g.
    the report's figures of the final evaluation, hold no loss)."""
    found = {}
    for folder in sorted(p for p in logs.iterdir() if p.is_dir()):
        events = EventAccumulator(str(folder)).Reload()
        if "loss" in events.Tags()["tensors"]:  # tf.summary.scalar writes tensors
            found[folder.name] = len(events.Tensors("loss"))
    return found


def embeddings(labels, vectors, uris=None) -> Embeddings:
    uris = uris or [f"/crops/{i:03d}.jpg" for i in range(len(labels))]
    manifest = {"labels": ["positive", "negative"]}
    return Embeddings(list(uris), np.asarray(labels, np.int64), np.asarray(vectors, np.float32), manifest)


# --- the split ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Real embeddings of 20 positive and 40 negative crops."""
    from typer.testing import CliRunner

    from meerkat.cli import app

    root = tmp_path_factory.mktemp("split")
    samples = make_samples(root / "S", train=(20, 40), test=(2, 2))
    run = CliRunner().invoke(app, ["createdocs", str(samples), "--output", str(root / "run"), "--no-balance"])
    assert run.exit_code == 0, run.output
    docs = root / "run" / "docs"
    args = ["--input-dict", docs / "dict.txt", "--input-path", docs / "trainingdata.csv", "--output-path", root / "t"]
    run = CliRunner().invoke(app, ["preprocess", *map(str, args), *TINY])
    assert run.exit_code == 0, run.output
    return load(str(root / "t"), "train")


def test_the_split_is_stratified_seeded_and_independent_of_record_order(records):
    fitted, held = split(records, 0.15, seed=42)
    assert held.counts() == {"positive": 3, "negative": 6}  # round(0.15 * 20), round(0.15 * 40)
    assert fitted.counts() == {"positive": 17, "negative": 34}
    assert sorted(fitted.uris + held.uris) == sorted(records.uris)
    for part in (fitted, held):  # every record keeps its own label and vector
        index = [records.uris.index(u) for u in part.uris]
        assert np.array_equal(part.labels, records.labels[index])
        assert np.array_equal(part.vectors, records.vectors[index])

    assert split(records, 0.15, seed=42)[1].uris == held.uris
    others = {tuple(split(records, 0.15, seed=s)[1].uris) for s in (1, 2, 3)}
    assert tuple(held.uris) not in others and len(others) == 3, "another seed must give another split"

    shuffled = records.subset(np.random.default_rng(0).permutation(len(records.uris)))
    assert shuffled.uris != records.uris
    again_fitted, again_held = split(shuffled, 0.15, seed=42)
    assert set(again_held.uris) == set(held.uris) and set(again_fitted.uris) == set(fitted.uris)

    whole, none = split(records, 0, seed=42)
    assert whole is records and none is None


def test_validation_size_rounds_half_up_and_holds_out_at_least_one():
    assert [validation_size(n, 0.15) for n in (2, 3, 6, 10, 30, 100)] == [1, 1, 1, 2, 5, 15]
    assert [validation_size(n, 0.5) for n in (3, 5)] == [2, 3]
    assert validation_size(100, 0) == 0


def test_a_fraction_that_leaves_too_few_to_train_on_is_refused_naming_the_counts(records):
    few = records.subset([*np.flatnonzero(records.labels == 0)[:3], *np.flatnonzero(records.labels == 1)])
    with pytest.raises(MeerkatError, match=r"holds out 2 of the 3 positive training images, leaving 1 to train on"):
        split(few, 0.5, seed=42)
    assert split(few, 0.15, seed=42)[1].counts() == {"positive": 1, "negative": 6}


def test_validation_options_are_checked(cli, tmp_path):
    for flags, word in (
        (["--validation-fraction", "0.6"], "--validation-fraction"),
        (["--patience", "-1"], "--patience"),
    ):
        result = cli("train", "--train-data", "x", "--eval-data", "y", "--output-dir", tmp_path, *flags)
        assert result.exit_code == 2 and word in result.output, result.output
    result = cli("train", "--train-data", "x", "--eval-data", "y", "--output-dir", tmp_path, "--class-weights", "x")
    assert result.exit_code == 2 and "--class-weights must be none or balanced" in result.output, result.output


# --- early stopping and the exported epoch -------------------------------------------------------


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    from typer.testing import CliRunner

    from meerkat.cli import app

    root = tmp_path_factory.mktemp("noisy")
    samples = make_noisy_samples(root / "S")
    out = root / "out"
    result = CliRunner().invoke(app, ["run", str(samples), str(out), *TINY, *NOISY])
    assert result.exit_code == 0, result.output
    return out, result.output


@needs_shared()  # the overfitting is a property of the real ImageNet features
def test_early_stopping_exports_the_best_epoch(noisy_run):
    import tensorflow as tf

    out, output = noisy_run
    rows = history(out)
    run = json.loads((out / "report" / "run.json").read_text())
    losses = [float(r["validation_loss"]) for r in rows]
    best = 1 + losses.index(min(losses))
    assert run["best_epoch"] == best and 1 < best < len(rows), (best, losses)
    assert run["stopped_epoch"] == len(rows) == best + 3 < 30, "stops once patience (3) runs out"
    assert f"Early stopping after epoch {len(rows)} of 30" in output
    assert f"Keeping epoch {best}, the lowest validation loss ({losses[best - 1]:.4f})" in output
    assert [int(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1))
    assert [int(r["step"]) for r in rows] == [3 * e for e in range(1, len(rows) + 1)]  # 24 crops, batch 8

    # The exported model is the best epoch's: its loss on the validation crops is that epoch's figure,
    # not the last epoch's.
    _, held = split(load(str(out / "records" / "train"), "train"), 0.25, seed=42)
    assert held.counts() == run["validation_counts"] == {"positive": 4, "negative": 4}
    assert run["train_counts"] == {"positive": 12, "negative": 12}
    serve = tf.saved_model.load(str(out / "model")).signatures["serving_default"]
    scores = serve(image_bytes=tf.constant([open(u, "rb").read() for u in held.uris]))["scores"].numpy()
    served_loss = float(-np.log(scores[np.arange(len(held.uris)), held.labels]).mean())
    assert served_loss == pytest.approx(losses[best - 1], abs=2e-4)
    assert abs(losses[-1] - losses[best - 1]) > 0.01
    # ... and the report on Testing is made with it too.
    preds = predictions(out)
    uris = sorted(preds)
    served = serve(image_bytes=tf.constant([open(u, "rb").read() for u in uris]))["scores"].numpy()
    np.testing.assert_allclose(served[:, 0], [preds[u][1] for u in uris], atol=1e-4)


def test_the_testing_set_is_not_read_while_training(noisy_run, tmp_path, cli):
    out, output = noisy_run
    epochs = len(history(out))
    assert "on eval set" not in output
    assert output.count("/ on validation set ") == epochs
    assert curves(out / "logs") == {"train": epochs, "validation": epochs}
    # Another evaluation set (here, the training shards themselves) changes nothing in training.
    rec = out / "records"
    other = tmp_path / "other"
    result = cli("train", "--train-data", rec / "train", "--eval-data", rec / "train", "--output-dir", other, *NOISY)
    assert result.exit_code == 0, result.output
    assert (other / "report" / "history.csv").read_bytes() == (out / "report" / "history.csv").read_bytes()
    assert json.loads((other / "report" / "metrics.json").read_text())["counts"]["total"] == 32


def test_without_validation_the_last_epoch_is_exported_and_history_has_empty_validation(noisy_run, tmp_path, cli):
    out, _ = noisy_run
    rec = out / "records"
    flags = ["--validation-fraction", "0", "--epochs", "4", "--batch-size", "8"]
    result = cli("train", "--train-data", rec / "train", "--eval-data", rec / "eval", "--output-dir", tmp_path, *flags)
    assert result.exit_code == 0, result.output
    assert "Eval, step 16: on train set" in result.output and "validation set" not in result.output
    assert "without validation (the last epoch is exported)" in result.output
    text = (tmp_path / "report" / "history.csv").read_text()
    assert text.splitlines()[0] == "epoch,step,train_loss,train_accuracy,validation_loss,validation_accuracy"
    assert [line.split(",")[4:] for line in text.splitlines()[1:]] == [["", ""]] * 4
    run = json.loads((tmp_path / "report" / "run.json").read_text())
    assert (run["best_epoch"], run["stopped_epoch"], run["validation_counts"]) == (4, None, None)
    assert run["train_counts"] == {"positive": 16, "negative": 16}
    assert curves(tmp_path / "logs") == {"train": 4}


# --- class weights -----------------------------------------------------------------------------


def test_balanced_class_weights_on_a_3_to_1_set_are_worked_by_hand():
    labels = np.array([0, 1, 1, 1])  # 1 positive, 3 negatives
    np.testing.assert_allclose(class_weights(labels, 2, "balanced"), [4 / (2 * 1), 4 / (2 * 3)])
    np.testing.assert_array_equal(class_weights(labels, 2, "none"), [1, 1])

    # A head whose logits are [0, log 3] for any input: p(positive) = 1/4 everywhere.
    cfg = TrainConfig(hidden_units=4)
    head = fit.build_head(3, 2, cfg)
    for layer in (head.layers[0], head.layers[2]):
        layer.kernel.assign(np.zeros(layer.kernel.shape, np.float32))
    head.layers[2].bias.assign(np.array([0.0, math.log(3)], np.float32))
    data = embeddings(labels, np.ones((4, 3)))
    plain, accuracy, probs = fit.evaluate(head, data)
    np.testing.assert_allclose(probs[:, 0], 0.25, rtol=1e-6)
    # Cross-entropy: log 4 for the positive, log 4/3 for each negative.
    assert plain == pytest.approx((math.log(4) + 3 * math.log(4 / 3)) / 4, rel=1e-6)
    weighted = fit.evaluate(head, data, class_weights(labels, 2, "balanced"))[0]
    assert weighted == pytest.approx((2 * math.log(4) + 3 * (2 / 3) * math.log(4 / 3)) / 4, rel=1e-6)
    assert accuracy == 0.75


@pytest.mark.parametrize("mode, p_positive, loss", [("none", 0.25, 0.562335), ("balanced", 0.5, math.log(2))])
@pytest.mark.slow
def test_training_minimises_the_weighted_loss(tmp_path, mode, p_positive, loss):
    """Crops that all look alike, 1 positive to 3 negatives: the plain loss is lowest at p = 1/4, the
    balanced one, where both classes weigh alike, at p = 1/2 (loss log 2)."""
    data = embeddings([0] * 10 + [1] * 30, np.ones((40, 8)))
    cfg = TrainConfig(
        epochs=150, batch_size=40, learning_rate=0.02, dropout=0.0, validation_fraction=0, class_weights=mode
    )
    trained = fit.train(data, cfg, tmp_path / "logs", tmp_path / "head.npz", "fp")
    _, _, probs = fit.evaluate(trained.head, data)
    assert probs[:, 0] == pytest.approx(np.full(40, p_positive), abs=0.01)
    assert float(trained.history[-1]["train_loss"]) == pytest.approx(loss, abs=1e-3)
    expected = {"none": [1.0, 1.0], "balanced": [2.0, 2 / 3]}[mode]
    assert list(trained.weights.values()) == pytest.approx(expected)
