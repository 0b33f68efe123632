"""The one place that wires data, model, loss, schedule, evaluation and checkpoints into a run."""
import argparse
import functools
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from .augment import make_augmentation, to_float
from .checkpoint import (FORMAT, VERSION, atomic_save, atomic_save_json, load_checkpoint, load_state,
                         merge_args, model_only, rng_state, set_rng_state)
from .data import ImageSet
from .datasets import load_data
from .distributed import (World, agree, from_environment, gather_rows, init, shard, share_buffers,
                          shutdown)
from .errors import SPQError
from . import faults
from .compiling import FirstStepFallback, compile_model
from .evaluation import evaluate, evaluate_all, format_metrics
from .interrupt import Interrupted, StopRequest
from .loss import cqc_loss
from .model import SPQ
from .outdir import LOG, OutputLock, append_row, clean, read_rows, restore_record
from .precision import autocast, make_scaler, memory_format
from .schedule import end_of_epoch, make_scheduler

# Read the running loss back from the device every this many steps, for the progress bar
# and the non-finite check (each read waits for the device; every step would stall a GPU).
PROGRESS_EVERY = 10
# --precision fp16: the loss scaler skips steps whose gradients overflow and halves its
# scale; that is normal. The run stops only when the loss is non-finite in this many
# consecutive steps, or when the scale falls below MIN_LOSS_SCALE (from 2**16, 24 halvings
# with no good step between them: gradients overflow whatever the scale).
MAX_NON_FINITE_STEPS = 20
MIN_LOSS_SCALE = 2.0 ** -8


def resolve_device(choice: str, gpu_id: str, quiet: bool = False) -> torch.device:
    """--device auto|cuda|cpu (with --gpu_id) -> a torch.device; SPQError if CUDA is asked but absent.

    `quiet` silences the warning of auto falling back to the CPU."""
    if choice == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if choice == "cuda":
            raise SPQError("--device cuda was asked but PyTorch sees no CUDA device; "
                           "use --device cpu (slow) or a machine with a GPU")
        if not quiet:
            print("warning: no CUDA device found, running on the CPU (slow); "
                  "pass --device cpu to silence this", file=sys.stderr)
        return torch.device("cpu")
    index, count = int(gpu_id), torch.cuda.device_count()
    if index >= count:
        raise SPQError(f"--gpu_id {index} does not exist: PyTorch sees {count} CUDA device(s)")
    return torch.device("cuda", index)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CPU and every CUDA device; kornia draws from these too


def build_model(args, device: torch.device) -> SPQ:
    """The SPQ network of the arguments on `device`, in that device's memory layout."""
    model = SPQ(args.N_books, args.N_words, args.L_word, args.soft_quantization_scale)
    return model.to(device, memory_format=memory_format(device))


def make_views(augment, images: torch.Tensor):
    """Two augmented views of a batch of uint8 images (B, 3, H, W), in the memory layout
    of the device (`memory_format`: channels_last on CUDA).

    The augmentation needs no gradients, so it runs without autograd bookkeeping.
    """
    with torch.no_grad():
        x = to_float(images)                               # (B, 3, H, W) in [0, 1]
        view_a, view_b = augment(x), augment(x)            # (B, 3, S, S) each
    layout = memory_format(images.device)
    return view_a.contiguous(memory_format=layout), view_b.contiguous(memory_format=layout)


def loss_on_views(model: SPQ, view_a: torch.Tensor, view_b: torch.Tensor, temperature: float,
                  precision: str = "fp32", forward=None, gather=None) -> torch.Tensor:
    """CQC loss of two views: the CNN under `precision` autocast, quantization and loss in fp32.

    `forward` replaces `model` for the CNN pass (a DDP-wrapped or torch.compile'd model);
    `gather` (`spq.distributed.gather_rows`) makes the loss see every rank's descriptors.
    """
    forward = forward or model
    with autocast(view_a.device, precision):
        xa, xb = forward(view_a), forward(view_b)          # (B, M*L) descriptors
    xa, xb = xa.float(), xb.float()
    if gather is not None:
        xa, xb = gather(xa), gather(xb)                    # (W*B, M*L): the global batch
    return cqc_loss(xa, xb, model.quantize(xa), model.quantize(xb), temperature)


