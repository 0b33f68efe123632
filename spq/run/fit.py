"""Training a model to --epochs: each epoch's steps, then its evaluation when due, its
checkpoint and its log row; a new run's optimizer, schedule and shuffling, or those a
checkpoint restores (`TrainingState`)."""
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ..errors import SPQError
from ..files.read import read_jsonl
from ..files.torchfile import atomic_save, with_checksum
from ..files.write import append_jsonl
from ..method.network import SPQ
from ..method.step import end_of_epoch, make_scaler, make_scheduler
from ..method.views import make_augmentation
from ..options.values import EvalOptions, MethodOptions, OptimOptions, RuntimeOptions, what_ran, what_ran_text
from ..store.checkpoint import FORMAT, VERSION, load_state, model_only, rng_state, set_rng_state
from ..store.record import LOG, log_header, restore_record
from .distributed import agree
from .evaluation import measure
from .interrupt import Interrupted, StopRequest
from .loop import EpochProgress, epoch_steps, make_step
from .setup import Setup, seed_everything

REMEDY = "; then continue the run with --resume auto"   # after a failed checkpoint or log write


@dataclass(frozen=True)
class Training:
    """What training takes of a run's options, and the options as its checkpoints record them."""
    method: MethodOptions
    optim: OptimOptions
    evaluation: EvalOptions
    runtime: RuntimeOptions
    tensorboard: Optional[str]
    record: Dict[str, object]            # every option by name: a checkpoint's "args"


def fit(setup: Setup, training: Training, resume: Optional[str], ckpt) -> int:
    """Train from the checkpoint's state (or anew) to --epochs, evaluating and saving as the
    options say."""
    model, world = setup.model, setup.world
    method, optim = training.method, training.optim
    state = training_state(setup, optim, resume, ckpt)
    if state.start > optim.epochs:
        setup.say(f"nothing to train: the checkpoint finished epoch {state.start - 1} of --epochs {optim.epochs}")
        return 0
    board = open_tensorboard(training.tensorboard) if training.tensorboard and world.main else None
    augment = make_augmentation(setup.input_size, method.augment).to(setup.device)
    step = make_step(model, augment, state.optimizer, state.scaler, method.contrastive_temperature,
                     training.runtime, setup.device, setup.layout, world)
    model.train(not bn_frozen(method, state.best))
    processes = f", {world.size} processes of {optim.batch_size // world.size}" if world.distributed else ""
    setup.say(f"SPQ: {model.bits} bits ({method.N_books} books x {method.N_words} words), "
              f"{what_ran_text(what_ran(training.record))}, {len(setup.train_images)} training images, batch {optim.batch_size}{processes}, epochs "
              f"{state.start}..{optim.epochs}, {method.augment} views, device {setup.device}, output {setup.out}")
    if method.freeze_bn_after_eval:
        setup.say("--freeze_bn_after_eval: training continues in eval mode (frozen BatchNorm) "
                  "after the first evaluation" + (" (frozen already)" if bn_frozen(method, state.best) else ""))
    if setup.unevaluable:
        setup.say(f"evaluation skipped: {setup.unevaluable}; training goes on, without best.pth")
    try:
        with StopRequest() as stop:
            for epoch in range(state.start, optim.epochs + 1):
                record = fit_epoch(setup, training, state, step, epoch, stop)
                if board is not None:
                    for name, value in record.items():
                        if name not in ("epoch", "bits", "top_n") and isinstance(value, (int, float)):
                            board.add_scalar(name, value, epoch)
                    board.flush()
    finally:
        if board is not None:
            board.close()
    return 0


