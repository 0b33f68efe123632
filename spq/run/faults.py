"""Deterministic fault injection for the crash tests: make a run fail at a named point,
not at a time. Nothing in the product calls it: `install()`, at the start of a command,
wraps two of the product's functions when faults are asked for, and changes nothing when
they are not.

The environment variable SPQ_FAULTS lists faults as `POINT[#N]=ACTION` separated by `;`:
the N-th time (1-based, default 1) this process reaches POINT, ACTION happens. Points:
`step`, after each training step (`spq.method.step.training_step`, as an epoch's loop
calls it: `spq.run.loop`); `write:NAME`, halfway through writing the bytes of a file named
NAME (`spq.files.write.write_all`: checkpoints, log.jsonl, retrieval.json, pictures). Actions: `kill` (SIGKILL to this process: no
cleanup, as a crash or an OOM killer), `sigint` / `sigterm` (the signal to this process:
a graceful stop request), `enospc` (an OSError "No space left on device", as a full disk).

Example: SPQ_FAULTS="step#8=sigterm" stops a run after its 8th training step;
SPQ_FAULTS="write:last.pth#2=kill" kills it inside the second write of last.pth.
"""
import errno
import functools
import os
import signal
from pathlib import Path
from typing import Dict, Tuple

ACTIONS = ("kill", "sigint", "sigterm", "enospc")

_faults: Dict[Tuple[str, int], str] = {}
_counts: Dict[str, int] = {}
_installed = False


def parse(spec: str) -> Dict[Tuple[str, int], str]:
    """'step#8=sigterm;write:a=kill' -> {('step', 8): 'sigterm', ('write:a', 1): 'kill'};
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


def install() -> None:
    """Arm the faults SPQ_FAULTS asks for; the first time any are asked for, wrap the
    product's functions that reach the points (they stay wrapped, and cost nothing while
    no fault is armed)."""
    global _installed
    arm()
    if _installed or not _faults:
        return
    from ..files import write
    from . import loop

    write_all = write.write_all

    @functools.wraps(write_all)
    def write_in_halves(f, data, path):
        view = memoryview(data)
        write_all(f, view[:len(view) // 2], path)
        f.flush()
        hit(f"write:{Path(path).name}")
        write_all(f, view[len(view) // 2:], path)

    training_step = loop.training_step

    @functools.wraps(training_step)
    def step_then_hit(*args, **kwargs):
        loss = training_step(*args, **kwargs)
        hit("step")
        return loss

    write.write_all, loop.training_step = write_in_halves, step_then_hit
    _installed = True