def training_step(model: SPQ, augment, images: torch.Tensor, optimizer: torch.optim.Optimizer,
                  scaler: "torch.amp.GradScaler", temperature: float, precision: str = "fp32",
                  forward=None, gather=None) -> torch.Tensor:
    """One SPQ update on a batch of uint8 images (B, 3, H, W); returns the detached loss.

    `scaler` comes from `make_scaler`: it scales the loss for fp16 and passes it through
    unchanged for fp32 and bf16. `forward` and `gather`: see `loss_on_views`.
    """
    loss = loss_on_views(model, *make_views(augment, images), temperature, precision, forward, gather)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


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


def train_one_epoch(step: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch_size: int,
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
    order = order.view(steps, batch_size)[:, shard(batch_size, world)].to(images.device)  # (steps, B / W)
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
            faults.hit("step")
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


def bn_frozen(args, best_map: Optional[float]) -> bool:
    """Whether training runs with the model in eval mode: with --freeze_bn_after_eval, once
    an evaluation has happened (a best mAP exists), as in the authors' script, whose
    evaluation switched the model to eval mode and never back."""
    return bool(args.freeze_bn_after_eval) and best_map is not None


def distribute(model: SPQ, world: World, device: torch.device, sync_bn: bool):
    """The DistributedDataParallel wrapper that runs the CNN under torchrun (None for one
    process); with `sync_bn`, BatchNorm layers first become SyncBatchNorm."""
    if not world.distributed:
        return None
    if sync_bn:
        model.features = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.features)
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


def _prepare_output(out: Path, resuming: bool) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise SPQError(f"--output_dir {out} cannot be written ({e.strerror}); "
                       f"choose a folder you can write to") from None
    for path in clean(out):
        print(f"removed {path}, left by a run that was killed while writing", file=sys.stderr)
    if not resuming:
        existing = [n for n in ("log.jsonl", "last.pth") if (out / n).exists()]
        if existing:
            raise SPQError(f"--output_dir {out} already holds a run ({', '.join(existing)}); "
                           f"continue it with --resume auto (or --resume {out / 'last.pth'}) or "
                           f"choose another --output_dir")


def _resume_path(args, say=print) -> Optional[str]:
    """--resume PATH as given; --resume auto: OUTPUT_DIR/last.pth if it exists, else None."""
    if args.resume != "auto":
        return args.resume
    last = Path(args.output_dir) / "last.pth"
    if last.is_file():
        return str(last)
    if args.eval_only:
        raise SPQError(f"--resume auto --eval_only: {last} does not exist")
    say(f"--resume auto: no {last} yet, starting a new run")
    return None


# Options naming files or folders: stored absolute, so that a checkpoint's run can be
# resumed or evaluated from any working directory.
PATH_OPTIONS = ("data_dir", "output_dir", "train_list", "query_list", "gallery_list")


def absolute_paths(args) -> None:
    """Make the path options of `args` absolute (relative to the working directory)."""
    for name in PATH_OPTIONS:
        if getattr(args, name, None):
            setattr(args, name, os.path.abspath(getattr(args, name)))


def _load_resume(args, explicit: Iterable[str], say=print):
    """(checkpoint path, checkpoint) of --resume, or (None, None) for a new run; the
    options the user did not type are taken from the checkpoint's run (`merge_args`)."""
    resume = _resume_path(args, say)
    if not resume:
        return None, None
    ckpt = load_checkpoint(resume)
    if ckpt["optimizer"] is None and not args.eval_only:
        raise SPQError(f"{resume} holds the model only (best.pth keeps no optimizer state): "
                       f"continue training from {Path(resume).parent / 'last.pth'} (or "
                       f"--resume auto), or evaluate it with --eval_only")
    for note in merge_args(args, ckpt["args"], explicit, resume):
        say(f"resume: {note}")
    return resume, ckpt


def run(args, explicit: Iterable[str] = ()) -> int:
    """Train (or, with --eval_only, evaluate) as the arguments say; returns the exit status.

    Under torchrun, one process of several (`spq.distributed`). Raises SPQError for
    problems the user can fix, Interrupted after a signal was honoured.
    """
    faults.arm()
    world = from_environment()
    absolute_paths(args)
    resume, ckpt = _load_resume(args, explicit, print if world.main else (lambda *a, **k: None))
    if world.distributed and args.batch_size % world.size:
        raise SPQError(f"--batch_size {args.batch_size} (the global batch) does not divide among "
                       f"{world.size} processes; use a multiple of {world.size}")
    device = resolve_device(args.device, str(world.local_rank) if world.distributed else args.gpu_id,
                            quiet=not world.main)
    if args.sync_bn and world.distributed and device.type != "cuda":
        raise SPQError("--sync_bn needs CUDA devices (PyTorch's SyncBatchNorm does not run on the "
                       "CPU); drop it")
    init(world, device)
    # one run per output folder; --eval_only writes only retrieval.json (atomically) and may
    # look at a folder whose run is still training
    lock = OutputLock(args.output_dir) if world.main and not args.eval_only else None
    try:
        if lock:
            lock.acquire()
        setup = prepare(args, resume, ckpt, world, device)
        if args.eval_only:
            return evaluate_checkpoint(setup, resume, ckpt)
        return fit(setup, resume, ckpt)
    finally:
        if lock:
            lock.release()
        shutdown()