def open_tensorboard(folder: str):
    """A TensorBoard SummaryWriter on `folder`; SPQError saying what to install when the
    tensorboard package is absent."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SPQError("--tensorboard needs the tensorboard package, which is not installed: "
                       "pip install tensorboard (or drop --tensorboard)") from None
    return SummaryWriter(folder)


def fit_epoch(setup: Setup, training: Training, state: "TrainingState", step, epoch: int,
              stop: StopRequest) -> Dict:
    """Train (or finish) `epoch`, then evaluate when it is due, save and log it; returns its
    log row. Raises Interrupted, after saving, when a signal asked to stop."""
    world, optim = setup.world, training.optim
    if state.progress is None:
        state.progress = EpochProgress(epoch, state.shuffle.get_state())
    progress = state.progress
    lr = state.optimizer.param_groups[0]["lr"]
    if not epoch_steps(step, setup.train_images, optim.batch_size, state.shuffle, progress,
                       optim.epochs, stop, world, setup.device, state.scaler):
        save(setup, training, state, epoch - 1)
        raise Interrupted(stop.signum, str(setup.out / "last.pth"), f"in epoch {epoch} after step {progress.step}")
    loss = progress.mean_loss()
    end_of_epoch(state.scheduler, optim.lr_schedule, epoch)
    record = {"epoch": epoch, "loss": loss, "lr": lr, "seconds": round(progress.seconds, 3)}
    if state.scaler.is_enabled():
        record["skipped_steps"] = progress.skipped
    setup.say(f"epoch {epoch}/{optim.epochs}  loss {loss:.4f}  lr {lr:.3g}  {record['seconds']:.1f}s")
    if record.get("skipped_steps"):
        setup.say(f"epoch {epoch}: fp16 loss scaling skipped {progress.skipped} of {progress.step} "
                  f"steps (their gradients overflowed)")
    state.progress = None
    is_best = False
    if (epoch % training.evaluation.eval_epoch == 0 or epoch == optim.epochs) and not setup.unevaluable:
        is_best = measure_epoch(setup, training, state, epoch, record)
    lines = [record] if state.rows else [log_header(training.record), record]   # the header above row 1
    state.rows = state.rows + [record]            # last.pth carries the log rows up to its epoch
    save(setup, training, state, epoch, is_best)
    if world.main:
        append_jsonl(setup.out / LOG, lines, REMEDY)
    if agree(world, stop.signum is not None) and epoch < optim.epochs:
        raise Interrupted(stop.signum, str(setup.out / "last.pth"), f"after epoch {epoch}")
    return record


def measure_epoch(setup: Setup, training: Training, state: "TrainingState", epoch: int, record: Dict) -> bool:
    """Measure mAP after `epoch`, note it in `record` and the state's best; whether it is the
    best so far. With --freeze_bn_after_eval, training goes on in eval mode from here."""
    model, evaluation = setup.model, training.evaluation
    t1 = time.time()
    m = measure(model, setup.gallery, setup.queries, setup.input_size, evaluation, setup.precision, setup.world)
    is_best = state.best is None or m > state.best
    if is_best:
        state.best, state.best_epoch = m, epoch
    model.train(not bn_frozen(training.method, state.best))
    record.update({"mAP": m, "bits": model.bits, "top_n": evaluation.Top_N, "distance": evaluation.distance,
                   "adc_distance": evaluation.adc_distance,
                   "eval_seconds": round(time.time() - t1, 3)})
    setup.say(f"epoch {epoch}: mAP@{evaluation.Top_N or 'all'} = {m:.4f}  (best {state.best:.4f}, "
              f"{model.bits} bits, eval {record['eval_seconds']:.1f}s)")
    return is_best


def bn_frozen(method: MethodOptions, best_map: Optional[float]) -> bool:
    """Whether training runs with the model in eval mode: with --freeze_bn_after_eval, once
    an evaluation has happened (a best mAP exists), as in the authors' script, whose
    evaluation switched the model to eval mode and never back."""
    return method.freeze_bn_after_eval and best_map is not None


def save(setup: Setup, training: Training, state: "TrainingState", epoch_done: int, is_best: bool = False) -> None:
    """last.pth, then (is_best) best.pth without the training state; see docs/crash-safety.md."""
    if not setup.world.main:
        return
    ckpt = state.checkpoint(training.record, setup.model, epoch_done, setup.split_record, setup.environment)
    atomic_save(with_checksum(ckpt), setup.out / "last.pth", REMEDY)
    if is_best:
        atomic_save(with_checksum(model_only(ckpt)), setup.out / "best.pth", REMEDY)


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

    def checkpoint(self, record: Dict, model: SPQ, epoch_done: int, split: Dict, environment: Dict) -> Dict:
        """The contents of last.pth after `epoch_done` epochs (and `self.progress` of the next,
        when a signal stopped it), with the run's options as `record`ed, its `split` and
        `environment` (`spq.run.setup.Setup`); best.pth is `model_only` of it."""
        return {"format": FORMAT, "version": VERSION, "epoch": epoch_done, "best_map": self.best,
                "split": split, "environment": environment,
                "best_epoch": self.best_epoch, "log": self.rows,
                "args": dict(record), "model": model.state_dict(), "optimizer": self.optimizer.state_dict(),
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
            [r for r in read_jsonl(log) if "epoch" in r and r["epoch"] <= ckpt["epoch"]]
        self.progress = EpochProgress(**ckpt["mid_epoch"]) if ckpt["mid_epoch"] is not None else None


def training_state(setup: Setup, optim: OptimOptions, resume: Optional[str], ckpt) -> TrainingState:
    """A new run's Adam optimizer (--lr, --weight_decay), schedule, loss scaler and shuffling
    (seeded by --seed), or those of the checkpoint: then OUTPUT_DIR's log.jsonl and best.pth
    are made to agree with it (`restore_record`), the other ranks under torchrun are
    reseeded, and the resume point is printed."""
    world = setup.world
    optimizer = torch.optim.Adam(setup.model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
    scheduler = make_scheduler(optimizer, optim.lr_schedule,
                               setup.data.train_images.shape[0] // optim.batch_size, optim.epochs)
    state = TrainingState(optimizer, scheduler, make_scaler(setup.device, setup.precision),
                          torch.Generator().manual_seed(optim.seed))
    if ckpt is None:
        return state
    state.restore(ckpt, setup.model, resume, setup.out / LOG)
    if world.main:
        restore_record(setup.out, ckpt, state.rows, setup.say, REMEDY)
    progress = state.progress
    if world.rank:   # the checkpoint holds rank 0's streams; the others start anew from here
        seed_everything(hash((optim.seed, world.rank, state.start, progress.step if progress else 0)) % 2 ** 31)
    where = f"step {progress.step} of epoch {state.start}" if progress else f"epoch {state.start}"
    setup.say(f"resuming {resume} at {where} (best mAP so far {state.best})")
    return state
