"""Shared helpers and fixtures: small datasets, reference runs, checks of a run's output.

The commands themselves run through tests/cli.py, imported only by the tests that run
them (and by the fixtures here that train, when they are used), so that the method's
tests (tests/method/) import no command line.
"""
import json
import os
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n N: N workers share the cores, one thread each (children too), so that
    # OpenMP threads never outnumber the cores and spin against each other
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

from cifar_fixture import write_cifar10

ROOT = Path(__file__).resolve().parents[1]
# runs on the CIFAR-shaped `data`: its first 5 training images of each class (50: 3 steps
# of 16 an epoch; all 50 queries), 16-pixel views (a quarter of the work of 32)
SMALL = ["--device", "cpu", "--batch_size", "16", "--seed", "1", "--input_size", "16",
         "--train_per_class", "5"]


def read_log(out):
    """The epoch rows of a run's log.jsonl (below its header line)."""
    lines = [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]
    assert not lines or set(lines[0]) == {"run"}, "log.jsonl does not start with its header"
    return lines[1:]


def reseal(ckpt, path):
    """Write a checkpoint edited by a test as this program writes one: with its checksum."""
    from spq.files.torchfile import with_checksum
    torch.save(with_checksum(ckpt), path)


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
    from cli import spq
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
    from cli import spq
    out = tmp_path_factory.mktemp("first")
    result = spq("--data_dir", data, "--output_dir", out, "--epochs", 1, "--eval_epoch", 1, *SMALL)
    assert result.returncode == 0, result.stderr
    return out