@dataclass
class Setup:
    """What a run works on: its data and model on the device, and where its output goes."""
    args: argparse.Namespace
    world: World
    device: torch.device
    data: ImageSet
    model: SPQ
    train_images: torch.Tensor                                  # uint8 (N, 3, H, W)
    gallery: Tuple[torch.Tensor, Optional[torch.Tensor]]       # images, labels
    queries: Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]
    out: Path
    unevaluable: Optional[str]                                 # why mAP cannot be measured

    def say(self, *message) -> None:
        """Print on the main process only."""
        if self.world.main:
            print(*message)

    def evaluate(self, every_metric: bool = False):
        """The model's mAP@Top_N, or with `every_metric` every metric of `evaluate_all`."""
        args = self.args
        metric = evaluate_all if every_metric else evaluate
        share_buffers(self.model, self.world)   # evaluate every shard with rank 0's statistics
        return metric(self.model, *self.gallery, *self.queries, args.input_size, args.Top_N or None,
                      distance=args.adc_distance, world=self.world)


def prepare(args, resume: Optional[str], ckpt, world: World, device: torch.device) -> Setup:
    """Load the data, build the model and make the output folder ready; SPQError when the
    data cannot serve the run."""
    data = load_data(args, print if world.main else (lambda *a, **k: None))
    if data.train_images.shape[0] < args.batch_size and not args.eval_only:
        raise SPQError(f"--batch_size {args.batch_size} exceeds the {data.train_images.shape[0]} "
                       f"training images: no full batch to train on")
    unevaluable = data.why_not_evaluable()
    if unevaluable and args.eval_only:
        raise SPQError(f"cannot evaluate {resume}: {unevaluable}")
    seed_everything(args.seed + world.rank)     # rank 0 draws what a single process draws
    model = build_model(args, device)

    def place(tensor, images=False):
        # streamed (memory-mapped) images stay on the host; their batches move when used
        return tensor if tensor is None or (images and data.on_disk) else tensor.to(device)

    train_images = place(data.train_images, images=True)
    gallery_images, gallery_labels = data.gallery()
    gallery = (train_images if gallery_images is data.train_images else place(gallery_images, True),
               place(gallery_labels))
    queries = (place(data.test_images, True), place(data.test_labels))
    out = Path(args.output_dir)
    if world.main:
        _prepare_output(out, resuming=ckpt is not None)
    return Setup(args, world, device, data, model, train_images, gallery, queries, out, unevaluable)


def evaluate_checkpoint(setup: Setup, resume: str, ckpt) -> int:
    """--eval_only: every retrieval metric of the checkpoint's model, printed and written
    to OUTPUT_DIR/retrieval.json."""
    load_state(setup.model, ckpt["model"], "model", resume)
    t0 = time.time()
    metrics = setup.evaluate(every_metric=True)
    if not setup.world.main:
        return 0
    args = setup.args
    result = {"checkpoint": str(resume), "epoch": ckpt["epoch"], "bits": setup.model.bits,
              "adc_distance": args.adc_distance,
              "queries": len(setup.queries[0]), "gallery": len(setup.gallery[0]),
              "queries_without_labels": setup.data.unlabelled_queries(), **metrics,
              "top_n": args.Top_N, "seconds": round(time.time() - t0, 3)}
    atomic_save_json(result, setup.out / "retrieval.json")
    print(format_metrics(result))
    print(f"written to {setup.out / 'retrieval.json'}")
    return 0


REMEDY = "; then continue the run with --resume auto"   # after a failed checkpoint or log write


