"""What a checkpoint may hold: every part checked (keys, types, ranges) before any is used.

`torch.load(weights_only=True)` keeps a file from running code, but a well-formed file
can still hold values that crash or exhaust the program later (a random-state record
without its keys, N_books = 10**6). `check_checkpoint` refuses such a file with one
line naming the part. The stored options are checked against the command-line parser
of spq/options/ (types, choices, and its value rules `spq.options.values.check`), so every
option the parser knows is covered, including ones added later; options a checkpoint lacks (it was
written before they existed) are checked at their defaults and are not required.
Stored options the parser does not know are ignored (nothing reads them), provided they
are plain values: a checkpoint of another version of this program, with an option
since renamed or removed, then still loads.
"""
import argparse
import math
from typing import Any, Dict, Optional

import torch

from ..errors import SPQError, shown
from ..options.declared import get_args_parser
from ..options.values import RANGES, check

MAX_EPOCHS = RANGES["epochs"][1]
PLAIN = (str, int, float, bool, type(None))


class _Refusal(Exception):
    pass


class _Raising(argparse.ArgumentParser):
    """A parser whose error() raises instead of exiting, to run the options' check on stored values."""
    def error(self, message):
        raise _Refusal(message)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _value_problem(action: argparse.Action, value) -> Optional[str]:
    """Why `value` cannot be what `action` parses to, or None."""
    if value is None and action.default is None:
        return None
    if action.nargs in ("*", "+") or (_is_int(action.nargs) and action.nargs > 0):
        if not isinstance(value, (list, tuple)):
            return f"{shown(value)} is not a list"
        return next(filter(None, (_single_problem(action, v) for v in value)), None)
    return _single_problem(action, value)


def _single_problem(action: argparse.Action, value) -> Optional[str]:
    if action.choices is not None and value not in action.choices:
        return f"{shown(value)} is not one of {', '.join(map(str, action.choices))}"
    kind = action.type
    if action.nargs == 0 or (action.const is True and action.nargs == "?"):   # a flag, a BOOL
        ok = isinstance(value, bool)
    elif kind is int:
        ok = _is_int(value)
    elif kind is float:
        ok = _is_number(value)
    elif kind in (None, str):
        ok = isinstance(value, str)
    else:                   # another parsing function: only plain values are admitted
        ok = isinstance(value, PLAIN) or (isinstance(value, (list, tuple))
                                          and all(isinstance(x, PLAIN) for x in value))
    return None if ok else f"{shown(value)} is not a value this option takes"


# The options every checkpoint of this program stores: the authors' options, which it has had
# from its first version (options added later may be missing from older checkpoints).
ORIGINAL_OPTIONS = ("gpu_id", "if_download", "data_dir", "batch_size", "num_workers", "input_size", "N_books",
                    "N_words", "L_word", "soft_quantization_scale", "contrastive_temperature", "num_cls",
                    "eval_epoch", "output_dir", "Top_N")


def check_options(saved: Any) -> Optional[str]:
    """What is wrong with a checkpoint's stored options (a dict), or None."""
    if not isinstance(saved, dict) or not all(isinstance(k, str) for k in saved):
        return "its options are not a dictionary of names"
    missing = [name for name in ORIGINAL_OPTIONS if name not in saved]
    if missing:
        return f"no stored option --{missing[0]} ({len(missing)} of the options every checkpoint holds are missing)"
    parser = get_args_parser()
    known = {a.dest: a for a in parser._actions if a.dest != "help"}
    for name, value in saved.items():
        if name not in known:
            if not isinstance(value, PLAIN):
                return f"its unknown option {shown(name)} holds a {type(value).__name__}"
            continue
        problem = _value_problem(known[name], value)
        if problem:
            return f"its option --{name}: {problem}"
    values = argparse.Namespace(**{**vars(parser.parse_args([])), **saved})
    try:
        check(_Raising(), values)
    except _Refusal as e:
        return f"its options are invalid ({e})"
    return None


def _rng_problem(rng: Any) -> Optional[str]:
    def byte_state(t, numel=None):
        return (isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.ndim == 1
                and (numel is None or t.numel() == numel))

    cpu = torch.get_rng_state().numel()
    if not (isinstance(rng, dict) and {"torch", "cuda", "numpy", "python", "shuffle"} <= set(rng)):
        return "no random states of torch, cuda, numpy, python and shuffling"
    if not (byte_state(rng["torch"], cpu) and byte_state(rng["shuffle"], cpu)):
        return f"a torch random state that is not {cpu} bytes"
    if not (isinstance(rng["cuda"], (list, tuple)) and all(byte_state(t) for t in rng["cuda"])):
        return "CUDA random states that are not byte tensors"
    n = rng["numpy"]
    if not (isinstance(n, dict) and isinstance(n.get("keys"), torch.Tensor)
            and n["keys"].dtype == torch.int64 and n["keys"].shape == (624,)
            and int(n["keys"].min()) >= 0 and int(n["keys"].max()) < 2 ** 32
            and _is_int(n.get("pos")) and 0 <= n["pos"] <= 624
            and _is_int(n.get("has_gauss")) and n["has_gauss"] in (0, 1) and _is_number(n.get("gauss"))):
        return "a malformed numpy random state"
    p = rng["python"]
    if not (isinstance(p, (tuple, list)) and len(p) == 3 and p[0] == 3
            and isinstance(p[1], (tuple, list)) and len(p[1]) == 625
            and all(_is_int(x) and 0 <= x < 2 ** 32 for x in p[1]) and p[1][-1] <= 624
            and (p[2] is None or _is_number(p[2]))):
        return "a malformed Python random state"
    return None


