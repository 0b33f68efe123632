"""One SPQ training step, and the learning rate it takes each epoch.

A step: two augmented views of a batch (`spq.method.views`), the CNN on both
(`spq.method.network`, under --precision autocast), soft quantization of both
descriptors (`spq.method.quantization`), the cross quantized contrastive loss of each
view against the other's quantization (`spq.method.loss`), and one Adam update. The
learning rate follows a schedule stepped once at the end of each epoch.
"""
import contextlib

import torch

from .loss import cqc_loss
from .network import SPQ

PRECISIONS = ("fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str):
    """The context the CNN runs in under --precision: nothing for fp32, bf16 or fp16
    autocast otherwise (soft quantization and the loss run in fp32 after it)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])


def training_step(model: SPQ, augment, images: torch.Tensor, optimizer: torch.optim.Optimizer,
                  scaler: "torch.amp.GradScaler", temperature: float, precision: str = "fp32",
                  layout: torch.memory_format = torch.contiguous_format,
                  forward=None, gather=None) -> torch.Tensor:
    """One SPQ update on a batch of uint8 images (B, 3, H, W); returns the detached loss.

    `scaler` (`make_scaler`) scales the loss for fp16 and passes it through for fp32 and
    bf16. `layout`: the memory layout of the views. `forward` and `gather`: see `loss_on_views`.
    """
    view_a, view_b = make_views(augment, images, layout)
    loss = loss_on_views(model, view_a, view_b, temperature, precision, forward, gather)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def make_views(augment, images: torch.Tensor, layout: torch.memory_format = torch.contiguous_format):
    """Two augmented views of a batch of uint8 images (B, 3, H, W), in memory `layout`:
    two (B, 3, S, S) floats in [0, 1]. No gradients flow through the augmentation."""
    with torch.no_grad():
        x = images.float().div_(255)                       # (B, 3, H, W) in [0, 1]
        view_a, view_b = augment(x), augment(x)            # (B, 3, S, S) each
    return view_a.contiguous(memory_format=layout), view_b.contiguous(memory_format=layout)


def loss_on_views(model: SPQ, view_a: torch.Tensor, view_b: torch.Tensor, temperature: float,
                  precision: str = "fp32", forward=None, gather=None) -> torch.Tensor:
    """CQC loss of two views: the CNN under `precision` autocast, quantization and loss in fp32.

    `forward` replaces `model` for the CNN pass (a DDP-wrapped or torch.compile'd model);
    `gather` (`spq.run.distributed.gather_rows`) makes the loss see every rank's descriptors.
    """
    forward = model if forward is None else forward     # (a compiled module has no truth value)
    with autocast(view_a.device, precision):
        xa, xb = forward(view_a), forward(view_b)          # (B, M*L) descriptors
    xa, xb = xa.float(), xb.float()
    if gather is not None:
        xa, xb = gather(xa), gather(xb)                    # (W*B, M*L): the global batch
    return cqc_loss(xa, xb, model.quantize(xa), model.quantize(xb), temperature)


def make_scaler(device: torch.device, precision: str) -> "torch.amp.GradScaler":
    """Loss scaler: active for fp16 only (bf16 and fp32 need none); a pass-through otherwise."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


# ---------------------------------------------------------------- the learning rate

# The authors' loop counts epochs from 0 and steps its scheduler after each epoch >= 10, so
# their first 11 epochs (1-based 1..11) run at the base LR.
AUTHORS_CONSTANT_EPOCHS = 11
SCHEDULES = ("authors", "cosine", "constant")


def make_scheduler(optimizer: torch.optim.Optimizer, kind: str, steps_per_epoch: int,
                   epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """authors: CosineAnnealingLR(T_max = steps per epoch, eta_min 0), periodic over epochs;
    cosine: one decay to 0 over `epochs`; constant: the base LR throughout."""
    sched = torch.optim.lr_scheduler
    if kind == "authors":
        return sched.CosineAnnealingLR(optimizer, T_max=steps_per_epoch, eta_min=0)
    if kind == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=0)
    if kind == "constant":
        return sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    raise ValueError(f"unknown LR schedule {kind!r}")


def end_of_epoch(scheduler, kind: str, epoch: int) -> None:
    """Advance the schedule after 1-based `epoch` has finished.

    The authors' schedule starts stepping after epoch 11, so epochs 1..11 run at the
    base LR and epoch 11 + s at the cosine's step s.
    """
    if kind != "authors" or epoch >= AUTHORS_CONSTANT_EPOCHS:
        scheduler.step()


def lr_per_epoch(kind: str, epochs: int, steps_per_epoch: int, lr: float):
    """The LR each epoch 1..epochs trains with under schedule `kind` (for plots and tests)."""
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make_scheduler(optimizer, kind, steps_per_epoch, epochs)
    out = []
    for epoch in range(1, epochs + 1):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        end_of_epoch(scheduler, kind, epoch)
    return out
