"""Training on several processes with torchrun: DistributedDataParallel and global negatives.

    torchrun --nproc_per_node=N main_SPQ.py ...           one machine, N processes
    torchrun --nnodes=H --nproc_per_node=N --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT ...

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in each process; a run without them (or
with WORLD_SIZE 1) is single-process and nothing here changes it. Process groups use
nccl on CUDA (one GPU per process, cuda:LOCAL_RANK) and gloo on the CPU.

The cross quantized contrastive loss of every rank is computed on the whole global
batch: each rank gathers the descriptors of all ranks (`gather_rows`). The loss is then
the same on every rank; a rank's gradient reaches only its own rows, summed over the
ranks' copies of the loss (W times the gradient of one loss), and DistributedDataParallel
averages over the W ranks: the update equals a single process's on the global batch.
BatchNorm statistics stay per rank unless `--sync_bn` (as DDP does by default).
"""
import os
from dataclasses import dataclass, field
from typing import Callable, List, Optional, TypeVar

import torch
import torch.distributed as dist

from ..errors import SPQError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """Where this process stands: its rank, the number of processes, its rank on its node;
    `distributed` (more than one process) and `main` (rank 0: this process prints, logs
    and writes checkpoints) follow from them."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    distributed: bool = field(init=False)
    main: bool = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "distributed", self.size > 1)
        object.__setattr__(self, "main", self.rank == 0)


def from_environment() -> World:
    """The World torchrun describes in RANK, WORLD_SIZE and LOCAL_RANK (one process without)."""
    try:
        return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                     int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise SPQError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (start the run with "
                       "torchrun, or unset them)") from None


def init(world: World, device: torch.device) -> None:
    """Join the process group: nccl for CUDA devices, gloo for the CPU."""
    if world.distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=world.rank, world_size=world.size)


def wrap_ddp(model: torch.nn.Module, world: World, device: torch.device,
             sync_bn: bool) -> torch.nn.parallel.DistributedDataParallel:
    """The DistributedDataParallel wrapper that runs the CNN under torchrun; with `sync_bn`,
    the BatchNorm layers of `model.features` first become SyncBatchNorm."""
    if sync_bn:
        model.features = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.features)
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)                  # every rank's gradient for every row, summed
        rows = grad.shape[0] // dist.get_world_size()
        rank = dist.get_rank()
        return grad[rank * rows:(rank + 1) * rows]


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """The rows of every rank, in rank order: (n, D) per rank -> (W*n, D) on every rank.

    Gradients flow back to each rank's own rows, summed over all ranks (see the module
    docstring for why that, with DDP's averaging, gives the single-process update).
    """
    return _GatherRows.apply(x)


def shard(n: int, world: World) -> slice:
    """This rank's contiguous part of n items (the first n % W ranks get one more)."""
    base, extra = divmod(n, world.size)
    start = world.rank * base + min(world.rank, extra)
    return slice(start, start + base + (world.rank < extra))


def gather_shards(x: torch.Tensor, n: int, world: World) -> torch.Tensor:
    """Every rank's `shard` of n rows, concatenated in order on every rank (no gradients).

    x: this rank's (len(shard), ...) rows -> (n, ...)."""
    sizes = [len(range(n)[shard(n, World(r, world.size))]) for r in range(world.size)]
    padded = x.new_zeros(max(sizes), *x.shape[1:])
    padded[:len(x)] = x
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


def share_buffers(module: torch.nn.Module, world: World) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics). DDP broadcasts them
    before each forward pass, but every rank's own forward then updates its copy."""
    if world.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def on_main(world: World, fn: Callable[[], T]) -> T:
    """fn() computed on rank 0 alone; its (picklable) result returned on every rank."""
    if not world.distributed:
        return fn()
    box: List[Optional[T]] = [fn() if world.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def agree(world: World, flag: bool) -> bool:
    """True on every rank when the flag is true on any rank."""
    if not world.distributed:
        return flag
    t = torch.tensor([int(flag)], device=torch.cuda.current_device() if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
