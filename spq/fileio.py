"""Files this program writes and reads back: atomic writes, JSON lines, tagged torch files.

Every byte the program writes into its files goes through `write_all`. A file is
replaced atomically (`atomic_write_bytes`: a temporary file beside it, flushed to disk,
renamed over it), so a crash at any moment leaves the old file or the new one, never a
torn one; the temporary files a killed writer leaves are removed later
(`remove_stale_temp_files`). A failed write (a full disk) becomes one line
(`write_error`) saying where, how much space is free and how much is needed.
"""
import errno
import io
import json
import os
import shutil
import stat
import sys
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Dict, Iterable, List

import torch

from .errors import SPQError

TEMP_INFIX = ".tmp"      # a file being written is .NAME.tmpPID beside NAME


def write_all(f: BinaryIO, data, path: Path) -> None:
    """Write `data` into `f`, the open file of `path`."""
    f.write(data)


def open_regular(path: Path, flags: int, mode: int = 0o644) -> int:
    """os.open that never follows a symbolic link at `path` and opens regular files only:
    a link or another kind of file planted there is an OSError (ELOOP, or EEXIST naming it),
    so nothing is written through it."""
    fd = os.open(path, flags | os.O_NOFOLLOW, mode)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EEXIST, "not a regular file", str(path))
    return fd


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
    over `path`. A failed write raises `write_error` with `remedy` appended."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        tmp.unlink(missing_ok=True)                  # a link there is removed, not followed
        with os.fdopen(open_regular(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as f:
            write_all(f, data, path)
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
    """torch.save `obj` to `path` atomically. The bytes are made in memory first, so a full
    disk is an OSError of the write, not an error inside torch.save."""
    atomic_write(path, lambda f: torch.save(obj, f), remedy)


def atomic_save_json(obj, path, remedy: str = "") -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()), remedy)


def jsonl_bytes(rows: List[Dict]) -> bytes:
    """Rows as JSON lines."""
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def append_jsonl(path, row: Dict, remedy: str = "") -> None:
    """Append one JSON line to `path` and flush it to disk. A failed write (a full disk)
    cuts the file back to its previous length and raises `write_error`."""
    path = Path(path)
    line = jsonl_bytes([row])
    try:
        fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    except OSError as e:
        raise write_error(path, e, len(line), remedy) from None
    with os.fdopen(fd, "ab") as f:
        size = f.tell()
        try:
            write_all(f, line, path)
            f.flush()
            os.fsync(f.fileno())
        except OSError as e:
            try:
                f.truncate(size)
            except OSError:
                pass                    # a torn last line is dropped by read_jsonl
            raise write_error(path, e, len(line), remedy) from None


def read_jsonl(path) -> List[Dict]:
    """The JSON objects of a JSON-lines file; unreadable lines (a torn last line, as a crash
    leaves it) are dropped, a missing file has none."""
    rows = []
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return rows
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


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
    if not isinstance(d, dict) or not isinstance(d.get("format"), str) or d["format"] != fmt:
        raise SPQError(f"{path} is not an SPQ {what} of this program{remedy}")
    stored = d.get("version")
    if type(stored) is not int or stored != version:
        shown = stored if type(stored) is int else type(stored).__name__
        raise SPQError(f"{path} has {what} version {shown}, this program reads version {version}{remedy}")
    return d


def tensor_checksum(obj) -> int:
    """CRC-32 of the bytes of every tensor in `obj` (dicts in key order, lists in order):
    what a checksum written with a file guards."""
    crc = 0
    for tensor in _tensors(obj):
        data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        crc = zlib.crc32(data, crc)
    return crc


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            if key != "checksum":
                yield from _tensors(obj[key])
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)


def with_checksum(d: Dict) -> Dict:
    """`d` with "checksum": the CRC-32 of its tensors (`tensor_checksum`)."""
    return {**d, "checksum": {"crc32": tensor_checksum(d)}}


def verify_checksum(d: Dict, path, what: str) -> None:
    """SPQError when `d`'s tensors do not match the checksum written with them; a file
    written before checksums existed loads with a one-line note on stderr."""
    stored = d.get("checksum")
    if stored is None:
        print(f"note: {path} has no checksum (written before they were recorded); its tensors "
              f"are not verified", file=sys.stderr)
        return
    if not (isinstance(stored, dict) and isinstance(stored.get("crc32"), int)
            and stored["crc32"] == tensor_checksum(d)):
        raise SPQError(f"{path} is damaged: its tensors do not match the checksum written with them; "
                       f"use another copy of this {what}")
