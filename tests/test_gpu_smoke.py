"""bench/gpu_smoke.sh: its steps and JSON lines, checked on the CPU with --cpu-check
(what it measures on a GPU cannot be checked here)."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

SCRIPT = ROOT / "bench" / "gpu_smoke.sh"


def smoke(*argv):
    return subprocess.run(["bash", str(SCRIPT), *argv], capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "PYTHON": sys.executable, "PYTHONUNBUFFERED": "1"})


@pytest.mark.slow
def test_cpu_check_runs_every_step_and_prints_each_json_line():
    result = smoke("--cpu-check")
    assert result.returncode == 0, (result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    steps = [l.split(":")[0] for l in lines if l.startswith("== ")]
    assert steps == ["== CUDA test tier", "== train_speed fp32", "== train_speed bf16", "== eval_speed",
                     "== summary (cpu)"]
    records = [json.loads(l) for l in lines if l.startswith("{")]
    assert [(r["device"], r.get("precision")) for r in records] == [("cpu", "fp32"), ("cpu", "bf16"), ("cpu", None)]
    assert records[0]["fast"]["images_per_second"] > 0 and records[2]["seconds_32bit"] > 0
    assert any(l.endswith("skipped") or " skipped in " in l for l in lines)     # the CUDA tier, all skipped
    assert lines[-4:] == ["ok      CUDA test tier", "ok      train_speed fp32", "ok      train_speed bf16",
                          "ok      eval_speed"]


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
