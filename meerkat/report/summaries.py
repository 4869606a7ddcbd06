"""TensorBoard's eval summaries in logs/eval: the PR curve, the AUCs, the threshold table, and figures as images.

For species: top-1 (top-3) accuracy, macro-F1 and each class's precision, recall and F1 as scalars,
and the PR curve and threshold table of animal against background when there is a background class.

They go in an event file of their own, which each finished run replaces: its name ends in
REPORT_EVENTS_SUFFIX, so a rerun finds it and leaves any other file in logs/eval alone.
"""

from pathlib import Path

import numpy as np

from meerkat.core import atomic, ownership
from meerkat.report import mistakes
from meerkat.report.facts import Facts
from meerkat.report.facts import number as _num

REPORT_EVENTS_SUFFIX = ".meerkat-report"


def write(facts: Facts, drawn: dict[str, bytes], logdir: Path) -> None:
    """A PR curve, the AUCs, the threshold table, and the confusion matrix, ROC and mistakes sheet as
    images (`drawn`: the page's figures by file name; facts.mistakes as the page left them)."""
    import tensorflow as tf
    from tensorboard.plugins.pr_curve import summary as pr_summary

    folder = atomic.ensure_dir(logdir)
    for old in sorted(folder.glob(f"events.out.tfevents.*{REPORT_EVENTS_SUFFIX}")):
        ownership.remove(old, "an earlier report's TensorBoard summaries")
    step = _last_step(facts)
    ev = facts.evaluation
    sheet = mistakes.sheet(facts.mistakes)
    before = set(folder.iterdir())
    writer = tf.summary.create_file_writer(str(folder), filename_suffix=REPORT_EVENTS_SUFFIX)
    ownership.claim_growing(*(set(folder.iterdir()) - before))
    pair = facts.classes.is_pair
    positive = facts.names[0] if pair else "animal (every class but the background)"
    with writer.as_default(step=step):
        if ev is not None:
            pb = pr_summary.pb(
                "pr_curve",
                labels=ev["is_positive"],
                predictions=np.clip(ev["scores"], 0, 1),
                num_thresholds=201,
                display_name="precision-recall (eval set)",
                description=f"Positive class: {positive}; AP {_num(facts.metrics.get('average_precision'))}.",
            )
            tf.summary.experimental.write_raw_pb(pb.SerializeToString(), step=step)
        if not pair:
            _species_scalars(facts.metrics)
        for key in ("roc_auc", "average_precision"):
            if facts.metrics.get(key) is not None:
                tf.summary.scalar(f"eval/{key}", facts.metrics[key])
        for name, tag in (("confusion.png", "confusion_matrix"), ("roc.png", "roc_curve")):
            if name in drawn:
                _png_summary(tag, drawn[name], f"report/{name}")
        if sheet is not None:
            import cv2

            ok, png = cv2.imencode(".png", sheet[..., ::-1])
            if ok:
                what = "at threshold 0.5" if pair else "of each class"
                _png_summary("mistakes", png.tobytes(), f"the most confident mistakes {what}")
        if ev is not None:
            tf.summary.text("threshold_table", _markdown_table(ev["table"]))
    writer.close()


def _species_scalars(m: dict) -> None:
    """top-1 (top-3) accuracy and macro-F1, and each class's precision, recall and F1 (eval/recall/deer)."""
    import tensorflow as tf

    for key in ("top1", "top3", "macro_f1"):
        if m.get(key) is not None:
            tf.summary.scalar(f"eval/{key}", m[key])
    for name, figures in m["per_class"].items():
        for key in ("precision", "recall", "f1"):
            if figures[key] is not None:
                tf.summary.scalar(f"eval/{key}/{name}", figures[key])


def _png_summary(tag: str, png: bytes, description: str) -> None:
    """An image summary of a PNG as it is (tf.summary.image would decode and encode it again)."""
    import tensorflow as tf
    from tensorboard.plugins.image import metadata

    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # the IHDR chunk
    tf.summary.write(
        tag=tag,
        tensor=tf.constant([str(width).encode(), str(height).encode(), png]),
        metadata=metadata.create_summary_metadata(display_name=None, description=description),
    )


def _last_step(facts: Facts) -> int:
    """Training's last step, so the summaries sit at the end of its curves."""
    h = facts.history
    if h is not None and not h.empty and "step" in h.columns:
        return int(h["step"].max())
    return 0


def _markdown_table(rows: list[dict]) -> str:
    head = "| threshold | precision | recall | FPR | kept | accuracy | note |\n|---|---|---|---|---|---|---|\n"
    return head + "".join(
        f"| {r['threshold']:g} | {_num(r['precision'], 3)} | {_num(r['recall'], 3)} | "
        f"{_num(r['false_positive_rate'], 3)} | {_num(r['kept_fraction'], 3)} | {_num(r['accuracy'], 3)} | "
        f"{r['note']} |\n"
        for r in rows
    )
