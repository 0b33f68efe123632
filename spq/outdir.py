"""A run's output folder: one run at a time (a lock), and its record kept in step.

The record is last.pth, best.pth and log.jsonl. last.pth is its reference: it carries
the log rows up to its epoch and the epoch whose model best.pth holds, so that on
resume `restore_record` makes log.jsonl and best.pth agree with it whatever moment a
crash or a full disk interrupted (docs/crash-safety.md gives the order of writes).
"""
import errno
import fcntl
import os
import socket
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .checkpoint import FORMAT, VERSION, model_only
from .errors import SPQError
from .fileio import (atomic_save, atomic_write_bytes, jsonl_bytes, open_regular, read_tagged,
                     remove_stale_temp_files, with_checksum)

LOCK = ".spq.lock"
LOG = "log.jsonl"
RECORD = ("last.pth", "best.pth", LOG, "retrieval.json")


class OutputLock:
    """An exclusive advisory lock (flock) on OUTPUT_DIR/.spq.lock, held for a whole run.

    The kernel drops a flock when its process dies, however it dies, so a lock left by a
    killed run never blocks the next one. The file names the holder, for the refusal
    message. `release` removes it, and the folders `acquire` created if they are empty.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.fd: Optional[int] = None
        self.created: List[Path] = []     # folders made by acquire, deepest first

    def acquire(self) -> "OutputLock":
        try:
            self.created = [f for f in (self.folder, *self.folder.parents) if not f.exists()]
            self.folder.mkdir(parents=True, exist_ok=True)
            while True:
                fd = open_regular(self.path, os.O_RDWR | os.O_CREAT)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.read(fd, 1000).decode(errors="replace").strip() or "another process"
                    os.close(fd)
                    raise SPQError(f"--output_dir {self.folder} is in use by another run ({holder}); "
                                   f"wait for it to end, or choose another --output_dir") from None
                try:   # a finishing holder may have removed the file between open and flock
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
            os.ftruncate(fd, 0)
            command = " ".join(sys.argv)[:200]
            os.write(fd, f"process {os.getpid()} on {socket.gethostname()}: {command}\n".encode())
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.EEXIST):
                raise SPQError(f"{self.path} is a symbolic link or not a regular file, which this program "
                               f"never makes; remove it (nothing was written through it)") from None
            raise SPQError(f"--output_dir {self.folder} cannot be written ({e.strerror}); "
                           f"choose a folder you can write to") from None
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)      # still held: no other run has it open locked
            for folder in self.created:
                if any(folder.iterdir()):
                    break
                folder.rmdir()
        except OSError:
            pass
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def clean(folder) -> List[Path]:
    """Remove the temporary files a killed writer of this program left in `folder`."""
    return remove_stale_temp_files(folder, RECORD)


def restore_record(out: Path, ckpt: Dict, rows: List[Dict], say: Callable = print,
                   remedy: str = "") -> None:
    """Make OUTPUT_DIR's log.jsonl hold exactly `rows` (the checkpoint's), and write best.pth
    from the checkpoint when the checkpoint's epoch is its best one and best.pth does not
    hold it (a crash came between the writes of last.pth and best.pth)."""
    log = out / LOG
    current = log.read_bytes() if log.is_file() else b""
    wanted = jsonl_bytes(rows)
    if current != wanted:
        atomic_write_bytes(log, wanted, remedy)
        say(f"resume: {log} now holds the checkpoint's {len(rows)} epoch row(s)")
    if ckpt.get("best_epoch") is None or ckpt["best_epoch"] != ckpt["epoch"]:
        return
    best = out / "best.pth"
    try:
        held = read_tagged(best, FORMAT, VERSION, "checkpoint").get("epoch")
    except SPQError:
        held = None
    if held != ckpt["epoch"]:
        atomic_save(with_checksum(model_only(ckpt)), best, remedy)
        say(f"resume: {best} written for epoch {ckpt['epoch']}, the best so far")
