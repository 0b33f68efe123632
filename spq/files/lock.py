"""One writer per output folder: an exclusive advisory lock (flock) on FOLDER/.spq.lock."""
import errno
import fcntl
import os
import socket
import sys
from pathlib import Path
from typing import List, Optional

from ..errors import SPQError
from .write import ensure_folder, open_regular

LOCK = ".spq.lock"


class OutputLock:
    """An exclusive advisory lock (flock) on FOLDER/.spq.lock (or another `name`), held while
    a command writes its output there: a second writer is refused, never mixed in.

    The kernel drops a flock when its process dies, however it dies, so a lock left by a
    killed run never blocks the next one. The file names the holder, for the refusal
    message. `release` removes it, and the folders `acquire` created if they are empty.
    `what` names the output in messages (--output_dir, --out, OUT).
    """

    def __init__(self, folder, name: str = LOCK, what: str = "--output_dir"):
        self.folder = Path(folder)
        self.path = self.folder / name
        self.what = what
        self.fd: Optional[int] = None
        self.created: List[Path] = []     # folders made by acquire, deepest first

    def acquire(self) -> "OutputLock":
        try:
            self.created = [f for f in (self.folder, *self.folder.parents) if not f.exists()]
            ensure_folder(self.folder, self.what)
            while True:
                fd = open_regular(self.path, os.O_RDWR | os.O_CREAT)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.read(fd, 1000).decode(errors="replace").strip() or "another process"
                    os.close(fd)
                    raise SPQError(f"{self.what} {self.folder} is in use by another run ({holder}); "
                                   f"wait for it to end, or choose another {self.what}") from None
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
            raise SPQError(f"{self.what} {self.folder} cannot be written ({e.strerror}); "
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
