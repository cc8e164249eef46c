"""Errors meant for a person: one line that names the problem and the fix."""


class DrivesimError(Exception):
    """Bad input or a failed precondition. The CLI prints `error: <message>` and exits 2."""