@dataclass
class TrainingState:
    """Everything of a training run a checkpoint holds besides its options and the model."""
    optimizer: torch.optim.Optimizer
    scheduler: object                     # a torch.optim.lr_scheduler scheduler
    scaler: "torch.amp.GradScaler"
    shuffle: torch.Generator              # draws each epoch's order
    start: int = 1                        # the next epoch to train
    best: Optional[float] = None          # the best mAP so far, and its epoch
    best_epoch: Optional[int] = None
    progress: Optional[EpochProgress] = None   # the epoch a signal stopped, where it stood
    rows: List[Dict] = field(default_factory=list)   # the log rows of the epochs done

    def checkpoint(self, args, model: SPQ, epoch_done: int) -> Dict:
        """The contents of last.pth after `epoch_done` epochs (and `self.progress` of the next,
        when a signal stopped it); best.pth is `model_only` of it."""
        return {"format": FORMAT, "version": VERSION, "epoch": epoch_done, "best_map": self.best,
                "best_epoch": self.best_epoch, "log": self.rows,
                "args": vars(args), "model": model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": rng_state(self.shuffle),
                "mid_epoch": self.progress.to_dict() if self.progress else None}

    def restore(self, ckpt: Dict, model: SPQ, path: str, log: Path) -> None:
        """The state `checkpoint` saved (`log`: the run's log.jsonl, read for the rows of
        checkpoints older than the "log" key)."""
        load_state(model, ckpt["model"], "model", path)
        load_state(self.optimizer, ckpt["optimizer"], "optimizer state", path)
        load_state(self.scheduler, ckpt["scheduler"], "scheduler state", path)
        load_state(self.scaler, ckpt["scaler"], "fp16 loss-scaler state", path)
        set_rng_state(ckpt["rng"], self.shuffle)
        self.start, self.best, self.best_epoch = ckpt["epoch"] + 1, ckpt["best_map"], ckpt.get("best_epoch")
        self.rows = ckpt["log"] if "log" in ckpt else \
            [r for r in read_rows(log) if r.get("epoch", 0) <= ckpt["epoch"]]
        self.progress = EpochProgress(**ckpt["mid_epoch"]) if ckpt["mid_epoch"] is not None else None


