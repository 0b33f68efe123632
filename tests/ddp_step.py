"""One distributed SPQ loss and backward pass on fixed views; run by test_distributed.py as

    torchrun --nproc_per_node=2 tests/ddp_step.py OUT_DIR

Each rank takes its shard of the global batch, runs the CNN through DistributedDataParallel
and the loss on the gathered global batch, and saves its loss and (DDP-averaged) gradients
to OUT_DIR/rank<R>_<mode>.pt, with BatchNorm in eval mode and in train mode.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from spq.distributed import from_environment, gather_rows, init, shard, shutdown  # noqa: E402
from spq.model import SPQ  # noqa: E402
from spq.train import distribute, loss_on_views  # noqa: E402

GLOBAL_BATCH = 8
TEMPERATURE = 0.5


def fresh_model() -> SPQ:
    torch.manual_seed(0)
    return SPQ()


def fixed_views():
    """Two views (GLOBAL_BATCH, 3, 32, 32) in [0, 1], the same in every process."""
    gen = torch.Generator().manual_seed(1)
    return torch.rand(2, GLOBAL_BATCH, 3, 32, 32, generator=gen).unbind(0)


def main(out: Path) -> None:
    world = from_environment()
    device = torch.device("cpu")
    init(world, device)
    try:
        view_a, view_b = fixed_views()
        rows = shard(GLOBAL_BATCH, world)
        for mode in ("eval", "train"):
            model = fresh_model().train(mode == "train")
            ddp = distribute(model, world, device, sync_bn=False)
            loss = loss_on_views(model, view_a[rows], view_b[rows], TEMPERATURE, "fp32", ddp, gather_rows)
            loss.backward()
            grads = {name: p.grad for name, p in model.named_parameters()}
            torch.save({"loss": loss.detach(), "grads": grads}, out / f"rank{world.rank}_{mode}.pt")
    finally:
        shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
