"""What test_distributed.py checks inside torchrun's processes, run by it as

    PYTHONPATH=. torchrun --nproc_per_node=2 tests/ddp_step.py OUT_DIR DATA_DIR [MAIN_SPQ_OPTION ...]

1. Options a run under torchrun must refuse: main_SPQ.main on them in each process, under
   the environment torchrun made and before any process group exists (as `torchrun
   main_SPQ.py ...` would run them); exit status, stderr and whether last.pth appeared
   go to OUT_DIR/rank<R>_refusals.json.
2. One distributed SPQ loss and backward pass on fixed views: each rank takes its shard
   of the global batch, runs the CNN through DistributedDataParallel and the loss on the
   gathered global batch, and saves its loss and (DDP-averaged) gradients to
   OUT_DIR/rank<R>_<mode>.pt, with BatchNorm in eval mode and in train mode.
3. With MAIN_SPQ_OPTIONs: a training run, main_SPQ.main(--data_dir DATA_DIR --output_dir
   OUT_DIR/run MAIN_SPQ_OPTION ...), in the process group of the step, in processes whose
   random states the work above has moved: it must equal the same run of `torchrun
   main_SPQ.py` in fresh processes.
"""
import contextlib
import io
import json
import sys
from pathlib import Path

import torch

import main_SPQ
from spq.run.distributed import from_environment, gather_rows, init, shard, shutdown
from spq.method.network import SPQ
from spq.run.distributed import wrap_ddp
from spq.method.step import loss_on_views

GLOBAL_BATCH = 8
TEMPERATURE = 0.5
REFUSALS = {
    "batch": ["--epochs", "1", "--device", "cpu", "--batch_size", "33"],
    "sync_bn": ["--epochs", "1", "--device", "cpu", "--batch_size", "32", "--sync_bn"],
}


def fresh_model() -> SPQ:
    torch.manual_seed(0)
    return SPQ()


def fixed_views():
    """Two views (GLOBAL_BATCH, 3, 16, 16) in [0, 1], the same in every process."""
    gen = torch.Generator().manual_seed(1)
    return torch.rand(2, GLOBAL_BATCH, 3, 16, 16, generator=gen).unbind(0)


def refusals(out: Path, data: str) -> dict:
    found = {}
    for name, extra in REFUSALS.items():
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main_SPQ.main(["--data_dir", data, "--output_dir", str(out / name), *extra])
        found[name] = {"code": code, "stderr": err.getvalue(), "wrote": (out / name / "last.pth").exists()}
    return found


def main(out: Path, data: str, run_options) -> int:
    world = from_environment()
    (out / f"rank{world.rank}_refusals.json").write_text(json.dumps(refusals(out, data)))
    device = torch.device("cpu")
    init(world, device)
    try:
        view_a, view_b = fixed_views()
        rows = shard(GLOBAL_BATCH, world)
        for mode in ("eval", "train"):
            model = fresh_model().train(mode == "train")
            ddp = wrap_ddp(model, world, device, sync_bn=False)
            loss = loss_on_views(model, view_a[rows], view_b[rows], TEMPERATURE, "fp32", ddp, gather_rows)
            loss.backward()
            grads = {name: p.grad for name, p in model.named_parameters()}
            torch.save({"loss": loss.detach(), "grads": grads}, out / f"rank{world.rank}_{mode}.pt")
        # the run joins the process group that exists (torchrun's store serves one
        # initialisation per process), and ends it
        return main_SPQ.main(["--data_dir", data, "--output_dir", str(out / "run"), *run_options]) \
            if run_options else 0
    finally:
        shutdown()


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3:]))
