"""Shared helpers and fixtures: running the commands in-process, small datasets, reference runs.

The commands (main_SPQ.py, python -m spq.index, python -m spq.plot) run in this process
through their main(argv) with stdout and stderr captured (`spq`, `index_cli`, `plot_cli`):
each would otherwise start an interpreter that imports torch and kornia again. An
exception escaping main() fails the test, as a traceback would have. Real processes are
started only where a process is the point (`spq_process`: kills, signals as the shell
sees them, torchrun, the end-to-end smoke runs).
"""
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import main_SPQ
import processes
from cifar_fixture import write_cifar10
from spq import faults
from spq.index import main as index_main
from spq.plot import main as plot_main

ROOT = Path(__file__).resolve().parents[1]
# runs on the CIFAR-shaped `data`: its first 5 training images of each class (50: 3 steps
# of 16 an epoch; all 50 queries), 16-pixel views (a quarter of the work of 32)
SMALL = ["--device", "cpu", "--batch_size", "16", "--seed", "1", "--input_size", "16",
         "--train_per_class", "5"]


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


def read_log(out):
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


def assert_same_weights(a, b):
    wa = torch.load(a, weights_only=True)["model"]
    wb = torch.load(b, weights_only=True)["model"]
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-6, rtol=0)


def assert_clean_failure(result, code, *fragments):
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("cifar"), per_batch=40, test=50)


@pytest.fixture(scope="session")
def two_epochs(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = spq("--data_dir", data, "--output_dir", out, "--epochs", 2, "--eval_epoch", 1, *SMALL)
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.fixture(scope="session")
def one_epoch(data, tmp_path_factory):
    """The settings of `two_epochs` for one epoch: resumed with --epochs 2, it must give
    `two_epochs` exactly (the default LR schedule is constant for the first 11 epochs, so
    --epochs changes nothing before the last one); `two_epochs` is the uninterrupted run
    that resumes are compared with."""
    out = tmp_path_factory.mktemp("first")
    result = spq("--data_dir", data, "--output_dir", out, "--epochs", 1, "--eval_epoch", 1, *SMALL)
    assert result.returncode == 0, result.stderr
    return out
