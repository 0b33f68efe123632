"""An epoch's steps: the training step as a function of a batch (under torchrun, compiled
with --compile), and one pass of it over the shuffled training images with its progress
bar, the non-finite checks, fp16's skipped steps and the stop requests of signals."""
import functools
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from tqdm import tqdm

from ..errors import SPQError
from ..method.network import SPQ
from ..method.step import training_step
from ..options.values import RuntimeOptions
from .compiling import FirstStepFallback, compile_model
from .distributed import World, agree, gather_rows, shard, wrap_ddp
from .interrupt import StopRequest

# Read the running loss back from the device every this many steps, for the progress bar
# and the non-finite check (each read waits for the device; every step would stall a GPU).
PROGRESS_EVERY = 10
# --precision fp16: the loss scaler skips steps whose gradients overflow and halves its
# scale; that is normal. The run stops only when the loss is non-finite in this many
# consecutive steps, or when the scale falls below MIN_LOSS_SCALE (from 2**16, 24 halvings
# with no good step between them: gradients overflow whatever the scale).
MAX_NON_FINITE_STEPS = 20
MIN_LOSS_SCALE = 2.0 ** -8


def make_step(model: SPQ, augment, optimizer: torch.optim.Optimizer, scaler: "torch.amp.GradScaler",
              temperature: float, runtime: RuntimeOptions, device: torch.device,
              layout: torch.memory_format, world: World = World()) -> Callable[[torch.Tensor], torch.Tensor]:
    """`training_step` as a function of a batch, with the contrastive `temperature` (t_cqc)
    and --precision; under DistributedDataParallel with several processes (--sync_bn),
    compiled with --compile."""
    forward = wrap_ddp(model, world, device, runtime.sync_bn) if world.distributed else None
    gather = gather_rows if world.distributed else None

    def step(batch, forward=forward):
        return training_step(model, augment, batch.to(device, non_blocking=True), optimizer, scaler,
                             temperature, runtime.precision, layout, forward, gather)

    compiled = compile_model(model if forward is None else forward) if runtime.compile else None
    if compiled is None:
        return step
    return FirstStepFallback(functools.partial(step, forward=compiled), step, model, optimizer,
                             scaler, world)


@dataclass
class EpochProgress:
    """Where an epoch stands; saved in a checkpoint when a signal stops the run mid-epoch."""
    epoch: int
    shuffle_state: torch.Tensor     # the shuffling generator's state when the epoch began
    step: int = 0                   # steps done
    loss_sum: Optional[torch.Tensor] = None   # sum of the finite losses
    seconds: float = 0.0            # training time spent in this epoch so far
    skipped: int = 0                # fp16: steps the loss scaler skipped (gradients overflowed)
    non_finite: int = 0             # fp16: steps whose loss was non-finite (all skipped)

    def to_dict(self):
        return {"epoch": self.epoch, "shuffle_state": self.shuffle_state, "step": self.step,
                "loss_sum": self.loss_sum.cpu(), "seconds": self.seconds,
                "skipped": self.skipped, "non_finite": self.non_finite}

    def mean_loss(self) -> float:
        """The mean of the epoch's finite losses (nan if there was none)."""
        counted = self.step - self.non_finite
        return self.loss_sum.item() / counted if counted else float("nan")


