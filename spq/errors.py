"""The error type for problems the user can fix (bad data, paths, checkpoints), and the
exit status a command gives for them."""
import sys
from typing import Callable


class SPQError(Exception):
    """A user-facing error: the entry script prints its message and exits non-zero."""


def shown(value, limit: int = 80) -> str:
    """A stored value in a one-line message: its repr on one line, cut to `limit` characters."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def os_error_message(e: OSError) -> str:
    """The one-line `error:` text for an OSError (a full disk, a folder one cannot write)."""
    return f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": ")


def exit_status(work: Callable[[], None]) -> int:
    """Run a command's work: 0, or 1 after printing the one-line `error:` of an SPQError or
    an OSError (no traceback)."""
    try:
        work()
    except SPQError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(os_error_message(e), file=sys.stderr)
        return 1
    return 0
