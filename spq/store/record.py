"""A run's record in its output folder, kept in step with its checkpoint.

The record is last.pth, best.pth and log.jsonl (a header line saying what the run trains,
`log_header`, then one row per epoch). last.pth is its reference: it carries
the log rows up to its epoch and the epoch whose model best.pth holds, so that on
resume `restore_record` makes log.jsonl and best.pth agree with it whatever moment a
crash or a full disk interrupted (docs/crash-safety.md gives the order of writes).
"""
import os
from pathlib import Path
from typing import Callable, Dict, List

from ..errors import SPQError
from ..files.read import read_bytes
from ..files.torchfile import atomic_save, read_tagged, with_checksum
from ..files.write import atomic_write_bytes, jsonl_bytes, remove_stale_temp_files
from ..options.values import what_ran
from .checkpoint import FORMAT, VERSION, model_only

LOG = "log.jsonl"
RECORD = ("last.pth", "best.pth", LOG, "retrieval.json")


def clean(folder) -> List[Path]:
    """Remove the temporary files a killed writer of this program left in `folder`."""
    return remove_stale_temp_files(folder, RECORD)


def log_header(args: Dict) -> Dict:
    """The first line of a run's log.jsonl: what the run trains (`what_ran` of its options by
    name), above its epoch rows; readers of the rows skip it (it has no "epoch")."""
    return {"run": what_ran(args)}


def log_lines(args: Dict, rows: List[Dict]) -> List[Dict]:
    """What log.jsonl holds after these epoch rows of a run of options `args`: the header,
    then the rows (nothing before the first row is written)."""
    return [log_header(args), *rows] if rows else []


def restore_record(out: Path, ckpt: Dict, rows: List[Dict], say: Callable = print,
                   remedy: str = "") -> None:
    """Make OUTPUT_DIR's log.jsonl hold exactly `rows` (the checkpoint's) below the run's
    header, and write best.pth from the checkpoint when the checkpoint's epoch is its best
    one and best.pth does not hold it (a crash came between the writes of last.pth and
    best.pth)."""
    log = out / LOG
    current = read_bytes(log, "log") if os.path.lexists(log) else b""
    wanted = jsonl_bytes(log_lines(ckpt["args"], rows))
    if current != wanted:
        atomic_write_bytes(log, wanted, remedy)
        say(f"resume: {log} now holds the checkpoint's {len(rows)} epoch row(s)")
    if ckpt.get("best_epoch") is None or ckpt["best_epoch"] != ckpt["epoch"]:
        return
    best = out / "best.pth"
    try:
        held = read_tagged(best, FORMAT, VERSION, "checkpoint", "checkpoint").get("epoch")
    except SPQError:
        held = None
    if held != ckpt["epoch"]:
        atomic_save(with_checksum(model_only(ckpt)), best, remedy)
        say(f"resume: {best} written for epoch {ckpt['epoch']}, the best so far")
