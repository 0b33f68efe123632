"""A folder of the user's own images (`--dataset folder`), in the ImageFolder layout.

    DATA_DIR/train/<class>/.../*.jpg    training images (required)
    DATA_DIR/test/<class>/...           queries for evaluation (optional)
    DATA_DIR/gallery/<class>/...        the retrieval database (optional; default: train/)

Images are found recursively by extension (`spq.data.images.IMAGE_EXTENSIONS`, any case)
and decoded once (`spq.data.images`). The first folder level under each split names the
class; classes are numbered in sorted order over all splits. A split with any image
directly in its root has no labels: it still trains, but mAP then cannot be measured.
"""
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from ..errors import SPQError
from .imageset import ImageSet, ImageSource, decode_dataset, relative_ids
from .images import IMAGE_EXTENSIONS, find_images

FOLDERS = {"train": "train", "query": "test", "gallery": "gallery"}    # set: its folder


def _labels(root: Path, paths: List[Path]) -> Optional[List[str]]:
    """The class name (first folder level) of each path, or None if any lies in the root."""
    names = [p.relative_to(root).parts for p in paths]
    return None if any(len(n) < 2 for n in names) else [n[0] for n in names]


def scan(data_dir) -> Dict[str, Tuple[List[Path], Optional[List[str]]]]:
    """{set: (image paths, class names or None)} for the sets whose folder is present
    (FOLDERS); SPQError when train/ is missing or a present folder holds no image file."""
    root = Path(data_dir)
    if not (root / "train").is_dir():
        raise SPQError(f"--dataset folder: {root / 'train'} does not exist; put the training "
                       f"images in <data_dir>/train/ (one folder per class for evaluation)")
    found = {}
    for name, folder_name in FOLDERS.items():
        folder = root / folder_name
        if not folder.is_dir():
            continue
        paths = find_images(folder)
        if not paths:
            raise SPQError(f"{folder} holds no image files (looked recursively for "
                           f"{', '.join(IMAGE_EXTENSIONS)}, any case); add images or remove it")
        found[name] = (paths, _labels(folder, paths))
    return found


def open_folder(data_dir) -> Dict[str, ImageSource]:
    """The sets of a folder dataset (see the module docstring), before decoding; classes
    are numbered in sorted order over all sets."""
    found = scan(data_dir)
    classes = sorted({c for _, names in found.values() if names for c in names})
    number = {c: i for i, c in enumerate(classes)}
    sources = {}
    for name, (paths, names) in found.items():
        labels = None if names is None else torch.tensor([number[n] for n in names], dtype=torch.int64)
        sources[name] = ImageSource(labels, None if names is None else classes, files=paths,
                                    folder=Path(data_dir) / FOLDERS[name], ids=relative_ids(paths, data_dir))
    return sources


def load_folder(data_dir, input_size: int, workers: int = 0, budget_bytes: int = 1 << 62,
                spill_dir=None) -> ImageSet:
    """Decode every set of a folder dataset into an ImageSet (`decode_dataset`: over
    `budget_bytes`, memory-mapped from `spill_dir`; unreadable files are skipped with one
    warning line on stderr that counts them)."""
    return decode_dataset(open_folder(data_dir), input_size, workers, budget_bytes, spill_dir)
