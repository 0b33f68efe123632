"""Checkpoints: written atomically, loaded with weights_only=True, checked strictly.

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
import errno
import io
import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import BinaryIO, Callable, Dict, Iterable, List

import numpy as np
import torch

from . import faults
from .errors import SPQError
from .schema import check_checkpoint

FORMAT = "spq-checkpoint"
VERSION = 1
REQUIRED = ("epoch", "best_map", "args", "model", "optimizer", "scheduler", "scaler", "rng",
            "mid_epoch")

# Options that define the model or the method: a resumed run must keep them.
METHOD_OPTIONS = ("N_books", "N_words", "L_word", "input_size", "soft_quantization_scale",
                  "contrastive_temperature", "batch_size", "lr", "weight_decay", "lr_schedule",
                  "num_cls", "precision", "augment", "freeze_bn_after_eval")
# Method options added after checkpoints were first written, with the behaviour those
# older checkpoints were trained with.
LEGACY_METHOD = {"augment": "simclr", "freeze_bn_after_eval": False}
# Options whose command-line value is not compared with the checkpoint's.
RUN_ONLY_OPTIONS = ("resume", "eval_only")


TEMP_INFIX = ".tmp"      # a file being written is .NAME.tmpPID beside NAME


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_INFIX}{os.getpid()}")


def write_error(path, e: OSError, size: int, remedy: str = "") -> SPQError:
    """The one-line error for a failed write of `size` bytes to `path`: the folder, its free
    space and the space needed when the disk is full, and that the previous file is intact."""
    path = Path(path)
    folder = path.parent
    line = f"cannot write {path} ({e.strerror or e})"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f"{shutil.disk_usage(folder).free / 2 ** 20:.1f} MiB free"
        except OSError:
            free = "unknown free space"
        line += (f": {folder} has {free} and this file needs {size / 2 ** 20:.1f} MiB; "
                 f"free that much space there")
    return SPQError(f"{line}; the previous {path.name}, if any, is intact{remedy}")


def atomic_write_bytes(path, data: bytes, remedy: str = "") -> None:
    """Write `data` into a temporary file beside `path`, flush it to disk, then rename it
    over `path`: a crash at any moment leaves either the old file or the new one, never a
    torn one (a crash leaves the temporary file; `remove_stale_temp_files` clears it).
    A failed write (a full disk) raises `write_error` with `remedy` appended. The fault
    point "save:NAME" (spq.faults) lies after the first half of the data is written."""
    path = Path(path)
    tmp = temp_path(path)
    view = memoryview(data)
    try:
        with open(tmp, "wb") as f:
            f.write(view[:len(view) // 2])
            f.flush()
            faults.hit(f"save:{path.name}")
            f.write(view[len(view) // 2:])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(path, e, len(data), remedy) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the system allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write: Callable[[BinaryIO], None], remedy: str = "") -> None:
    """Write a file through `write(f)` (into memory first) atomically: see `atomic_write_bytes`."""
    buffer = io.BytesIO()
    write(buffer)
    atomic_write_bytes(path, buffer.getbuffer(), remedy)


def atomic_save(obj, path, remedy: str = "") -> None:
    """torch.save `obj` to `path` atomically (see `atomic_write_bytes`). The bytes are made
    in memory first, so a full disk is an OSError of the write, not an error inside torch.save."""
    atomic_write(path, lambda f: torch.save(obj, f), remedy)


def atomic_save_json(obj, path, remedy: str = "") -> None:
    """Write `obj` as indented JSON to `path` atomically (see `atomic_write_bytes`)."""
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()), remedy)


def remove_stale_temp_files(folder, names: Iterable[str]) -> List[Path]:
    """Remove the temporary files (.NAME.tmpPID) of `names` in `folder` that a killed
    writer left, when no live process has that PID; returns the removed paths."""
    removed = []
    for name in names:
        for tmp in Path(folder).glob(f".{name}{TEMP_INFIX}*"):
            pid = tmp.name[len(name) + 1 + len(TEMP_INFIX):]
            if pid.isdigit() and not _alive(int(pid)):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False            # this process writes nothing before it cleans up
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True             # it exists, owned by another user
    return True


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


def read_tagged(path, fmt: str, version: int, what: str, remedy: str = "") -> Dict:
    """Load a dict of tensors and plain values saved with {"format": fmt, "version": version},
    on the CPU with weights_only=True; SPQError naming `what` (and `remedy`, appended) when
    the file is missing, unreadable, foreign or of another version."""
    path = Path(path)
    if not path.is_file():
        raise SPQError(f"{what} {path} does not exist{remedy}")
    try:
        with warnings.catch_warnings():  # a foreign file's pickle-protocol warning is noise here
            warnings.simplefilter("ignore")
            d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SPQError(f"cannot read {what} {path}: it is truncated, corrupt or not a "
                       f"PyTorch file ({type(e).__name__})") from None
    if not isinstance(d, dict) or d.get("format") != fmt:
        raise SPQError(f"{path} is not an SPQ {what} of this program{remedy}")
    if d.get("version") != version:
        raise SPQError(f"{path} has {what} version {d.get('version')}, this program "
                       f"reads version {version}{remedy}")
    return d


def load_checkpoint(path) -> Dict:
    """Read and validate a checkpoint on the CPU (`spq.schema`); SPQError if unreadable,
    foreign or malformed."""
    ckpt = read_tagged(path, FORMAT, VERSION, "checkpoint")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise SPQError(f"{path} lacks {', '.join(missing)}: it cannot be resumed")
    check_checkpoint(ckpt, path)
    return ckpt


def merge_args(args, saved: Dict, explicit: Iterable[str], path) -> List[str]:
    """Reconcile the command line with the checkpoint's arguments `saved`; returns the
    lines to print.

    An option the user did not type takes the checkpoint's value (data, epochs,
    evaluation period, device, ...), except --output_dir, which becomes the folder
    holding the checkpoint (where its run wrote it); the first line lists what was taken
    where it differs from the default. A typed option overrides the checkpoint's value
    (one line per change), except those of METHOD_OPTIONS, which must keep it (SPQError
    naming the option).
    """
    explicit = set(explicit)
    saved = {**LEGACY_METHOD, **saved}
    for name in METHOD_OPTIONS:
        if name in saved and name in explicit and getattr(args, name) != saved[name]:
            raise SPQError(f"--{name} {getattr(args, name)} differs from the checkpoint's "
                           f"{saved[name]} ({path}); a resumed run keeps the model and method: "
                           f"drop --{name} or start a new run")
    taken, changed = [], []
    for name, value in sorted(vars(args).items()):
        if name in RUN_ONLY_OPTIONS or (name not in saved and name != "output_dir"):
            continue
        if name in explicit:
            if saved.get(name, value) != value:
                changed.append(f"--{name} {value} (the checkpoint's run had {saved[name]})")
            continue
        new = os.path.dirname(os.path.abspath(path)) if name == "output_dir" else saved[name]
        setattr(args, name, new)
        if new != value:
            taken.append(f"--{name} {new}")
    line = (f"options from the checkpoint's run: {' '.join(taken)} (type an option to override it)"
            if taken else "options from the checkpoint's run: all equal to the defaults")
    return [line] + changed


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
