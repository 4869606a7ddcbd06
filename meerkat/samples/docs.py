"""The docs files: `path,label` CSVs and dict.txt, as createdocs writes them and preprocess and
train read them (DeepMeerkat's CreateDocs.py format)."""

import csv
import io
from pathlib import Path

from meerkat.core import atomic
from meerkat.core.errors import MeerkatError
from meerkat.samples.classes import Classes, canonical, from_labels

# The files a user may edit and save again: Excel and Notepad start a UTF-8 file with a byte-order
# mark, which utf-8-sig drops (and only there, at the start). Names that are not UTF-8: their bytes.
USER_TEXT = {**atomic.TEXT, "encoding": "utf-8-sig"}


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    """`path,label` rows, no header, written atomically."""
    with atomic.atomic_open(path, "w", newline="", **atomic.TEXT) as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def read_csv(path, classes: Classes | None = None, dict_txt=None) -> list[tuple[str, str]]:
    """Rows of a docs CSV; a `path,label` header line is allowed. With `classes` (those of the file
    `dict_txt`), each label is one of them (as written, else ignoring case); another is refused."""
    path = Path(path)
    if not path.is_file():
        raise MeerkatError(f"CSV not found: {path}; run `meerkat createdocs` first or fix --input-path")
    try:
        with open(path, newline="", **USER_TEXT) as f:  # a name that is not UTF-8: its bytes, as written
            text = f.read()
        if "\0" in text:  # any bytes decode so; a NUL says they are no text
            raise csv.Error("binary data, not text")
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as e:
        raise MeerkatError(
            f"{path} is not a docs CSV ({e}); pass trainingdata.csv or testingdata.csv from `meerkat createdocs`"
        ) from None
    if rows and [c.strip().lower() for c in rows[0]] == ["path", "label"]:
        rows = rows[1:]
    out = []
    for n, row in enumerate(rows, start=1):
        if not row:
            continue
        if len(row) != 2:
            raise MeerkatError(f"{path}, row {n}: expected `path,label`, received {len(row)} fields: {row!r}")
        label = row[1].strip()
        if classes is not None:
            found = canonical(label, classes)
            if found is None:
                expected = ", ".join(
                    map(repr, classes.names)
                )  # quoted and escaped: one that only looks right shows why
                raise MeerkatError(
                    f"{path}, row {n}: unknown label {label!r} for {row[0]}; expected one of {expected}"
                    + (f" (the labels of {dict_txt})" if dict_txt else "")
                )
            label = found
        out.append((row[0], label))
    return out


def write_dict(path: Path, classes: Classes) -> None:
    """dict.txt: the labels in model order, one a line."""
    atomic.write_text(path, "".join(f"{label}\n" for label in classes.names))


def read_dict(path) -> list[str]:
    """Labels of a dict.txt, in model order: two or more, DeepMeerkat's pair in lower case."""
    path = Path(path)
    if not path.is_file():
        raise MeerkatError(f"dict file not found: {path}; it is written by `meerkat createdocs` as docs/dict.txt")
    try:
        text = path.read_text(encoding=USER_TEXT["encoding"])
    except UnicodeDecodeError:
        text = "\0"  # not text: reported as the wrong labels below
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    try:
        if "\0" in text:
            raise MeerkatError("it is not text: expected a class name a line")
        labels = list(from_labels(labels).names)
    except MeerkatError as e:
        received = ", ".join(map(repr, labels))  # quoted and escaped: a label that only looks right shows why
        raise MeerkatError(
            f"{path}: {e}; received {received[:80] or 'nothing'}; use the dict.txt written by `meerkat createdocs`"
        ) from None
    return labels
