"""The one place that wires data, model, loss, schedule, evaluation and checkpoints into a run."""
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Iterable, Optional

import torch
from tqdm import tqdm

from .augment import make_augmentation, to_float
from .checkpoint import (FORMAT, VERSION, atomic_save, load_checkpoint, load_state, merge_args,
                         rng_state, set_rng_state)
from .data import load_cifar10
from .errors import SPQError
from .evaluation import evaluate
from .loss import cqc_loss
from .model import SPQ
from .schedule import end_of_epoch, make_scheduler

# Read the running loss back from the device for the progress bar every this many steps
# (each read waits for the device; doing it every step would stall a GPU).
PROGRESS_EVERY = 10


def resolve_device(choice: str, gpu_id: str) -> torch.device:
    """--device auto|cuda|cpu (with --gpu_id) -> a torch.device; SPQError if CUDA is asked but absent."""
    if choice == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if choice == "cuda":
            raise SPQError("--device cuda was asked but PyTorch sees no CUDA device; "
                           "use --device cpu (slow) or a machine with a GPU")
        print("warning: no CUDA device found, running on the CPU (slow); "
              "pass --device cpu to silence this", file=sys.stderr)
        return torch.device("cpu")
    index, count = int(gpu_id), torch.cuda.device_count()
    if index >= count:
        raise SPQError(f"--gpu_id {index} does not exist: PyTorch sees {count} CUDA device(s)")
    return torch.device("cuda", index)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # CPU and every CUDA device; kornia draws from these too


def build_model(args) -> SPQ:
    return SPQ(args.N_books, args.N_words, args.L_word, args.soft_quantization_scale)


def training_step(model: SPQ, augment, images: torch.Tensor, optimizer: torch.optim.Optimizer,
                  temperature: float) -> torch.Tensor:
    """One SPQ update on a batch of uint8 images (B, 3, H, W); returns the detached loss."""
    x = to_float(images)                                   # (B, 3, H, W) in [0, 1]
    view_a, view_b = augment(x), augment(x)                # (B, 3, S, S) each
    xa, xb = model(view_a), model(view_b)                  # (B, M*L) descriptors
    loss = cqc_loss(xa, xb, model.quantize(xa), model.quantize(xb), temperature)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def train_one_epoch(model: SPQ, augment, images: torch.Tensor, optimizer, batch_size: int,
                    temperature: float, shuffle: torch.Generator, epoch: int, epochs: int) -> float:
    """One pass over `images` (uint8, on the model's device) in shuffled full batches; mean loss."""
    steps = images.shape[0] // batch_size                  # the last incomplete batch is dropped
    order = torch.randperm(images.shape[0], generator=shuffle)[:steps * batch_size]
    order = order.view(steps, batch_size).to(images.device)
    total = torch.zeros((), device=images.device)
    with tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", leave=False, disable=None,
              dynamic_ncols=True) as bar:
        for i in range(steps):
            loss = training_step(model, augment, images[order[i]], optimizer, temperature)
            total += loss
            bar.update(1)
            if (i + 1) % PROGRESS_EVERY == 0:
                bar.set_postfix(loss=f"{total.item() / (i + 1):.4f}")
    mean = total.item() / steps
    if not math.isfinite(mean):
        raise SPQError(f"the loss became {mean} in epoch {epoch}; the last good checkpoint is "
                       f"kept (lower --lr, or check the data)")
    return mean


def _prepare_output(out: Path, resuming: bool) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SPQError(f"cannot create --output_dir {out}: {e.strerror}") from None
    if not os.access(out, os.W_OK):
        raise SPQError(f"--output_dir {out} is not writable")
    if not resuming:
        existing = [n for n in ("log.jsonl", "last.pth") if (out / n).exists()]
        if existing:
            raise SPQError(f"--output_dir {out} already holds a run ({', '.join(existing)}); "
                           f"continue it with --resume {out / 'last.pth'} or choose another "
                           f"--output_dir")


