"""Errors a user can act on: the CLI prints them as one line, without a traceback."""

import errno


class MeerkatError(Exception):
    """Bad input or environment; the message names the thing and the fix. Exit code 1."""

    exit_code = 1


class UsageError(MeerkatError):
    """Options that contradict each other or are out of range. Exit code 2, like click's."""

    exit_code = 2


def describe_os_error(e: OSError) -> str:
    """One line for an OSError, with the fix a user would try first."""
    hints = {
        errno.EACCES: "permission denied; choose another output folder or fix its permissions "
        "(in a container: --user $(id -u):$(id -g))",
        errno.EPERM: "operation not permitted; choose another output folder",
        errno.EROFS: "the file system is read-only; mount the output folder writable",
        errno.ENOSPC: "no space left on the device; free some space or choose another output folder",
        errno.EDQUOT: "disk quota exceeded; free some space or choose another output folder",
        errno.ENOTDIR: "a file stands where a folder is needed; remove it or choose another path",
    }
    return hints.get(e.errno, e.strerror or str(e))
