"""A folder of the user's own images (`--dataset folder`), in the ImageFolder layout.

    DATA_DIR/train/<class>/.../*.jpg    training images (required)
    DATA_DIR/test/<class>/...           queries for evaluation (optional)
    DATA_DIR/gallery/<class>/...        the retrieval database (optional; default: train/)

Images are found recursively by extension (`spq.images.IMAGE_EXTENSIONS`, any case)
and decoded once (`spq.images`). The first folder level under each split names the
class; classes are numbered in sorted order over all splits. A split with any image
directly in its root has no labels: it still trains, but mAP then cannot be measured.
"""
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from .imageset import ImageSet, Split, decode_dataset, relative_ids
from .errors import SPQError
from .images import IMAGE_EXTENSIONS, find_images

SPLITS = ("train", "test", "gallery")


def _labels(root: Path, paths: List[Path]) -> Optional[List[str]]:
    """The class name (first folder level) of each path, or None if any lies in the root."""
    names = [p.relative_to(root).parts for p in paths]
    return None if any(len(n) < 2 for n in names) else [n[0] for n in names]


def scan(data_dir) -> Dict[str, Tuple[List[Path], Optional[List[str]]]]:
    """{split: (image paths, class names or None)} for the splits present; SPQError when
    train/ is missing or a present split holds no image file."""
    root = Path(data_dir)
    if not (root / "train").is_dir():
        raise SPQError(f"--dataset folder: {root / 'train'} does not exist; put the training "
                       f"images in <data_dir>/train/ (one folder per class for evaluation)")
    found = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            continue
        paths = find_images(folder)
        if not paths:
            raise SPQError(f"{folder} holds no image files (looked recursively for "
                           f"{', '.join(IMAGE_EXTENSIONS)}, any case); add images or remove it")
        found[split] = (paths, _labels(folder, paths))
    return found


def open_folder(data_dir) -> Dict[str, Split]:
    """The splits of a folder dataset (see the module docstring), before decoding; classes
    are numbered in sorted order over all splits."""
    found = scan(data_dir)
    classes = sorted({c for _, names in found.values() if names for c in names})
    number = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split, (paths, names) in found.items():
        labels = None if names is None else torch.tensor([number[n] for n in names], dtype=torch.int64)
        splits[split] = Split(labels, None if names is None else classes, files=paths,
                              folder=Path(data_dir) / split, ids=relative_ids(paths, data_dir))
    return splits


def load_folder(data_dir, input_size: int, workers: int = 0, budget_bytes: int = 1 << 62,
                spill_dir=None) -> ImageSet:
    """Decode every split of a folder dataset into an ImageSet (`spq.data.decode_dataset`:
    over `budget_bytes`, memory-mapped from `spill_dir`; unreadable files are skipped with
    one warning line on stderr that counts them)."""
    return decode_dataset(open_folder(data_dir), input_size, workers, budget_bytes, spill_dir)
