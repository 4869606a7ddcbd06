"""An output folder never inside an input folder, and no input inside an output folder.

meerkat reads its inputs recursively (Samples, folders of videos) and writes crops, reports and
frames that look like inputs, so an output inside an input is read back on the next run as data
(report PNGs filed as negatives), and an input inside an output sits where meerkat replaces its
own files. Both are refused before any work, in one line naming both paths. Paths are compared as
the file system resolves them (symlinks followed), so a link does not hide the nesting; the line
shows where a link leads when it differs from the path given.
"""

import os
from collections.abc import Iterable

from meerkat.core.errors import UsageError


def _real(path) -> str:
    return os.path.realpath(os.fspath(path))


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def _an(name: str) -> str:
    return f"{'an' if name[:1] in 'AEIOU' else 'a'} {name}"  # an OUTPUT, a SAMPLES


def _shown(path) -> str:
    """`path` as given, with where it leads when a symlink makes that another place."""
    real = _real(path)
    return f"{path} ({real})" if real != os.path.abspath(os.fspath(path)) else str(path)


def check_outside(output, inputs: Iterable[tuple[str, object]], output_name: str = "OUTPUT") -> None:
    """Refuse `output` when it lies in (or is) one of the `inputs` folders.

    `inputs`: (what the user calls it, path) pairs, e.g. ("SAMPLES", Path("Samples")); files
    among them are ignored."""
    out = _real(output)
    for name, path in inputs:
        real = _real(path)
        if os.path.isdir(real) and _within(out, real):
            where = "is" if out == real else "lies inside"
            raise UsageError(
                f"{output_name} {_shown(output)} {where} {name} {_shown(path)}: meerkat would read its own outputs "
                f"back as input; choose {_an(output_name)} outside {path}"
            )


def check_apart(output, inputs: Iterable[tuple[str, object]], output_name: str = "OUTPUT") -> None:
    """Refuse `output` when it lies in (or is) one of the `inputs` folders, or one of the inputs
    (a folder or a file) lies in it."""
    inputs = list(inputs)
    check_outside(output, inputs, output_name)
    out = _real(output)
    for name, path in inputs:
        if _within(_real(path), out):
            raise UsageError(
                f"{name} {_shown(path)} lies inside {output_name} {_shown(output)}, where meerkat writes; move it "
                f"out, or choose {_an(output_name)} that does not hold it"
            )
