"""A fault-injection hook for the resume tests: MEERKAT_KILL_AT=NAME makes the process SIGKILL
itself at the named point, exactly as `kill -9`, `docker kill` or a wall-time limit would."""

import os
import signal


def point(name: str) -> None:
    if os.environ.get("MEERKAT_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
        # Still here: we are pid 1 of a container, which the kernel shields from its own signals.
        # Exiting without cleanup leaves the same state behind (the kernel frees fds and locks).
        os._exit(128 + signal.SIGKILL)
