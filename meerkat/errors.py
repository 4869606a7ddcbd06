"""Errors a user can act on: the CLI prints them as one line, without a traceback."""


class MeerkatError(Exception):
    """Bad input or environment; the message names the thing and the fix. Exit code 1."""

    exit_code = 1


class UsageError(MeerkatError):
    """Options that contradict each other or are out of range. Exit code 2, like click's."""

    exit_code = 2
