"""Checkpoints: written atomically, loaded with weights_only=True, checked strictly.

A checkpoint is a dict of tensors and plain Python values (no pickled objects):
format, version, epoch (last finished, 1-based), best_map, args (vars of the
run's arguments), model, optimizer, scheduler and rng (every random stream the
run draws from).
"""
import os
import random
import warnings
from pathlib import Path
from typing import Dict, Iterable

import torch

from .errors import SPQError

FORMAT = "spq-checkpoint"
VERSION = 1
REQUIRED = ("epoch", "best_map", "args", "model", "optimizer", "scheduler", "rng")

# Options that define the model or the method: a resumed run must keep them.
METHOD_OPTIONS = ("N_books", "N_words", "L_word", "input_size", "soft_quantization_scale",
                  "contrastive_temperature", "batch_size", "lr", "weight_decay", "lr_schedule",
                  "num_cls")


def atomic_save(obj, path) -> None:
    """torch.save to a temporary file beside `path`, flushed to disk, then renamed over it.

    A crash at any moment leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def rng_state(shuffle: torch.Generator) -> Dict:
    """Every random stream a run draws from: torch (CPU, CUDA), Python, and the shuffler."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(),
            "shuffle": shuffle.get_state()}


def set_rng_state(state: Dict, shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][:torch.cuda.device_count()])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    shuffle.set_state(state["shuffle"])


def load_checkpoint(path) -> Dict:
    """Read and validate a checkpoint on the CPU; SPQError if unreadable or foreign."""
    path = Path(path)
    if not path.is_file():
        raise SPQError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # a foreign file's pickle-protocol warning is noise here
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SPQError(f"cannot read checkpoint {path}: it is truncated, corrupt or not a "
                       f"PyTorch file ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise SPQError(f"{path} is not an SPQ checkpoint of this program")
    if ckpt.get("version") != VERSION:
        raise SPQError(f"{path} has checkpoint version {ckpt.get('version')}, this program "
                       f"reads version {VERSION}")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise SPQError(f"{path} lacks {', '.join(missing)}: it cannot be resumed")
    return ckpt


def merge_args(args, saved: Dict, explicit: Iterable[str], path) -> None:
    """Adopt the checkpoint's values for method options not given on the command line.

    An option of METHOD_OPTIONS given with a different value than the checkpoint's is
    refused (SPQError naming it); other options keep their command-line values.
    """
    explicit = set(explicit)
    for name in METHOD_OPTIONS:
        if name not in saved:
            continue
        if name in explicit and getattr(args, name) != saved[name]:
            raise SPQError(f"--{name} {getattr(args, name)} differs from the checkpoint's "
                           f"{saved[name]} ({path}); a resumed run keeps the model and method: "
                           f"drop --{name} or start a new run")
        setattr(args, name, saved[name])


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
