"""Child processes for the tests and the tools beside them, ended whole on a timeout.

`subprocess.run(..., timeout=T)` kills only the process it started: a script's own
children (bench/gpu_smoke.sh's benchmarks, torchrun's workers) would go on running,
orphaned, at full speed. `run` starts the child in a process group of its own and, on
a timeout or any other exception in the caller (an interrupted test), kills that whole
group before it raises.
"""
import os
import signal
import subprocess


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL to every process of `process`'s group (a group it leads), then reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def run(command, timeout=None, input=None, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run(command, capture_output=True, text=True, ...) in a new process group;
    on a timeout, the whole group is killed and subprocess.TimeoutExpired raised."""
    kwargs.setdefault("text", True)
    process = subprocess.Popen(command, stdin=subprocess.PIPE if input is not None else None,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True, **kwargs)
    try:
        stdout, stderr = process.communicate(input, timeout=timeout)
    except BaseException:
        kill_group(process)
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
