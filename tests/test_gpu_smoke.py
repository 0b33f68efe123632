"""bench/gpu_smoke.sh: its steps and JSON lines, checked on the CPU with --cpu-check
(what it measures on a GPU cannot be checked here)."""
import json
import os
import sys

import pytest
import torch

import processes
from conftest import ROOT
from cpu_peak import NATIVE, precisions

SCRIPT = ROOT / "bench" / "gpu_smoke.sh"


def smoke(*argv):
    return processes.run(["bash", str(SCRIPT), *argv], timeout=1200,
                         env={**os.environ, "PYTHON": sys.executable, "PYTHONUNBUFFERED": "1"})


@pytest.mark.slow
def test_cpu_check_runs_every_step_and_prints_each_json_line():
    result = smoke("--cpu-check")
    assert result.returncode == 0, (result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    steps = [l.split(":")[0] for l in lines if l.startswith("== ")]
    assert steps == ["== CUDA test tier", "== train_speed", "== eval_speed", "== summary (cpu)"]
    train, evaluation = [json.loads(l) for l in lines if l.startswith("{")]
    timed = precisions([NATIVE], torch.device("cpu"))
    assert sorted(train["fast"]) == sorted(timed)
    assert all(train["fast"][p]["images_per_second"] > 0 for p in timed)
    assert all(evaluation["encode"][p]["images_per_second"] > 0 for p in timed)
    assert evaluation["seconds_32bit"] > 0
    assert any(l.endswith("skipped") or " skipped in " in l for l in lines)     # the CUDA tier, all skipped
    assert lines[-3:] == ["ok      CUDA test tier", "ok      train_speed", "ok      eval_speed"]


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_a_gpu_it_refuses_with_one_line():
    result = smoke()
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: PyTorch sees no CUDA device; run this on a GPU machine (or check the script with --cpu-check)"]


def test_unknown_argument():
    result = smoke("--gpu")
    assert result.returncode == 2 and "error: unknown argument --gpu" in result.stderr


@pytest.mark.parametrize("fast, expected", [("bf16", ["fp32", "bf16"]), ("fp32", ["fp32"])])
def test_native_precisions_follow_the_devices_bf16(monkeypatch, fast, expected):
    """--precision native times bf16 only where the device runs it natively (both kinds of
    CPU simulated); a precision asked by name is timed as asked."""
    import cpu_peak
    monkeypatch.setattr(cpu_peak, "auto_precision", lambda device: fast)
    assert precisions([NATIVE], torch.device("cpu")) == expected
    assert precisions([NATIVE, "bf16"], torch.device("cpu")) == ["fp32", "bf16"]
    assert precisions(["fp16"], torch.device("cpu")) == ["fp16"]
