"""train + export: the SavedModel contract, TensorBoard logs and the report, on a tiny run."""

import json

import numpy as np
import pytest
from conftest import assert_user_error, fit, make_samples
from contract import check_dict, check_tf1, check_tf2, predictions
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def test_exported_model_meets_the_contract_and_matches_the_report(tiny_run):
    model = tiny_run / "model"
    check_dict(model)
    preds = predictions(tiny_run)
    uris = sorted(preds)
    # The very bytes preprocess read: served scores must equal the training-time eval scores.
    images = [open(u, "rb").read() for u in uris]
    served = check_tf2(model, images)
    reported = np.array([preds[u][1] for u in uris])
    np.testing.assert_allclose(served["scores"][:, 0], reported, atol=1e-4)
    assert [s.decode() for s in served["label"]] == [preds[u][0] for u in uris]
    np.testing.assert_allclose(check_tf1(model, images), served["scores"], atol=1e-5)


def test_model_accepts_png_and_crops_of_any_size(tiny_run):
    import cv2

    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((17, 300), (640, 480), (224, 224))]
    images = [cv2.imencode(ext, c)[1].tobytes() for c, ext in zip(crops, (".jpg", ".png", ".jpg"), strict=True)]
    assert check_tf2(tiny_run / "model", images)["scores"].shape == (3, 2)


def test_tensorboard_has_loss_and_accuracy_for_train_and_eval(tiny_run):
    for split in ("train", "validation"):
        acc = EventAccumulator(str(tiny_run / "logs" / split)).Reload()
        tags = set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])
        assert {"loss", "accuracy"} <= tags, (split, tags)
        assert len(acc.Tensors("loss")) == 3  # one point an epoch


def test_report_has_metrics_for_every_eval_image(tiny_run):
    from collections import Counter

    # report.metrics' arithmetic is checked by hand in test_report.py; here, that the files agree.
    m = json.loads((tiny_run / "report" / "metrics.json").read_text())
    assert m["counts"] == {"total": 6, "positive": 3, "negative": 3}
    rows = predictions(tiny_run)
    assert len(rows) == 6
    assert sorted(label for _, _, label in rows.values()) == ["negative"] * 3 + ["positive"] * 3
    for predicted, score, _ in rows.values():
        assert predicted == ("positive" if score > 0.5 else "negative") or score == 0.5
    tally = Counter((label, predicted) for predicted, _, label in rows.values())
    names = ("positive", "negative")
    assert m["confusion_matrix"]["matrix"] == [[tally[t, p] for p in names] for t in names]
    run = json.loads((tiny_run / "report" / "run.json").read_text())
    assert run["backbone"]["name"] == "mobilenet_v2" and run["eval_records"] == 6


def test_train_from_preprocessed_sets_and_its_errors(tiny_run, tmp_path, cli):
    rec = tiny_run / "records"
    result = fit(cli, rec / "train", f"{rec}/eval-*.tfrecord.gz", tmp_path / "t", "--max-steps", 2)
    assert result.exit_code == 0, result.output
    assert "Eval, step 2: on train set" in result.output
    assert (tmp_path / "t" / "model" / "saved_model.pb").is_file()

    assert_user_error(
        fit(cli, tmp_path / "none", rec / "eval", tmp_path / "u"),
        1,
        "no preprocessed shards match",
    )
    (tmp_path / "part").mkdir()
    shard = next(rec.glob("train-*.tfrecord.gz"))
    (tmp_path / "part" / "x-00001-of-00003.tfrecord.gz").write_bytes(shard.read_bytes())
    assert_user_error(
        fit(cli, tmp_path / "part" / "x", rec / "eval", tmp_path / "u"),
        1,
        "shards 0, 1, 2 of 3",
    )


def test_run_needs_both_preprocessed_sets(tiny_run, tmp_path, cli):
    result = cli("run", tmp_path, tmp_path / "o", "--preprocessed-train-set", tiny_run / "records" / "train")
    assert_user_error(result, 2, "--preprocessed-eval-set")


@pytest.mark.slow
def test_run_skips_bad_images_lists_them_and_finishes(tmp_path, cli):
    from conftest import TINY

    samples = make_samples(tmp_path / "S", train=(4, 4), test=(2, 2))
    pos = samples / "Training" / "Positives"
    jpeg = (pos / "p0.jpg").read_bytes()
    (pos / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (pos / "zero.jpg").write_bytes(b"")
    (pos / "letter.jpg").write_text("Dear colleague, the crops are attached.")
    result = cli("run", samples, tmp_path / "out", *TINY, "--epochs", 1, "--no-balance")
    assert result.exit_code == 0, result.output
    skipped = (tmp_path / "out" / "records" / "train-00000-of-00001.skipped.csv").read_text()
    for name in ("truncated.jpg", "zero.jpg", "letter.jpg"):
        assert name in skipped and name in result.output
    manifest = json.loads((tmp_path / "out" / "records" / "train-00000-of-00001.json").read_text())
    assert (manifest["records"], manifest["skipped"]) == (8, 3)
    assert (tmp_path / "out" / "model" / "saved_model.pb").is_file()


def test_run_reports_layout_errors_before_loading_anything(tmp_path, cli):
    from conftest import TINY

    assert_user_error(cli("run", tmp_path / "missing", tmp_path / "o", *TINY), 1, "Samples folder not found")
    samples = make_samples(tmp_path / "S", train=(3, 3), test=(2, 2))
    for p in (samples / "Training" / "Positives").iterdir():
        p.unlink()
    assert_user_error(cli("run", samples, tmp_path / "o", *TINY), 1, "no images in", "Positives")
