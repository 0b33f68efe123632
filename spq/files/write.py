"""The one way out: every file this program writes.

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
from pathlib import Path
from typing import BinaryIO, Callable, Dict, Iterable, List

from ..errors import SPQError
from .read import file_digest

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


def atomic_save_json(obj, path, remedy: str = "") -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()), remedy)


def jsonl_bytes(rows: List[Dict]) -> bytes:
    """Rows as JSON lines."""
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def append_jsonl(path, rows: List[Dict], remedy: str = "") -> None:
    """Append JSON lines to `path` in one write and flush it to disk. A failed write (a full
    disk) cuts the file back to its previous length and raises `write_error`."""
    path = Path(path)
    line = jsonl_bytes(rows)
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


def ensure_folder(folder, what: str = "the output folder") -> Path:
    """`folder` made (with its parents) when missing; SPQError when it is a symbolic link
    (nothing is written through one) or not a folder."""
    folder = Path(folder)
    if folder.is_symlink():
        raise SPQError(f"{what} {folder} is a symbolic link, which this program never writes through; "
                       f"pass the folder it points to, or another one")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SPQError(f"{what} {folder} is a file, not a folder") from None
    except OSError as e:
        raise SPQError(f"{what} {folder} cannot be made ({e.strerror or e}); choose a folder you can "
                       f"write to") from None
    return folder


def check_writable(folder: Path) -> None:
    """OSError unless a file can be created in `folder` (probed with a file of its own,
    created exclusively, following no link, then removed)."""
    probe = Path(folder) / f".write-test-{os.getpid()}"
    probe.unlink(missing_ok=True)
    os.close(open_regular(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    probe.unlink()


def scratch_file(folder) -> BinaryIO:
    """A temporary file in `folder`, created exclusively and unlinked at once (no name to
    plant a link at, nothing left behind by a crash): for data too large for memory."""
    import tempfile
    ensure_folder(folder)
    return tempfile.TemporaryFile(dir=folder, prefix=".spq-scratch-")


def file_record(path) -> Dict:
    """{"bytes", "sha256"} of a file just written: what a manifest says of it."""
    return file_digest(path, "listed")


def write_manifest(folder, name: str, record: Dict, files: Iterable[str], remedy: str = "") -> Dict:
    """Write `record` as the JSON manifest `name` of a folder of files, last, with "files":
    each of `files` (written before it, in `folder`) with its size and SHA-256. Readers
    trust the folder only when the manifest matches (`spq.files.read.verified`)."""
    folder = Path(folder)
    record = {**record, "files": {f: file_record(folder / f) for f in files}}
    atomic_save_json(record, folder / name, remedy)
    return record


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
