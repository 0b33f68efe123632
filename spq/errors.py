"""The error type for problems the user can fix (bad data, paths, checkpoints)."""


class SPQError(Exception):
    """A user-facing error: the entry script prints its message and exits non-zero."""


def os_error_message(e: OSError) -> str:
    """The one-line `error:` text for an OSError (a full disk, a folder one cannot write)."""
    return f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": ")