def training_state(setup: Setup, resume: Optional[str], ckpt) -> TrainingState:
    """A new run's optimizer, schedule, loss scaler and shuffling, or those of the checkpoint:
    then OUTPUT_DIR's log.jsonl and best.pth are made to agree with it (`restore_record`), the
    other ranks under torchrun are reseeded, and the resume point is printed."""
    args, world = setup.args, setup.world
    optimizer = torch.optim.Adam(setup.model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = make_scheduler(optimizer, args.lr_schedule,
                               setup.data.train_images.shape[0] // args.batch_size, args.epochs)
    state = TrainingState(optimizer, scheduler, make_scaler(setup.device, args.precision),
                          torch.Generator().manual_seed(args.seed))
    if ckpt is None:
        return state
    state.restore(ckpt, setup.model, resume, setup.out / LOG)
    if world.main:
        restore_record(setup.out, ckpt, state.rows, setup.say, REMEDY)
    progress = state.progress
    if world.rank:   # the checkpoint holds rank 0's streams; the others start anew from here
        seed_everything(hash((args.seed, world.rank, state.start, progress.step if progress else 0)) % 2 ** 31)
    where = f"step {progress.step} of epoch {state.start}" if progress else f"epoch {state.start}"
    setup.say(f"resuming {resume} at {where} (best mAP so far {state.best})")
    return state


def save(setup: Setup, state: TrainingState, epoch_done: int, is_best: bool = False) -> None:
    """last.pth, then (is_best) best.pth without the training state; see docs/crash-safety.md."""
    if not setup.world.main:
        return
    ckpt = state.checkpoint(setup.args, setup.model, epoch_done)
    atomic_save(ckpt, setup.out / "last.pth", REMEDY)
    if state.progress is None:
        faults.hit("between_saves")
    if is_best:
        atomic_save(model_only(ckpt), setup.out / "best.pth", REMEDY)


def make_step(setup: Setup, state: TrainingState) -> Callable[[torch.Tensor], torch.Tensor]:
    """The training step of a batch of uint8 images: views, loss, update (see `training_step`),
    under DistributedDataParallel with several processes, compiled with --compile."""
    args, model, device, world = setup.args, setup.model, setup.device, setup.world
    augment = make_augmentation(args.input_size, args.augment).to(device)
    forward = distribute(model, world, device, args.sync_bn)
    gather = gather_rows if world.distributed else None

    def step(batch, forward=forward):
        return training_step(model, augment, batch.to(device, non_blocking=True), state.optimizer,
                             state.scaler, args.contrastive_temperature, args.precision, forward, gather)

    compiled = compile_model(forward or model) if args.compile else None
    if compiled is None:
        return step
    return FirstStepFallback(functools.partial(step, forward=compiled), step, model, state.optimizer,
                             state.scaler, world)


def fit(setup: Setup, resume: Optional[str], ckpt) -> int:
    """Train from the checkpoint's state (or anew) to --epochs, evaluating and saving as the
    options say."""
    args, model = setup.args, setup.model
    state = training_state(setup, resume, ckpt)
    if state.start > args.epochs:
        setup.say(f"nothing to train: the checkpoint finished epoch {state.start - 1} of --epochs {args.epochs}")
        return 0
    step = make_step(setup, state)
    model.train(not bn_frozen(args, state.best))
    world = setup.world
    processes = f", {world.size} processes of {args.batch_size // world.size}" if world.distributed else ""
    setup.say(f"SPQ: {model.bits} bits ({args.N_books} books x {args.N_words} words), "
              f"{len(setup.train_images)} training images, batch {args.batch_size}{processes}, epochs "
              f"{state.start}..{args.epochs}, {args.augment} views, device {setup.device}, output {setup.out}")
    if args.freeze_bn_after_eval:
        setup.say("--freeze_bn_after_eval: training continues in eval mode (frozen BatchNorm) "
                  "after the first evaluation" + (" (frozen already)" if bn_frozen(args, state.best) else ""))
    if setup.unevaluable:
        setup.say(f"evaluation skipped: {setup.unevaluable}; training goes on, without best.pth")
    with StopRequest() as stop:
        for epoch in range(state.start, args.epochs + 1):
            train_epoch(setup, state, step, epoch, stop)
    return 0


def train_epoch(setup: Setup, state: TrainingState, step, epoch: int, stop: StopRequest) -> None:
    """Train (or finish) `epoch`, then evaluate when it is due, save and log it; raises
    Interrupted, after saving, when a signal asked to stop."""
    args, world = setup.args, setup.world
    if state.progress is None:
        state.progress = EpochProgress(epoch, state.shuffle.get_state())
    progress = state.progress
    lr = state.optimizer.param_groups[0]["lr"]
    if not train_one_epoch(step, setup.train_images, args.batch_size, state.shuffle, progress,
                           args.epochs, stop, world, setup.device, state.scaler):
        save(setup, state, epoch - 1)
        raise Interrupted(stop.signum, str(setup.out / "last.pth"), f"in epoch {epoch} after step {progress.step}")
    loss = progress.mean_loss()
    end_of_epoch(state.scheduler, args.lr_schedule, epoch)
    record = {"epoch": epoch, "loss": loss, "lr": lr, "seconds": round(progress.seconds, 3)}
    if state.scaler.is_enabled():
        record["skipped_steps"] = progress.skipped
    setup.say(f"epoch {epoch}/{args.epochs}  loss {loss:.4f}  lr {lr:.3g}  {record['seconds']:.1f}s")
    if record.get("skipped_steps"):
        setup.say(f"epoch {epoch}: fp16 loss scaling skipped {progress.skipped} of {progress.step} "
                  f"steps (their gradients overflowed)")
    state.progress = None
    is_best = False
    if (epoch % args.eval_epoch == 0 or epoch == args.epochs) and not setup.unevaluable:
        is_best = evaluate_epoch(setup, state, epoch, record)
    state.rows = state.rows + [record]            # last.pth carries the log rows up to its epoch
    save(setup, state, epoch, is_best)
    if world.main:
        append_row(setup.out / LOG, record, REMEDY)
    if agree(world, stop.signum is not None) and epoch < args.epochs:
        raise Interrupted(stop.signum, str(setup.out / "last.pth"), f"after epoch {epoch}")


def evaluate_epoch(setup: Setup, state: TrainingState, epoch: int, record: Dict) -> bool:
    """Measure mAP after `epoch`, note it in `record` and the state's best; whether it is the
    best so far. With --freeze_bn_after_eval, training goes on in eval mode from here."""
    args, model = setup.args, setup.model
    t1 = time.time()
    m = setup.evaluate()
    is_best = state.best is None or m > state.best
    if is_best:
        state.best, state.best_epoch = m, epoch
    model.train(not bn_frozen(args, state.best))
    record.update({"mAP": m, "bits": model.bits, "top_n": args.Top_N, "adc_distance": args.adc_distance,
                   "eval_seconds": round(time.time() - t1, 3)})
    setup.say(f"epoch {epoch}: mAP@{args.Top_N or 'all'} = {m:.4f}  (best {state.best:.4f}, "
              f"{model.bits} bits, eval {record['eval_seconds']:.1f}s)")
    return is_best
