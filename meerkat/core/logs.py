"""Where meerkat's log lines go: progress and counts to stdout, warnings and errors to stderr.

The CLI sets this up once per command, and a spawned worker (scan --workers) once as it starts,
since it begins with Python's default logging.
"""

import logging
import sys

from meerkat.core.atomic import shown


class _ToStream(logging.Handler):
    def emit(self, record):
        # The streams of the moment, not those at set-up: a test or a progress bar may swap them.
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        print(shown(self.format(record)), file=stream, flush=True)  # a name's bytes that are not UTF-8 as \xNN


def configure_logging(debug: bool) -> None:
    """Send the `meerkat` loggers' lines to stdout and stderr, at DEBUG with --debug, else INFO."""
    root = logging.getLogger("meerkat")
    root.handlers[:] = [_ToStream()]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False
