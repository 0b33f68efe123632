"""Multi-label image lists (`--dataset list`), the format of deep-hashing toolkits.

Each non-empty line of a list file names one image and its labels:

    relative/path/to/image.jpg 0 1 0 0 1 ... 0

the path relative to `--data_dir` (it may contain spaces: the path is the shortest
prefix of the line that names an existing file), then C values 0 or 1, one per class
(C = `--num_cls`). A path that leaves `--data_dir` (absolute, or climbing out with ..)
is refused unless `--allow_outside_data_dir`; a leading UTF-8 byte-order mark is
ignored. An image is relevant to a query when they share at least one label. Images
are decoded once
(`spq.data.images`); every line must name a readable image, and a malformed line, a
missing or unreadable file is an error naming the list file and the line.
"""
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ..errors import SPQError
from ..files.lock import LOCK
from ..files.read import read_lines, verified
from .imageset import ImageSet, ImageSource, decode_dataset, relative_ids


@dataclass
class ImageList:
    """The entries of one list file: image paths, multi-hot labels (N, C) uint8, line numbers."""
    source: Path
    paths: List[Path]
    labels: torch.Tensor
    lines: List[int]


def _split(line: str, root: Path):
    """(path, label fields) of a stripped line: the path is the shortest prefix ending
    before a run of spaces that names an existing file (paths may hold spaces), or
    (None, []) when no prefix does."""
    for gap in re.finditer(r"\s+", line):
        path = root / line[:gap.start()]
        if path.is_file():
            return path, line[gap.end():].split()
    path = root / line
    return (path, []) if path.is_file() else (None, [])


def outside(path: Path, root: Path) -> bool:
    """Whether `path` lies outside `root`, judged on the names (an absolute path, or one that
    climbs out with ..); symbolic links inside `root` are the user's own and are followed."""
    rel = os.path.relpath(os.path.normpath(path), os.path.normpath(root))
    return rel == ".." or rel.startswith(".." + os.sep)


# The manifests of the commands that write list files, each beside the lists it names.
MANIFESTS = {"prepare.json": "python -m spq.prepare", "split.json": "python -m spq.split"}


def check_written(list_file: Path) -> None:
    """SPQError when `list_file` lies in a folder that python -m spq.prepare or spq.split
    wrote and that does not match its manifest (a file changed since), or in a folder a
    writer still holds or was killed in (its lock file is there); a list of one's own,
    alone in its folder, is not checked."""
    folder = list_file.parent
    for name, command in MANIFESTS.items():
        if not (folder / name).exists():
            continue
        record = verified(folder, name, f"the manifest of {command}",
                          remedy=f"; run {command} into {folder} again (with --force)")
        if name == "split.json" or list_file.name in record["files"]:
            return
    if (folder / LOCK).exists():
        raise SPQError(f"{folder} is being written, or the run writing it was killed ({LOCK} is there): "
                       f"{list_file.name} may be incomplete; wait for that run, or run it again")


def read_list(list_file, data_dir, num_classes: int, allow_outside: bool = False) -> ImageList:
    """Parse a list file (see the module docstring); SPQError naming file and line.
    A path outside `data_dir` is refused unless `allow_outside`; a list that python -m
    spq.prepare or spq.split wrote must be in the folder it was written to, as written
    (`check_written`)."""
    source = Path(list_file)
    check_written(source)
    paths, rows, lines = [], [], []
    for number, line in enumerate(read_lines(source, "list", "the list file"), start=1):
        line = line.strip()
        if not line:
            continue
        where = f"{source}, line {number}"
        path, labels = _split(line, Path(data_dir))
        if path is None:
            guess = Path(data_dir) / line.rsplit(None, num_classes)[0]
            raise SPQError(f"{where}: {guess} does not exist (paths are relative to --data_dir "
                           f"{data_dir})")
        if not allow_outside and outside(path, Path(data_dir)):
            raise SPQError(f"{where}: {path} lies outside --data_dir {data_dir} (list paths are "
                           f"relative to it); move the images there, or pass "
                           f"--allow_outside_data_dir to accept such paths")
        if len(labels) != num_classes or any(v not in ("0", "1") for v in labels):
            raise SPQError(f"{where}: expected an image path then {num_classes} label values 0 or "
                           f"1 (--num_cls {num_classes}), got {len(labels)} value(s) after "
                           f"{path.name!r}: {' '.join(labels)!r}" +
                           ("" if len(labels) == num_classes else
                            "; if every line has that many, set --num_cls to it"))
        paths.append(path)
        rows.append([int(v) for v in labels])
        lines.append(number)
    if not paths:
        raise SPQError(f"{source} lists no images")
    return ImageList(source, paths, torch.tensor(rows, dtype=torch.uint8), lines)


def open_lists(data_dir, train_list, query_list: Optional[str], gallery_list: Optional[str],
               num_classes: int, allow_outside: bool = False) -> Dict[str, ImageSource]:
    """The sets named by the training, query and gallery lists (the gallery is the
    training list when None), before decoding. `allow_outside`: see `read_list`."""
    named = {"train": train_list, "query": query_list, "gallery": gallery_list}
    sources = {}
    for name, list_file in named.items():
        if list_file:
            entries = read_list(list_file, data_dir, num_classes, allow_outside)
            sources[name] = ImageSource(entries.labels, [str(c) for c in range(num_classes)],
                                        files=entries.paths, ids=relative_ids(entries.paths, data_dir),
                                        where=[f"{entries.source}, line {n}" for n in entries.lines])
    return sources


def load_lists(data_dir, train_list, query_list: Optional[str], gallery_list: Optional[str],
               num_classes: int, input_size: int, workers: int = 0, budget_bytes: int = 1 << 62,
               spill_dir=None, allow_outside: bool = False) -> ImageSet:
    """Decode the images of the lists (`open_lists`) into an ImageSet with multi-hot labels
    (`decode_dataset`: over `budget_bytes` of decoded pixels, memory-mapped from
    `spill_dir`); a file that cannot be read is an error naming its list and line."""
    return decode_dataset(open_lists(data_dir, train_list, query_list, gallery_list, num_classes,
                                     allow_outside), input_size, workers, budget_bytes, spill_dir)
