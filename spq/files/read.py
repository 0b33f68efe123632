"""The one way in: every file the program reads (a user's checkpoint, index, weights, split,
list, label or concept file, log, image) is opened here, and only here.

A file is opened without blocking (a FIFO cannot hang the program), must be a regular
file (no FIFO, device or folder: `/dev/zero` is refused, not read forever), and may not
be larger than its kind allows (`LIMITS`), which is checked before its first byte is read
and again while reading (a file that grows is cut off). Text is UTF-8 (a leading
byte-order mark dropped), split into lines at "\\n" alone (as an editor numbers them: a
U+2028 inside a line does not start a new one), each at most MAX_LINE characters. A torch
file is a zip archive whose members must be stored, not compressed (torch.save writes them
so), and whose declared sizes must fit the kind's limit, before torch.load (weights_only)
reads it from the file this module opened. Every refusal is one SPQError line naming the
file and what to do.
"""
import errno
import hashlib
import io
import json
import os
import stat
import zipfile
from pathlib import Path
from typing import BinaryIO, Dict, List

from ..errors import SPQError, shown

GiB, MiB = 2 ** 30, 2 ** 20
# The largest file of each kind (bytes): well above what the program writes or the official
# datasets hold (a ResNet-50 checkpoint with Adam's moments is about 0.3 GB, NUS-WIDE's
# image list 15 MB, a CIFAR-10 batch 31 MB).
LIMITS = {
    "checkpoint": 8 * GiB, "index": 16 * GiB, "weights": 4 * GiB, "split": 512 * MiB,
    "list": 2 * GiB, "labels": 256 * MiB, "concepts": 256 * MiB, "image list": 512 * MiB,
    "tags": 16 * MiB, "classes": 16 * MiB, "log": 1 * GiB, "json": 256 * MiB, "manifest": 256 * MiB,
    "image": 1 * GiB, "cifar batch": 512 * MiB, "system": 16 * MiB, "archive": 1 * GiB,
    "listed": 16 * GiB,         # a file a manifest names
}
MAX_LINE = 1 * MiB          # characters in one line of a text file


def _size(n: int) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / MiB:.1f} MiB" if n >= MiB else f"{n} bytes"


