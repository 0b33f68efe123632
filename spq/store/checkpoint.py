"""What a checkpoint holds, and reading one back: weights_only=True, checked strictly
(`spq.store.schema`) before any part is used. Checkpoints are written by
`spq.files.torchfile.atomic_save`.

A checkpoint is a dict of tensors and plain Python values (no pickled objects):
format, version, epoch (last finished, 1-based), best_map, args (vars of the
run's arguments), model, optimizer, scheduler, scaler (fp16 loss scaling), rng
(every random stream the run draws from) and mid_epoch: None after a whole epoch, or, when a run was stopped by
a signal inside an epoch, where that epoch stood (its number, steps done, loss sum,
seconds, and the shuffling state at its start), so that a resumed run finishes it
exactly as the uninterrupted run would have. Since the crash-safe record
(docs/crash-safety.md) also: log, the rows of log.jsonl up to its epoch, and best_epoch,
the epoch whose model best.pth holds. best.pth holds the model only: optimizer,
scheduler, scaler, rng and mid_epoch are None there (last.pth holds them).
"""
import random
from typing import Dict

import numpy as np
import torch

from ..errors import SPQError
from ..files.torchfile import read_tagged, verify_checksum
from .schema import check_checkpoint

FORMAT = "spq-checkpoint"
VERSION = 1
REQUIRED = ("epoch", "best_map", "args", "model", "optimizer", "scheduler", "scaler", "rng",
            "mid_epoch")

TRAINING_STATE = ("optimizer", "scheduler", "scaler", "rng", "mid_epoch")


def model_only(state: Dict) -> Dict:
    """A checkpoint without what only training needs (best.pth): TRAINING_STATE set to None."""
    return {**state, **{k: None for k in TRAINING_STATE}}


def rng_state(shuffle: torch.Generator) -> Dict:
    """Every random stream a run may draw from: torch (CPU, which kornia's sampling uses,
    and CUDA), numpy, Python, and the shuffling generator; as tensors and plain values."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": random.getstate(),
            "shuffle": shuffle.get_state()}


def set_rng_state(state: Dict, shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"][:torch.cuda.device_count()])
        except RuntimeError:
            raise SPQError("the checkpoint's CUDA random states do not fit this PyTorch") from None
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    shuffle.set_state(state["shuffle"])


def load_checkpoint(path) -> Dict:
    """Read and validate a checkpoint on the CPU (`spq.store.schema`); SPQError if unreadable,
    foreign or malformed."""
    ckpt = read_tagged(path, FORMAT, VERSION, "checkpoint", "checkpoint")
    validate_checkpoint(ckpt, path)
    return ckpt


def validate_checkpoint(ckpt: Dict, path) -> None:
    """SPQError naming the file when a loaded checkpoint lacks a part, holds a malformed one
    (`spq.store.schema`), fails its checksum, or holds non-finite weights."""
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise SPQError(f"{path} lacks {', '.join(missing)}: it cannot be resumed")
    check_checkpoint(ckpt, path)
    verify_checksum(ckpt, path, "checkpoint")
    for part in ("model", "optimizer"):
        bad = next((name for name, t in _float_tensors(ckpt[part]) if not torch.isfinite(t).all()), None)
        if bad is not None:
            raise SPQError(f"{path} holds non-finite values (NaN or infinity) in its {part} ({bad}): the "
                           f"training that wrote it diverged, or the file is damaged; use another checkpoint")


def _float_tensors(obj, prefix=""):
    """(name, tensor) of every floating-point tensor in a nested state."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point():
            yield prefix, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _float_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _float_tensors(value, f"{prefix}[{i}]")


def load_state(module_or_optim, state: Dict, what: str, path) -> None:
    """load_state_dict that reports a mismatch as an SPQError naming the part."""
    try:
        if isinstance(module_or_optim, torch.nn.Module):
            module_or_optim.load_state_dict(state, strict=True)
        else:
            module_or_optim.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SPQError(f"{path}: the saved {what} does not match this configuration ({first})") from None
