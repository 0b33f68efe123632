"""Torch files: written atomically (`atomic_save`), read back through the way in as tagged
dictionaries of tensors and plain values with weights_only=True (`read_tagged`), and guarded
by a SHA-256 of all their contents, strings included (`with_checksum`, `verify_checksum`)."""
import hashlib
import sys
import zlib
from pathlib import Path
from typing import Dict

import torch

from ..errors import SPQError
from .read import load_torch
from .write import atomic_write


def atomic_save(obj, path, remedy: str = "") -> None:
    """torch.save `obj` to `path` atomically. The bytes are made in memory first, so a full
    disk is an OSError of the write, not an error inside torch.save."""
    atomic_write(path, lambda f: torch.save(obj, f), remedy)


def read_tagged(path, fmt: str, version: int, what: str, kind: str, remedy: str = "") -> Dict:
    """Load a dict of tensors and plain values saved with {"format": fmt, "version": version},
    through the way in (`spq.files.read.load_torch`: a regular file of at most the size of
    its `kind`, its archive checked before torch.load); SPQError naming `what` (and
    `remedy`, appended) when the file is missing, unreadable, foreign or of another version."""
    path = Path(path)
    d = load_torch(path, kind, what, remedy)
    if not isinstance(d, dict) or not isinstance(d.get("format"), str) or d["format"] != fmt:
        raise SPQError(f"{path} is not an SPQ {what} of this program{remedy}")
    stored = d.get("version")
    if type(stored) is not int or stored != version:
        shown = stored if type(stored) is int else type(stored).__name__
        raise SPQError(f"{path} has {what} version {shown}, this program reads version {version}{remedy}")
    return d


def content_checksum(obj) -> str:
    """SHA-256 of everything in `obj` but its "checksum": each tensor's dtype, shape and bytes,
    and every plain value (strings, numbers, booleans, None) with its type, dicts in key
    order, lists and tuples in order. What a checksum written with a file guards: an edit of
    a string (a hardware name, a commit) shows as much as one of a weight."""
    digest = hashlib.sha256()
    _feed(obj, digest)
    return digest.hexdigest()


def _feed(obj, digest) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        keys = sorted((k for k in obj if k != "checksum"), key=lambda k: (type(k).__name__, str(k)))
        digest.update(f"D{len(keys)}".encode())
        for key in keys:
            digest.update(f"K{type(key).__name__}:{key!r}".encode())
            _feed(obj[key], digest)
    elif isinstance(obj, (list, tuple)):
        digest.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}".encode())
        for item in obj:
            _feed(item, digest)
    else:
        digest.update(f"V{type(obj).__name__}:{obj!r};".encode())


def tensor_checksum(obj) -> int:
    """CRC-32 of the bytes of every tensor in `obj` (dicts in key order, lists in order): what
    the checksum of files written before `content_checksum` guarded."""
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
    """`d` with "checksum": the SHA-256 of all its contents (`content_checksum`)."""
    return {**d, "checksum": {"sha256": content_checksum(d)}}


def verify_checksum(d: Dict, path, what: str) -> None:
    """SPQError when `d` does not match the checksum written with it. A file written before
    checksums covered its strings (a CRC-32 of its tensors) is checked by that, and one
    written before checksums existed loads unchecked; each with a one-line note on stderr."""
    stored = d.get("checksum")
    if stored is None:
        print(f"note: {path} has no checksum (written before they were recorded); its contents "
              f"are not verified", file=sys.stderr)
        return
    if isinstance(stored, dict) and set(stored) == {"sha256"}:
        ok = stored["sha256"] == content_checksum(d)
    elif isinstance(stored, dict) and set(stored) == {"crc32"} and isinstance(stored["crc32"], int):
        ok = stored["crc32"] == tensor_checksum(d)
        if ok:
            print(f"note: {path} was written before checksums covered its strings: only its tensors "
                  f"are verified", file=sys.stderr)
    else:
        ok = False
    if not ok:
        raise SPQError(f"{path} is damaged or was edited: its contents do not match the checksum "
                       f"written with them; use another copy of this {what}")
