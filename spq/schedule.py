"""Learning-rate schedules, stepped once at the end of each epoch."""
import torch

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
