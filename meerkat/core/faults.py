"""Fault injection for the tests, at named points of the work:

- MEERKAT_KILL_AT=NAME makes the process SIGKILL itself there, exactly as `kill -9`, `docker kill`
  or a wall-time limit would (the resume tests);
- MEERKAT_FAIL_AT=NAME raises InjectedFault there, as a bug in that step would.
"""

import os
import signal


class InjectedFault(RuntimeError):
    """Raised at the point MEERKAT_FAIL_AT names."""


def point(name: str) -> None:
    if os.environ.get("MEERKAT_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
        # Still here: we are pid 1 of a container, which the kernel shields from its own signals.
        # Exiting without cleanup leaves the same state behind (the kernel frees fds and locks).
        os._exit(128 + signal.SIGKILL)
    if os.environ.get("MEERKAT_FAIL_AT") == name:
        raise InjectedFault(f"fault injected at {name} (MEERKAT_FAIL_AT)")