MID_EPOCH_KEYS = {"epoch", "shuffle_state", "step", "loss_sum", "seconds"}
MID_EPOCH_COUNTS = {"skipped", "non_finite"}      # fp16 step counts, absent in older checkpoints


def _mid_epoch_problem(mid: Any, epoch: int) -> Optional[str]:
    if not (isinstance(mid, dict) and MID_EPOCH_KEYS <= set(mid) <= MID_EPOCH_KEYS | MID_EPOCH_COUNTS):
        return ("a mid-epoch record without exactly epoch, shuffle_state, step, loss_sum, seconds "
                "(and optionally skipped, non_finite)")
    if mid["epoch"] != epoch + 1 or not _is_int(mid["epoch"]):
        return f"a mid-epoch record of epoch {shown(mid['epoch'])}, not {epoch + 1}"
    state = mid["shuffle_state"]
    if not (isinstance(state, torch.Tensor) and state.dtype == torch.uint8
            and state.shape == torch.get_rng_state().shape):
        return "a mid-epoch shuffling state that is not a random state"
    if not (_is_int(mid["step"]) and mid["step"] >= 0):
        return f"a mid-epoch step {shown(mid['step'])}"
    loss = mid["loss_sum"]
    if not (isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.is_floating_point()):
        return "a mid-epoch loss sum that is not one number"
    if not (_is_number(mid["seconds"]) and mid["seconds"] >= 0):
        return f"mid-epoch seconds {shown(mid['seconds'])}"
    for name in MID_EPOCH_COUNTS & set(mid):
        if not (_is_int(mid[name]) and 0 <= mid[name] <= mid["step"]):
            return f"a mid-epoch {name} count {shown(mid[name])}"
    return None


def _log_problem(rows: Any, epoch: int) -> Optional[str]:
    if not isinstance(rows, list) or len(rows) != epoch:
        return f"a log that is not a list of {epoch} rows"
    for i, row in enumerate(rows, start=1):
        if not (isinstance(row, dict) and row.get("epoch") == i
                and all(isinstance(k, str) and isinstance(v, PLAIN) for k, v in row.items())):
            return f"log row {i} that is not the plain record of epoch {i}"
    return None


def check_checkpoint(ckpt: Dict, path) -> None:
    """SPQError naming the first part of `ckpt` (already known to hold every REQUIRED key)
    that is malformed. Optimizer, scheduler, scaler, rng and mid_epoch may all be None
    together: a model-only checkpoint (best.pth)."""
    problem = _checkpoint_problem(ckpt)
    if problem:
        raise SPQError(f"{path} is a damaged or foreign checkpoint: it has {problem}; "
                       f"use another checkpoint")


def _checkpoint_problem(ckpt: Dict) -> Optional[str]:
    epoch = ckpt["epoch"]
    if not (_is_int(epoch) and 0 <= epoch <= MAX_EPOCHS):
        return f"epoch {shown(epoch)}"
    best = ckpt["best_map"]
    if best is not None and not (_is_number(best) and 0 <= best <= 1):
        return f"a best mAP of {shown(best)}"
    problem = check_options(ckpt["args"])
    if problem:
        return problem
    model = ckpt["model"]
    if not (isinstance(model, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in model.items())):
        return "a model that is not a dictionary of tensors"
    m, k, l = (ckpt["args"].get(n) for n in ("N_books", "N_words", "L_word"))
    if None not in (m, k, l):
        # the options may not describe more parameters (codebooks M*K*L, head 512*M*L) than
        # the file stores: a crafted file cannot make the program allocate more than its size
        # (a smaller mismatch is reported by load_state, naming the part)
        stored = sum(t.numel() for t in model.values())
        if m * k * l + 512 * m * l > stored:
            return (f"options N_books {m}, N_words {k}, L_word {l} that describe more parameters "
                    f"than its {stored} stored weights")
    training = [ckpt[k] for k in ("optimizer", "scheduler", "scaler", "rng")]
    if all(part is None for part in training) and ckpt["mid_epoch"] is None:
        pass                                                    # model only
    elif not all(isinstance(part, dict) for part in training[:3]):
        return "optimizer, scheduler or scaler states that are not dictionaries"
    else:
        problem = _rng_problem(ckpt["rng"])
        if problem:
            return problem
        if ckpt["mid_epoch"] is not None:
            problem = _mid_epoch_problem(ckpt["mid_epoch"], epoch)
            if problem:
                return problem
    if "log" in ckpt:
        problem = _log_problem(ckpt["log"], epoch)
        if problem:
            return problem
    best_epoch = ckpt.get("best_epoch")
    if best_epoch is not None and not (_is_int(best_epoch) and 1 <= best_epoch <= epoch and best is not None):
        return f"a best epoch of {shown(best_epoch)}"
    env = ckpt.get("environment", {})
    if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        return "an environment record that is not a dictionary of strings"
    if "split" in ckpt:
        return _split_problem(ckpt["split"])
    return None


def _split_problem(split: Any) -> Optional[str]:
    """What is wrong with a checkpoint's record of its split (absent before splits were
    recorded), or None."""
    if not (isinstance(split, dict) and set(split) == {"protocol", "seed", "hash", "train_ids"}):
        return "a split record without exactly protocol, seed, hash and train_ids"
    if not (isinstance(split["protocol"], str) and (split["seed"] is None or _is_int(split["seed"]))
            and isinstance(split["hash"], str) and len(split["hash"]) == 64):
        return "a split record whose protocol, seed or hash is malformed"
    ids = split["train_ids"]
    if not (ids is None or isinstance(ids, str) or (isinstance(ids, torch.Tensor) and ids.dtype == torch.int64
                                                     and ids.ndim == 1)):
        return "training-image ids that are neither item numbers nor paths"
    return None
