"""Score image files or folders with an exported model: path, label and the score columns.

DeepMeerkat's pair: path,label,score_positive, labelled positive when score_positive (as printed)
reaches --threshold. A model of other classes: path,label,score_<class>... in dict.txt's order,
labelled with the top class (--threshold is the pair's). apply/scorer.py names the columns.

Files are read and checked by the same code as in preprocess (imagefiles), so predict uses the
same formats, applies the same pixel limit and skips the same files with the same reasons.
With --output FILE, FILE and FILE-stem.skipped.csv replace only files meerkat wrote there; their
folder stays the user's, so no hidden file of meerkat's appears in it (core.ownership's rule).
"""

import logging
import sys
from pathlib import Path

import pandas as pd

from meerkat.apply.card import threshold_note
from meerkat.apply.scorer import Scorer, label, score_each, shown
from meerkat.core import atomic, ownership
from meerkat.core.errors import MeerkatError, UsageError
from meerkat.samples.imagefiles import Unreadable, for_model, list_images, read_bytes, warn_skipped, write_skipped

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
    if output:  # before the work, and before either file is written: never scores without their list
        for path in (output, skipped_path(output)):
            ownership.check_ours(path, "predict's output")
    files = _files(paths)
    if not files:
        raise MeerkatError(f"no images found in {', '.join(map(str, paths))}; pass image files or folders of them")

    from meerkat.embed.decode import decode_error

    model = Scorer(model_dir)
    # Where the summary goes, never into the CSV on stdout; only the pair's labels depend on --threshold.
    if model.classes.is_pair and (note := threshold_note(model_dir, threshold)):
        print(note, file=sys.stdout if output else sys.stderr, flush=True)
    rows, skipped = [], []

    def score(batch):
        scored, bad = score_each(model, batch)
        skipped.extend((str(path), decode_error(path)) for path in bad)
        for path, p in scored:
            rows.append((str(path), label(model.classes, p, threshold), *shown(model.classes, p)))

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
        warn_skipped(skipped)
        path, reason = skipped[0]
        raise MeerkatError(
            f"none of the {len(skipped)} files could be scored (reasons above); the first, {path}: {reason}"
        )
    table = pd.DataFrame(rows, columns=["path", "label", *model.classes.score_columns()])
    if output:
        with atomic.atomic_open(output, "w", newline="", **atomic.TEXT) as f:
            table.to_csv(f, index=False, lineterminator="\n", float_format="%.6f")
        # Always written, so that a rerun never leaves an older run's list beside the new scores.
        write_skipped(skipped_path(output), skipped)
    else:  # the bytes the file would hold: stdout's own encoding may refuse a name that is not UTF-8
        text = table.to_csv(index=False, lineterminator="\n", float_format="%.6f")
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode(**atomic.TEXT))
        sys.stdout.buffer.flush()
    warn_skipped(skipped, skipped_path(output) if output else None)
    # The summary goes where the CSV does not, so that `meerkat predict ... > scores.csv` stays clean.
    summary = f"Scored {len(rows)} images, skipped {len(skipped)}" + (f" -> {output}" if output else "")
    print(atomic.shown(summary), file=sys.stdout if output else sys.stderr, flush=True)
    return rows
