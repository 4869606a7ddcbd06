"""Checks of the exported model's contract, shared by the tiny and the end-to-end tests."""

import csv
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf


def jpeg_of(path) -> bytes:
    """What DeepMeerkat feeds: an OpenCV BGR crop, re-encoded as JPEG."""
    return cv2.imencode(".jpg", cv2.imread(str(path)))[1].tobytes()


def check_tf2(model_dir: Path, images: list[bytes]) -> dict:
    loaded = tf.saved_model.load(str(model_dir))
    serve = loaded.signatures["serving_default"]
    args, kwargs = serve.structured_input_signature
    assert args == () and list(kwargs) == ["image_bytes"]
    assert kwargs["image_bytes"].dtype == tf.string and kwargs["image_bytes"].shape.as_list() == [None]
    out = serve(image_bytes=tf.constant(images))
    assert set(out) == {"scores", "prediction", "label"}
    scores, prediction, label = out["scores"].numpy(), out["prediction"].numpy(), out["label"].numpy()
    assert scores.dtype == np.float32 and scores.shape == (len(images), 2)
    np.testing.assert_allclose(scores.sum(1), 1.0, atol=1e-5)
    assert out["prediction"].dtype == tf.int64 and (prediction == scores.argmax(1)).all()
    assert [s.decode() for s in label] == [("positive", "negative")[i] for i in prediction]

    keyed = loaded.signatures["predict_with_key"](
        image_bytes=tf.constant(images), key=tf.constant([f"k{i}" for i in range(len(images))])
    )
    assert [k.decode() for k in keyed["key"].numpy()] == [f"k{i}" for i in range(len(images))]
    np.testing.assert_allclose(keyed["scores"].numpy(), scores, atol=1e-6)
    return {"scores": scores, "label": label}


def check_tf1(model_dir: Path, images: list[bytes]) -> np.ndarray:
    """DeepMeerkat's loader, verbatim: tensor names, not signatures."""
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(model_dir))
        scores = sess.run("final_ops/softmax:0", {"Placeholder:0": images})
    assert scores.shape == (len(images), 2)
    return scores


def check_dict(model_dir: Path) -> None:
    assert (model_dir / "dict.txt").read_text() == "positive\nnegative\n"
    assert (model_dir / "assets" / "dict.txt").read_text() == "positive\nnegative\n"


def predictions(run_dir: Path) -> dict[str, tuple[str, float]]:
    with open(run_dir / "report" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["image_uri"]: (r["predicted"], float(r["score_positive"]), r["label"]) for r in rows}
