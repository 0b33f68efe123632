"""torchrun with the gloo backend on the CPU: the distributed step equals the single-process
one, and the command line trains, evaluates, checkpoints and resumes under torchrun."""
import json
import os
import shutil
import sys

import pytest
import torch

import processes
from conftest import ROOT, SMALL, assert_same_weights, read_log
from cli import spq
from ddp_step import GLOBAL_BATCH, TEMPERATURE, fixed_views, fresh_model
from spq.run.distributed import World, shard
from spq.method.loss import cqc_loss
from spq.method.step import loss_on_views


def torchrun(*argv, nproc=2):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return processes.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          f"--nproc_per_node={nproc}", *map(str, argv)], cwd=ROOT, env=env, timeout=600)


@pytest.mark.parametrize("n,size", [(8, 2), (7, 2), (10, 3), (2, 4), (0, 2)])
def test_shards_cover_every_item_once_in_order(n, size):
    parts = [shard(n, World(r, size)) for r in range(size)]
    assert [i for p in parts for i in range(n)[p]] == list(range(n))
    lengths = [p.stop - p.start for p in parts]
    assert max(lengths) - min(lengths) <= 1


DDP_RUN = ["--epochs", 1, "--eval_epoch", 1, *SMALL]         # global batches of 16: 8 per process


@pytest.fixture(scope="module")
def ddp_step(data, tmp_path_factory):
    """tests/ddp_step.py under torchrun: each rank's refusals, loss and gradients, and the
    output folder of its DDP_RUN training run."""
    out = tmp_path_factory.mktemp("ddp_step")
    result = torchrun(ROOT / "tests" / "ddp_step.py", out, data, *DDP_RUN)
    assert result.returncode == 0, result.stderr
    found = {(r, m): torch.load(out / f"rank{r}_{m}.pt", weights_only=True)
             for r in range(2) for m in ("eval", "train")}
    for r in range(2):
        found[(r, "refusals")] = json.loads((out / f"rank{r}_refusals.json").read_text())
    found["run"] = out / "run"
    return found


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


@pytest.mark.slow
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


@pytest.fixture(scope="module")
def ddp_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_run")
    result = torchrun("main_SPQ.py", "--data_dir", data, "--output_dir", out, *DDP_RUN)
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.mark.slow
def test_torchrun_trains_evaluates_checkpoints_and_resumes_single_process(data, ddp_run, tmp_path):
    first, result = ddp_run
    out = tmp_path / "ddp"
    shutil.copytree(first, out)
    assert result.stdout.count("epoch 1/1  loss") == 1                  # rank 0 alone prints
    assert "batch 16, 2 processes of 8" in result.stdout
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


@pytest.mark.slow
def test_torchrun_runs_repeat_with_the_same_seed(ddp_run, ddp_step):
    """`torchrun main_SPQ.py` in fresh processes, and main_SPQ.main in torchrun processes
    that ran other work first (tests/ddp_step.py): the same run, the same result."""
    first, _ = ddp_run
    again = ddp_step["run"]
    assert read_log(again)[0]["loss"] == read_log(first)[0]["loss"]
    assert_same_weights(again / "last.pth", first / "last.pth")


@pytest.mark.slow
def test_torchrun_refuses_a_batch_that_does_not_divide(ddp_step):
    for rank in range(2):                           # main_SPQ.main in each torchrun process
        got = ddp_step[(rank, "refusals")]["batch"]
        assert got["code"] == 1, got
        assert "--batch_size 33 (the global batch) does not divide among 2 processes" in got["stderr"]
        assert not got["wrote"]


@pytest.mark.slow
def test_sync_bn_on_the_cpu_is_a_clear_error(ddp_step):
    for rank in range(2):
        got = ddp_step[(rank, "refusals")]["sync_bn"]
        assert got["code"] == 1, got
        assert got["stderr"].startswith("error: --sync_bn needs CUDA devices"), got
        assert not got["wrote"]


def test_single_process_ignores_sync_bn(data, tmp_path):
    result = spq("--data_dir", data, "--output_dir", tmp_path, "--epochs", 1, "--eval_epoch", 1,
                 *SMALL, "--train_per_class", 2, "--sync_bn")               # 20 images: one step
    assert result.returncode == 0, result.stderr
    assert len(read_log(tmp_path)) == 1
