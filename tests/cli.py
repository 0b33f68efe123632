"""The commands run in-process through their main(argv), stdout and stderr captured
(`spq`, `index_cli`, `plot_cli`, `export_cli`, `results_cli`), or in a process of their own
where a process is the point (`spq_process`: kills, signals as the shell sees them). Each
would otherwise start an interpreter that imports torch and kornia again. An exception
escaping main() fails the test, as a traceback would have."""
import contextlib
import io
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import torch

import main_SPQ
import processes
from conftest import ROOT
from spq.export import main as export_main
from spq.index import main as index_main
from spq.plot import main as plot_main
from spq.prepare import main as prepare_main
from spq.results import main as results_main
from spq.split import main as split_main
from spq.run import faults


@dataclass
class Ran:
    """What a command gave: its exit status and everything it printed."""
    returncode: int
    stdout: str
    stderr: str


def run_main(main, argv, cwd=None) -> Ran:
    """main(argv) in this process, as `python PROGRAM ARGV` would run it: stdout and stderr
    captured, SystemExit (argparse's errors and --help) turned into the exit status. The
    global random states are put back afterwards (a process of its own would not have
    touched this one's), faults are disarmed, and the run must leave the signal handlers
    and the thread count as it found them."""
    argv = [str(a) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    threads = torch.get_num_threads()
    try:
        with contextlib.ExitStack() as stack:
            if cwd is not None:
                stack.enter_context(contextlib.chdir(cwd))
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(err))
            try:
                code = main(argv)
            except SystemExit as e:
                if e.code is None or isinstance(e.code, int):
                    code = e.code or 0
                else:                       # sys.exit("message"): printed, status 1
                    print(e.code, file=sys.stderr)
                    code = 1
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        spec = os.environ.pop("SPQ_FAULTS", None)
        faults.arm()                        # nothing armed for what runs next in this process
        if spec is not None:
            os.environ["SPQ_FAULTS"] = spec
    assert {s: signal.getsignal(s) for s in handlers} == handlers, "a signal handler was left behind"
    assert torch.get_num_threads() == threads, "the run changed torch's thread count"
    return Ran(code, out.getvalue(), err.getvalue())


def spq(*argv, cwd=None) -> Ran:
    """python main_SPQ.py ARGV, in this process."""
    return run_main(main_SPQ.main, argv, cwd)


def index_cli(*argv) -> Ran:
    """python -m spq.index ARGV, in this process."""
    return run_main(index_main, argv)


def plot_cli(*argv) -> Ran:
    """python -m spq.plot ARGV, in this process."""
    return run_main(plot_main, argv)


def spq_process(*argv, cwd=None, env=None, timeout=600) -> subprocess.CompletedProcess:
    """python main_SPQ.py ARGV in a process of its own (`env` adds to the environment)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return processes.run([sys.executable, str(ROOT / "main_SPQ.py"), *map(str, argv)],
                         cwd=cwd, env=env, timeout=timeout)


def export_cli(*argv) -> Ran:
    """python -m spq.export ARGV, in this process."""
    return run_main(export_main, argv)


def results_cli(*argv) -> Ran:
    """python -m spq.results ARGV, in this process."""
    return run_main(results_main, argv)


def split_cli(*argv) -> Ran:
    """python -m spq.split ARGV, in this process."""
    return run_main(split_main, argv)


def prepare_cli(*argv) -> Ran:
    """python -m spq.prepare ARGV, in this process."""
    return run_main(prepare_main, argv)
