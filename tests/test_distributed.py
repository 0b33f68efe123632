"""torchrun with the gloo backend on the CPU: the distributed step equals the single-process
one, and the command line trains, evaluates, checkpoints and resumes under torchrun."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, assert_same_weights, read_log, spq
from ddp_step import GLOBAL_BATCH, TEMPERATURE, fixed_views, fresh_model
from spq.distributed import World, shard
from spq.loss import cqc_loss
from spq.train import loss_on_views


def torchrun(*argv, nproc=2):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={nproc}", *map(str, argv)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


@pytest.mark.parametrize("n,size", [(8, 2), (7, 2), (10, 3), (2, 4), (0, 2)])
def test_shards_cover_every_item_once_in_order(n, size):
    parts = [shard(n, World(r, size)) for r in range(size)]
    assert [i for p in parts for i in range(n)[p]] == list(range(n))
    lengths = [p.stop - p.start for p in parts]
    assert max(lengths) - min(lengths) <= 1


@pytest.fixture(scope="module")
def ddp_step(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_step")
    result = torchrun(ROOT / "tests" / "ddp_step.py", out)
    assert result.returncode == 0, result.stderr
    return {(r, m): torch.load(out / f"rank{r}_{m}.pt", weights_only=True)
            for r in range(2) for m in ("eval", "train")}


def single_process(mode):
    """The same step in one process: the whole global batch, BatchNorm per rank's shard in
    train mode (each rank normalises its own rows, as DDP without --sync_bn does)."""
    model = fresh_model().train(mode == "train")
    view_a, view_b = fixed_views()
    if mode == "eval":
        loss = loss_on_views(model, view_a, view_b, TEMPERATURE)
    else:
        parts = [shard(GLOBAL_BATCH, World(r, 2)) for r in range(2)]
        xa = torch.cat([model(view_a[p]) for p in parts])
        xb = torch.cat([model(view_b[p]) for p in parts])
        loss = cqc_loss(xa, xb, model.quantize(xa), model.quantize(xb), TEMPERATURE)
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in model.named_parameters()}


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_distributed_loss_and_gradients_equal_single_process(ddp_step, mode):
    loss, grads = single_process(mode)
    for rank in range(2):
        got = ddp_step[(rank, mode)]
        torch.testing.assert_close(got["loss"], loss, rtol=1e-5, atol=1e-5)
        assert got["grads"].keys() == grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(got["grads"][name], grad, rtol=1e-5, atol=1e-5, msg=name)
    assert any(g.abs().max() > 1e-4 for g in grads.values())             # gradients are not all ~0


DDP_RUN = ["--epochs", 1, "--eval_epoch", 1, "--device", "cpu", "--batch_size", 32, "--seed", 1]


@pytest.fixture(scope="module")
def ddp_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_run")
    result = torchrun("main_SPQ.py", "--data_dir", data, "--output_dir", out, *DDP_RUN)
    assert result.returncode == 0, result.stderr
    return out, result


def test_torchrun_trains_evaluates_checkpoints_and_resumes_single_process(data, ddp_run, tmp_path):
    first, result = ddp_run
    out = tmp_path / "ddp"
    shutil.copytree(first, out)
    assert result.stdout.count("epoch 1/1  loss") == 1                  # rank 0 alone prints
    assert "batch 32, 2 processes of 16" in result.stdout
    log = read_log(out)
    assert len(log) == 1 and log[0]["epoch"] == 1 and 0 < log[0]["mAP"] <= 1
    assert sorted(p.name for p in out.iterdir()) == ["best.pth", "last.pth", "log.jsonl"]
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert ckpt["epoch"] == 1 and not any(k.startswith("module.") for k in ckpt["model"])
    # the sharded evaluation equals a single process's evaluation of the same model
    alone = spq("--data_dir", data, "--resume", out / "last.pth", "--eval_only", "--device", "cpu",
                "--output_dir", tmp_path / "eval")
    assert alone.returncode == 0, alone.stderr
    written = json.loads((tmp_path / "eval" / "retrieval.json").read_text())
    assert written["mAP"] == pytest.approx(log[0]["mAP"], abs=1e-6)
    resumed = spq("--data_dir", data, "--output_dir", out, "--epochs", 2, "--eval_epoch", 1,
                  "--device", "cpu", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and "at epoch 2" in resumed.stdout
    assert [r["epoch"] for r in read_log(out)] == [1, 2]


def test_torchrun_runs_repeat_with_the_same_seed(data, ddp_run, tmp_path):
    first, _ = ddp_run
    again = torchrun("main_SPQ.py", "--data_dir", data, "--output_dir", tmp_path, *DDP_RUN)
    assert again.returncode == 0, again.stderr
    assert read_log(tmp_path)[0]["loss"] == read_log(first)[0]["loss"]
    assert_same_weights(tmp_path / "last.pth", first / "last.pth")


def test_torchrun_refuses_a_batch_that_does_not_divide(data, tmp_path):
    result = torchrun("main_SPQ.py", "--data_dir", data, "--output_dir", tmp_path, "--epochs", 1,
                      "--device", "cpu", "--batch_size", 33)
    assert result.returncode != 0
    assert "--batch_size 33 (the global batch) does not divide among 2 processes" in result.stderr
    assert not (tmp_path / "last.pth").exists()


def test_sync_bn_on_the_cpu_is_a_clear_error(data, tmp_path):
    result = torchrun("main_SPQ.py", "--data_dir", data, "--output_dir", tmp_path, "--epochs", 1,
                      "--device", "cpu", "--batch_size", 32, "--sync_bn")
    assert result.returncode != 0
    assert "--sync_bn needs CUDA devices" in result.stderr


def test_single_process_ignores_sync_bn(data, tmp_path):
    result = spq("--data_dir", data, "--output_dir", tmp_path, "--epochs", 1, "--eval_epoch", 1,
                 "--device", "cpu", "--batch_size", 32, "--sync_bn")
    assert result.returncode == 0, result.stderr
    assert len(read_log(tmp_path)) == 1
