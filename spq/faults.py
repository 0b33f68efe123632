"""Deterministic fault injection for tests: make a run fail at a named point, not at a time.

The environment variable SPQ_FAULTS lists faults as `POINT[#N]=ACTION` separated by `;`:
the N-th time (1-based, default 1) this process reaches `hit(POINT)`, ACTION happens.
Actions: `kill` (SIGKILL to this process: no cleanup, as a crash or an OOM killer),
`sigint` / `sigterm` (the signal to this process: a graceful stop request), `enospc`
(an OSError "No space left on device", as a full disk).

Example: SPQ_FAULTS="step#8=sigterm" stops a run after its 8th training step,
SPQ_FAULTS="step#3=kill" kills it there. Unset, `hit` costs a dictionary lookup.
`arm()` (called at the start of every run) rereads the variable and zeroes the counts,
so in-process tests can run several times with different faults.
"""
import errno
import os
import signal
from typing import Dict, Tuple

ACTIONS = ("kill", "sigint", "sigterm", "enospc")

_faults: Dict[Tuple[str, int], str] = {}
_counts: Dict[str, int] = {}


def parse(spec: str) -> Dict[Tuple[str, int], str]:
    """'step#8=sigterm;save=kill' -> {('step', 8): 'sigterm', ('save', 1): 'kill'};
    ValueError naming the bad entry."""
    faults = {}
    for entry in filter(None, (e.strip() for e in spec.split(";"))):
        point, _, action = entry.partition("=")
        name, _, nth = point.partition("#")
        if not name or action not in ACTIONS or (nth and not nth.isdigit()) or nth == "0":
            raise ValueError(f"SPQ_FAULTS entry {entry!r} is not POINT[#N]=ACTION with "
                             f"N >= 1 and ACTION one of {', '.join(ACTIONS)}")
        faults[(name, int(nth or 1))] = action
    return faults


def arm() -> None:
    """Read SPQ_FAULTS afresh and zero every count."""
    global _faults
    _faults = parse(os.environ.get("SPQ_FAULTS", ""))
    _counts.clear()


def hit(point: str) -> None:
    """Count one arrival at `point`; carry out the fault registered for this arrival, if any."""
    if not _faults:
        return
    n = _counts[point] = _counts.get(point, 0) + 1
    action = _faults.get((point, n))
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action in ("sigint", "sigterm"):
        os.kill(os.getpid(), signal.SIGINT if action == "sigint" else signal.SIGTERM)
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"(injected at {point}#{n})")


arm()
