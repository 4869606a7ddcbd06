"""A fault-injection hook for the resume tests: MEERKAT_KILL_AT=NAME makes the process SIGKILL
itself at the named point, exactly as `kill -9` or a wall-time limit would."""

import os
import signal


def point(name: str) -> None:
    if os.environ.get("MEERKAT_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