def open_file(path, kind: str, what: str = "", remedy: str = "") -> BinaryIO:
    """`path` opened for reading as a binary file object; SPQError when it is missing, not a
    regular file, or larger than LIMITS[kind]. `what` names the file in messages (default:
    "the <kind> file"); `remedy` is appended to them."""
    path = Path(path)
    what = what or f"the {kind} file"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SPQError(f"{what} {path} does not exist{remedy}") from None
    except OSError as e:
        if e.errno == errno.EISDIR:
            raise SPQError(f"{what} {path} is a folder, not a file{remedy}") from None
        raise SPQError(f"cannot read {what} {path} ({e.strerror or e}){remedy}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise SPQError(f"{what} {path} is a folder, not a file{remedy}")
        if not stat.S_ISREG(info.st_mode):
            raise SPQError(f"{what} {path} is not a regular file (a pipe, a device or a socket), "
                           f"which is never read: pass the file itself{remedy}")
        if info.st_size > LIMITS[kind]:
            raise SPQError(f"{what} {path} is {_size(info.st_size)}, more than a {kind} file may be "
                           f"({_size(LIMITS[kind])}): it is not one this program wrote or reads{remedy}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path, kind: str, what: str = "", remedy: str = "") -> bytes:
    """The bytes of `path` (`open_file`), at most LIMITS[kind] of them."""
    what_ = what or f"the {kind} file"
    with open_file(path, kind, what, remedy) as f:
        try:
            data = f.read(LIMITS[kind] + 1)
        except OSError as e:
            raise SPQError(f"cannot read {what_} {path} ({e.strerror or e}){remedy}") from None
    if len(data) > LIMITS[kind]:
        raise SPQError(f"{what_} {path} grew past {_size(LIMITS[kind])} while it was read{remedy}")
    return data


def read_text(path, kind: str, what: str = "", remedy: str = "", errors: str = "strict") -> str:
    """The UTF-8 text of `path` (a leading byte-order mark dropped); SPQError when it is not
    UTF-8 (with `errors="replace"`, undecodable bytes become U+FFFD instead)."""
    data = read_bytes(path, kind, what, remedy)
    try:
        return data.decode("utf-8-sig", errors=errors)
    except UnicodeDecodeError:
        raise SPQError(f"{what or f'the {kind} file'} {path} is not UTF-8 text{remedy}") from None


def lines_of(text: str) -> List[str]:
    """The lines of a text: split at "\\n" alone, a trailing "\\r" dropped from each, no
    empty last line for a final newline. Other Unicode line separators stay inside their
    line, so line N is the N-th line an editor shows."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_lines(path, kind: str, what: str = "", remedy: str = "", errors: str = "strict") -> List[str]:
    """The lines of a text file (`read_text`, `lines_of`); SPQError naming the first line
    longer than MAX_LINE characters."""
    lines = lines_of(read_text(path, kind, what, remedy, errors))
    long = next((n for n, line in enumerate(lines, start=1) if len(line) > MAX_LINE), None)
    if long is not None:
        raise SPQError(f"{path}, line {long}: longer than {MAX_LINE} characters; no {kind} file has such "
                       f"lines{remedy}")
    return lines


def read_json(path, kind: str, what: str = "", remedy: str = ""):
    """The JSON document of `path`; SPQError when it is not one."""
    text = read_text(path, kind, what, remedy)
    try:
        return json.loads(text)
    except ValueError as e:
        raise SPQError(f"{what or f'the {kind} file'} {path} is not JSON ({shown(str(e))}){remedy}") from None


def read_jsonl(path, kind: str = "log") -> List[Dict]:
    """The JSON objects of a JSON-lines file; unreadable lines (a torn last line, as a crash
    leaves it) are dropped, a missing file has none; SPQError for a file that is not a
    regular one or too large (`open_file`)."""
    try:
        lines = read_lines(path, kind, errors="replace")
    except SPQError:
        if not os.path.lexists(path):
            return []
        raise
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def load_torch(path, kind: str, what: str = "", remedy: str = ""):
    """torch.load(weights_only=True) of the file this function opens, on the CPU, after its
    archive is checked: its members stored (uncompressed), their declared sizes within
    LIMITS[kind] in all. A file in torch's legacy (non-zip) format holds no compressed
    data: its size, already bounded, is what it loads. SPQError when it cannot be read."""
    import warnings

    import torch
    what = what or f"the {kind} file"
    with open_file(path, kind, what, remedy) as f:
        if zipfile.is_zipfile(f):
            f.seek(0)
            check_archive(f, path, kind, what, remedy)
        f.seek(0)
        try:
            with warnings.catch_warnings():     # a foreign file's pickle-protocol warning is noise here
                warnings.simplefilter("ignore")
                return torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:
            raise SPQError(f"cannot read {what} {path}: it is truncated, corrupt or not a PyTorch file "
                           f"({type(e).__name__}){remedy}") from None


def check_archive(f: BinaryIO, path, kind: str, what: str, remedy: str) -> None:
    """SPQError unless every member of the zip archive `f` is stored and their declared sizes
    fit LIMITS[kind]: a small compressed file cannot unpack into gigabytes."""
    try:
        members = zipfile.ZipFile(f).infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise SPQError(f"cannot read {what} {path}: a damaged archive ({type(e).__name__}){remedy}") from None
    packed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise SPQError(f"{what} {path} holds compressed members ({shown(packed[0])}), which torch.save "
                       f"never writes: it is refused unread{remedy}")
    declared = sum(m.file_size for m in members)
    if declared > LIMITS[kind]:
        raise SPQError(f"{what} {path} declares {_size(declared)} of contents, more than a {kind} file may "
                       f"hold ({_size(LIMITS[kind])}): it is refused unread{remedy}")


def file_digest(path, kind: str, what: str = "", remedy: str = "") -> Dict:
    """{"bytes", "sha256"} of `path` (`open_file`), read in blocks: what a manifest records
    of a file, and what a reader compares with it."""
    digest, size = hashlib.sha256(), 0
    with open_file(path, kind, what, remedy) as f:
        for block in iter(lambda: f.read(2 ** 20), b""):
            digest.update(block)
            size += len(block)
    return {"bytes": size, "sha256": digest.hexdigest()}


def verified(folder, name: str, what: str, remedy: str = "") -> Dict:
    """The manifest `name` of `folder` (as `spq.files.write.write_manifest` writes it, last),
    once every file it names was found with its recorded size and SHA-256; SPQError naming
    what is missing or differs (a run that was killed, or a file edited or replaced since)."""
    folder = Path(folder)
    record = read_json(folder / name, "manifest", what, remedy)
    files = record.get("files") if isinstance(record, dict) else None
    if not (isinstance(files, dict) and all(
            isinstance(f, str) and f and "/" not in f and "\\" not in f and f not in (".", "..")
            and isinstance(m, dict) and isinstance(m.get("bytes"), int) and isinstance(m.get("sha256"), str)
            for f, m in files.items())):
        raise SPQError(f"{what} {folder / name} names no files with their sizes and SHA-256{remedy}")
    for file, meta in files.items():
        found = file_digest(folder / file, "listed", f"{file}, which {folder / name} lists,", remedy)
        if found != {"bytes": meta["bytes"], "sha256": meta["sha256"]}:
            raise SPQError(f"{folder / file} is not the file {folder / name} lists (its size or SHA-256 "
                           f"differs): it was changed, or a run writing this folder was killed{remedy}")
    return record


def fetch(url: str, kind: str, what: str) -> bytes:
    """The bytes at `url` (a download), at most LIMITS[kind]; SPQError saying why it failed
    (no network, HTTP errors, too large)."""
    from urllib.request import urlopen
    try:
        with urlopen(url, timeout=60) as response:
            data = response.read(LIMITS[kind] + 1)
    except Exception as e:
        reason = " ".join(str(getattr(e, "reason", "") or e).split()) or type(e).__name__
        if isinstance(getattr(e, "code", None), int):       # an HTTP error: its status first
            reason = f"HTTP Error {e.code}: {reason}"
        raise SPQError(f"could not download {what} from {url} ({reason})") from None
    if len(data) > LIMITS[kind]:
        raise SPQError(f"{what} at {url} is larger than {_size(LIMITS[kind])}: not the file expected")
    return data


def image_file(path) -> io.BytesIO:
    """An image file's bytes as an in-memory file for Pillow (`open_file`, kind "image")."""
    return io.BytesIO(read_bytes(path, "image", "the image"))
