"""The error type for problems the user can fix (bad data, paths, checkpoints)."""


class SPQError(Exception):
    """A user-facing error: the entry script prints its message and exits non-zero."""
