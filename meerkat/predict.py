"""Score image files or folders with an exported model: path,label,score_positive."""

import csv
import logging
import sys
from pathlib import Path

from meerkat import fileio
from meerkat.createdocs import list_images
from meerkat.errors import MeerkatError

log = logging.getLogger(__name__)


def _files(paths) -> list[Path]:
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += list_images(p)[0]
        elif p.is_file():
            files.append(p)
        else:
            raise MeerkatError(f"not found: {p}; pass image files or folders of them")
    return files


def predict(model_dir, paths, output=None, batch_size: int = 32) -> list[tuple]:
    import tensorflow as tf

    model_dir = Path(model_dir)
    if not (model_dir / "saved_model.pb").is_file():
        raise MeerkatError(f"no SavedModel in {model_dir}; pass the model/ folder written by `meerkat train`")
    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]

    def score(batch):
        out = serve(image_bytes=tf.constant([f.read_bytes() for f in batch]))
        return zip(batch, [s.decode() for s in out["label"].numpy()], out["scores"].numpy()[:, 0])

    rows, skipped = [], []
    files = _files(paths)
    for i in range(0, len(files), batch_size):
        batch = files[i : i + batch_size]
        try:
            rows += score(batch)
        except (tf.errors.InvalidArgumentError, OSError):
            for f in batch:  # find the bad file(s) and keep the rest
                try:
                    rows += score([f])
                except (tf.errors.InvalidArgumentError, OSError) as e:
                    skipped.append(f)
                    log.warning("warning: skipped %s: %s", f, str(e).strip().splitlines()[0])
    table = [("path", "label", "score_positive"), *((str(f), label, f"{s:.6f}") for f, label, s in rows)]
    if output:
        with fileio.atomic_open(output, "w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerows(table)
        log.info("Scored %d images (%d skipped) -> %s", len(rows), len(skipped), output)
    else:
        csv.writer(sys.stdout, lineterminator="\n").writerows(table)
    return rows