def run(args, explicit: Iterable[str] = ()) -> int:
    """Train (or, with --eval_only, evaluate) as the arguments say; returns the exit status."""
    device = resolve_device(args.device, args.gpu_id)
    ckpt = None
    if args.resume:
        ckpt = load_checkpoint(args.resume)
        merge_args(args, ckpt["args"], explicit, args.resume)
    data = load_cifar10(args.data_dir, args.num_cls, args.if_download)
    if data.train_images.shape[0] < args.batch_size and not args.eval_only:
        raise SPQError(f"--batch_size {args.batch_size} exceeds the {data.train_images.shape[0]} "
                       f"training images: no full batch to train on")
    seed_everything(args.seed)
    model = build_model(args).to(device)
    top_k: Optional[int] = args.Top_N or None
    gallery = (data.train_images.to(device), data.train_labels.to(device))
    queries = (data.test_images.to(device), data.test_labels.to(device))

    def measure() -> float:
        return evaluate(model, *gallery, *queries, args.input_size, top_k)

    if args.eval_only:
        load_state(model, ckpt["model"], "model", args.resume)
        t0 = time.time()
        m = measure()
        print(f"{args.resume} (epoch {ckpt['epoch']}): mAP@{args.Top_N or 'all'} = {m:.4f}, "
              f"{model.bits} bits, {len(queries[0])} queries, {len(gallery[0])} gallery codes, "
              f"{time.time() - t0:.1f}s")
        return 0

    out = Path(args.output_dir)
    _prepare_output(out, resuming=ckpt is not None)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = make_scheduler(optimizer, args.lr_schedule,
                               data.train_images.shape[0] // args.batch_size, args.epochs)
    shuffle = torch.Generator().manual_seed(args.seed)
    start, best = 1, None
    if ckpt is not None:
        load_state(model, ckpt["model"], "model", args.resume)
        load_state(optimizer, ckpt["optimizer"], "optimizer state", args.resume)
        load_state(scheduler, ckpt["scheduler"], "scheduler state", args.resume)
        set_rng_state(ckpt["rng"], shuffle)
        start, best = ckpt["epoch"] + 1, ckpt["best_map"]
        print(f"resuming {args.resume} at epoch {start} (best mAP so far {best})")
    if start > args.epochs:
        print(f"nothing to train: the checkpoint finished epoch {start - 1} of --epochs {args.epochs}")
        return 0

    augment = make_augmentation(args.input_size).to(device)
    train_images = gallery[0]
    model.train()
    print(f"SPQ: {model.bits} bits ({args.N_books} books x {args.N_words} words), "
          f"{len(train_images)} training images, batch {args.batch_size}, epochs {start}..{args.epochs}, "
          f"device {device}, output {out}")
    for epoch in range(start, args.epochs + 1):
        t0 = time.time()
        lr = optimizer.param_groups[0]["lr"]
        loss = train_one_epoch(model, augment, train_images, optimizer, args.batch_size,
                               args.contrastive_temperature, shuffle, epoch, args.epochs)
        end_of_epoch(scheduler, args.lr_schedule, epoch)
        record = {"epoch": epoch, "loss": loss, "lr": lr, "seconds": round(time.time() - t0, 3)}
        print(f"epoch {epoch}/{args.epochs}  loss {loss:.4f}  lr {lr:.3g}  {record['seconds']:.1f}s")
        is_best = False
        if epoch % args.eval_epoch == 0 or epoch == args.epochs:
            t1 = time.time()
            m = measure()
            is_best = best is None or m > best
            best = m if is_best else best
            record.update({"mAP": m, "bits": model.bits, "top_n": args.Top_N,
                           "eval_seconds": round(time.time() - t1, 3)})
            print(f"epoch {epoch}: mAP@{args.Top_N or 'all'} = {m:.4f}  (best {best:.4f}, "
                  f"{model.bits} bits, eval {record['eval_seconds']:.1f}s)")
        state = {"format": FORMAT, "version": VERSION, "epoch": epoch, "best_map": best,
                 "args": vars(args), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "rng": rng_state(shuffle)}
        atomic_save(state, out / "last.pth")
        if is_best:
            atomic_save(state, out / "best.pth")
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
    return 0
