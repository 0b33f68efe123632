"""tests/processes.py: a child that outlives its timeout is ended with everything it started."""
import os
import subprocess
import sys
import time

import pytest

import processes


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:         # a zombie is dead
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_timeout_ends_the_whole_process_group(tmp_path):
    pid_file = tmp_path / "grandchild"
    script = f"sleep 300 & echo $! > {pid_file}; wait"       # a script whose own child runs on
    with pytest.raises(subprocess.TimeoutExpired):
        processes.run(["bash", "-c", script], timeout=2)
    grandchild = int(pid_file.read_text())
    for _ in range(50):                                       # SIGKILL is delivered at once;
        if not alive(grandchild):                             # reaping by init may lag a little
            break
        time.sleep(0.1)
    assert not alive(grandchild), "the script's child outlived the timeout"


def test_output_and_status_come_back():
    done = processes.run([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"],
                         timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
