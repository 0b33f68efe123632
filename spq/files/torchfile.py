"""Torch files: written atomically (`atomic_save`), read back as tagged dictionaries of
tensors and plain values with weights_only=True (`read_tagged`), and guarded by a CRC-32 of
their tensors (`with_checksum`, `verify_checksum`)."""
import sys
import warnings
import zlib
from pathlib import Path
from typing import Dict

import torch

from ..errors import SPQError
from .write import atomic_write


def atomic_save(obj, path, remedy: str = "") -> None:
    """torch.save `obj` to `path` atomically. The bytes are made in memory first, so a full
    disk is an OSError of the write, not an error inside torch.save."""
    atomic_write(path, lambda f: torch.save(obj, f), remedy)


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