def epoch_steps(step: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch_size: int,
                shuffle: torch.Generator, progress: EpochProgress, epochs: int,
                stop: StopRequest, world: World = World(), device: Optional[torch.device] = None,
                scaler: Optional["torch.amp.GradScaler"] = None) -> bool:
    """Run (or finish) one pass over `images` (uint8, on the training `device`, or on the host
    when streamed; default: where the images are) in shuffled full batches, from step
    `progress.step`; `step(batch)` updates the model and returns the loss (on `device`).
    Updates `progress`. Returns False if a stop was requested before the epoch's end.

    Raises SPQError at the first non-finite loss; with an enabled fp16 `scaler`, counts
    the steps it skips instead, and raises only when the loss stays non-finite for
    MAX_NON_FINITE_STEPS steps in a row or the scale falls below MIN_LOSS_SCALE.

    With several processes, every rank draws the same permutation and takes its `shard`
    of each global batch of `batch_size`; a stop request is agreed on by all ranks every
    PROGRESS_EVERY steps, so that they stop at the same step."""
    device = images.device if device is None else device
    fp16 = scaler is not None and scaler.is_enabled()
    steps = images.shape[0] // batch_size                  # the last incomplete batch is dropped
    shuffle.set_state(progress.shuffle_state)
    order = torch.randperm(images.shape[0], generator=shuffle)[:steps * batch_size]
    order = order.view(steps, batch_size)                  # (steps, B)
    if world.distributed:
        order = order[:, shard(batch_size, world)]         # (steps, B / W)
    order = order.to(images.device)
    total = torch.zeros((), device=device) if progress.loss_sum is None else progress.loss_sum.to(device)
    first_bad = torch.full((), -1, device=device)          # first step with a non-finite loss
    bad_run = 0                                            # fp16: consecutive non-finite losses
    t0, start = time.time(), progress.step
    done, stopping = start, False

    with tqdm(total=steps, initial=start, desc=f"epoch {progress.epoch}/{epochs}", leave=False,
              disable=None if world.main else True, dynamic_ncols=True) as bar:
        for i in range(start, steps):
            if fp16:
                scale = scaler.get_scale()
                loss = step(fetch_batch(images, order[i], device))
                # the scaler's step already waited for the device to decide on skipping
                finite = bool(torch.isfinite(loss))
                progress.skipped += scaler.get_scale() < scale
                progress.non_finite += not finite
                bad_run = 0 if finite else bad_run + 1
                if finite:
                    total += loss
                check_fp16(scaler, bad_run, progress.epoch, i + 1, steps)
            else:
                loss = step(fetch_batch(images, order[i], device))
                first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), i + 1, first_bad)
                total += loss
            bar.update(1)
            done = i + 1
            boundary = done % PROGRESS_EVERY == 0 or done == steps
            if not world.distributed:
                stopping = stop.signum is not None
            elif boundary:
                stopping = agree(world, stop.signum is not None)
            if boundary or stopping:
                check_finite(first_bad, progress.epoch, steps)
                counted = done - progress.non_finite
                if counted:
                    bar.set_postfix(loss=f"{total.item() / counted:.4f}")
            if stopping and done < steps:
                break
    progress.step, progress.loss_sum = done, total
    progress.seconds += time.time() - t0
    return progress.step == steps


def fetch_batch(images: torch.Tensor, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """images[index] on `device`. Images held on the host for a CUDA device (streamed from
    disk) are gathered into pinned memory, so the copy runs asynchronously (the caching
    host allocator keeps a pinned block until the copy from it has finished)."""
    if images.device == device:
        return images[index]
    if device.type != "cuda":
        return images[index].to(device)
    batch = torch.empty((len(index), *images.shape[1:]), dtype=images.dtype, pin_memory=True)
    torch.index_select(images, 0, index, out=batch)
    return batch.to(device, non_blocking=True)


def check_finite(first_bad: torch.Tensor, epoch: int, steps: int) -> None:
    """SPQError if a step's loss was non-finite (`first_bad`: its 1-based step, else -1)."""
    if first_bad.item() >= 0:
        raise SPQError(f"the loss became non-finite in epoch {epoch} at step "
                       f"{first_bad.item()} of {steps}; stopped without saving, the last good "
                       f"checkpoint is kept (lower --lr, or check the data)")


def check_fp16(scaler: "torch.amp.GradScaler", bad_run: int, epoch: int, step_done: int, steps: int) -> None:
    """SPQError when fp16 training cannot go on: the loss non-finite for MAX_NON_FINITE_STEPS
    steps in a row (`bad_run`), or the loss scale below MIN_LOSS_SCALE."""
    if bad_run >= MAX_NON_FINITE_STEPS:
        raise SPQError(f"the loss stayed non-finite for {bad_run} steps in a row under "
                       f"--precision fp16 (epoch {epoch}, steps "
                       f"{step_done - bad_run + 1}..{step_done} of {steps}); stopped without "
                       f"saving, the last good checkpoint is kept (use --precision bf16 or "
                       f"fp32, or lower --lr)")
    if scaler.get_scale() < MIN_LOSS_SCALE:
        raise SPQError(f"the fp16 loss scale collapsed to {scaler.get_scale():.3g} in epoch "
                       f"{epoch} at step {step_done} of {steps} (the gradients "
                       f"overflow at every scale); stopped without saving, the last good "
                       f"checkpoint is kept (use --precision bf16 or fp32, or lower --lr)")
