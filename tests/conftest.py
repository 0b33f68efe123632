"""Shared helpers and fixtures: running main_SPQ.py, small datasets, reference runs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifar_fixture import write_cifar10

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--device", "cpu", "--batch_size", "32", "--seed", "1"]


def spq(*argv, cwd=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(ROOT / "main_SPQ.py"), *map(str, argv)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


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
def three_epochs(data, tmp_path_factory):
    """An uninterrupted 3-epoch run with the settings of `two_epochs`: the reference for resumes."""
    out = tmp_path_factory.mktemp("straight")
    result = spq("--data_dir", data, "--output_dir", out, "--epochs", 3, "--eval_epoch", 1, *SMALL)
    assert result.returncode == 0, result.stderr
    return out
