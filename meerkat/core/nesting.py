"""An output folder never inside an input folder, and no input inside an output folder.

meerkat reads its inputs recursively (Samples, folders of videos) and writes crops, reports and
frames that look like inputs, so an output inside an input is read back on the next run as data
(report PNGs filed as negatives), and an input inside an output sits where meerkat replaces its
own files. Both are refused before any work, in one line naming both paths. Paths are compared as
the file system resolves them (symlinks followed), so a link does not hide the nesting.
"""

import os
from collections.abc import Iterable

from meerkat.core.errors import UsageError


def _real(path) -> str:
    return os.path.realpath(os.fspath(path))


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def check_apart(output, inputs: Iterable[tuple[str, object]], output_name: str = "OUTPUT") -> None:
    """Refuse `output` when it lies in (or is) one of `inputs`, or one of them lies in it.

    `inputs`: (what the user calls it, path) pairs, e.g. ("SAMPLES", Path("Samples")); a file
    input only counts when it lies inside the output."""
    out = _real(output)
    for name, path in inputs:
        real = _real(path)
        if os.path.isdir(real) and _within(out, real):
            raise UsageError(
                f"{output_name} {output} lies inside {name} {path}: meerkat would read its own outputs back as "
                f"input; choose an {output_name} outside {path}"
            )
        if _within(real, out):
            raise UsageError(
                f"{name} {path} lies inside {output_name} {output}, where meerkat writes; move it out, or choose "
                f"an {output_name} that does not hold it"
            )
