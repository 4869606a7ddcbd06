"""Score image files or folders with an exported model: path,label,score_positive.

Files are read and checked by the same code as in preprocess (imagefiles), so predict uses the
same formats, applies the same pixel limit and skips the same files with the same reasons.
"""

import csv
import logging
import sys
from pathlib import Path

from meerkat import fileio
from meerkat.createdocs import list_images
from meerkat.errors import MeerkatError, UsageError
from meerkat.imagefiles import Unreadable, decode_error, for_model, read_bytes

log = logging.getLogger(__name__)


def _files(paths) -> list[Path]:
    # Folders by extension, as createdocs lists them; a path named on the command line is tried
    # whatever its name (a missing one is skipped as "file not found", like in preprocess).
    files = []
    for p in map(Path, paths):
        files += list_images(p)[0] if p.is_dir() else [p]
    return files


def skipped_path(output) -> Path:
    """scores.csv -> scores.skipped.csv"""
    output = Path(output)
    return output.with_name(f"{output.stem}.skipped.csv")


def predict(model_dir, paths, output=None, batch_size: int = 32, threshold: float = 0.5) -> list[tuple]:
    """Score `paths`; write the CSV to `output` (and the skipped files beside it), or to stdout."""
    if not 0 <= threshold <= 1:
        raise UsageError(f"--threshold must be between 0 and 1, received {threshold}")
    model_dir = Path(model_dir)
    if not (model_dir / "saved_model.pb").is_file():
        raise MeerkatError(f"no SavedModel in {model_dir}; pass the model/ folder written by `meerkat train`")
    files = _files(paths)
    if not files:
        raise MeerkatError(f"no images found in {', '.join(map(str, paths))}; pass image files or folders of them")

    import tensorflow as tf

    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    rows, skipped = [], []

    def score(batch):
        """Score [(path, bytes)]; a batch that a bad file breaks is halved until that file is alone."""
        try:
            scores = serve(image_bytes=tf.constant([data for _, data in batch]))["scores"].numpy()[:, 0]
        except tf.errors.InvalidArgumentError:
            if len(batch) == 1:
                skipped.append((str(batch[0][0]), decode_error(batch[0][0])))
            else:
                score(batch[: len(batch) // 2])
                score(batch[len(batch) // 2 :])
            return
        for (path, _), s in zip(batch, scores):
            s = round(float(s), 6)  # the value the CSV shows, so that its label agrees with it
            rows.append((str(path), "positive" if s >= threshold else "negative", s))

    for i in range(0, len(files), batch_size):
        batch = []
        for path in files[i : i + batch_size]:
            try:
                batch.append((path, for_model(read_bytes(path))))
            except Unreadable as e:
                skipped.append((str(path), str(e)))
        if batch:
            score(batch)

    if not rows:
        _warn(skipped, None)
        path, reason = skipped[0]
        raise MeerkatError(f"none of the {len(skipped)} files could be scored (reasons above); the first, {path}: {reason}")
    table = [("path", "label", "score_positive"), *((p, label, f"{s:.6f}") for p, label, s in rows)]
    if output:
        with fileio.atomic_open(output, "w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerows(table)
        # Always written, so that a rerun never leaves an older run's list beside the new scores.
        with fileio.atomic_open(skipped_path(output), "w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerows([("path", "reason"), *skipped])
    else:
        csv.writer(sys.stdout, lineterminator="\n").writerows(table)
    _warn(skipped, output)
    # The summary goes where the CSV does not, so that `meerkat predict ... > scores.csv` stays clean.
    summary = f"Scored {len(rows)} images, skipped {len(skipped)}" + (f" -> {output}" if output else "")
    print(summary, file=sys.stdout if output else sys.stderr, flush=True)
    return rows


def _warn(skipped, output) -> None:
    if not skipped:
        return
    where = f" (listed in {skipped_path(output)})" if output else ""
    log.warning("warning: skipped %d unusable files%s:", len(skipped), where)
    for path, reason in skipped[:10]:
        log.warning("  %s: %s", path, reason)
    if len(skipped) > 10:
        log.warning("  ... and %d more", len(skipped) - 10)
