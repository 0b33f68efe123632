"""A folder of the user's own images (`--dataset folder`), in the ImageFolder layout.

    DATA_DIR/train/<class>/.../*.jpg    training images (required)
    DATA_DIR/test/<class>/...           queries for evaluation (optional)
    DATA_DIR/gallery/<class>/...        the retrieval database (optional; default: train/)

Images are found recursively by extension (`spq.images.IMAGE_EXTENSIONS`, any case)
and decoded once (`spq.images`). The first folder level under each split names the
class; classes are numbered in sorted order over all splits. A split with any image
directly in its root has no labels: it still trains, but mAP then cannot be measured.
"""
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from .data import ImageSet
from .errors import SPQError
from .images import IMAGE_EXTENSIONS, decode_splits, find_images

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


def load_folder(data_dir, input_size: int, workers: int = 0, budget_bytes: int = 1 << 62,
                spill_dir=None) -> ImageSet:
    """Decode every split of a folder dataset (see the module docstring) into an ImageSet.

    When all splits together exceed `budget_bytes` as uint8, they are memory-mapped from
    temporary files in `spill_dir` instead of held in RAM (`ImageSet.on_disk`).
    Unreadable files are skipped with one warning line on stderr that counts them.
    """
    found = scan(data_dir)
    decoded, on_disk = decode_splits({split: paths for split, (paths, _) in found.items()},
                                     input_size, workers, budget_bytes, spill_dir)
    classes = sorted({c for _, names in found.values() if names for c in names})
    index = {c: i for i, c in enumerate(classes)}
    loaded, skipped = {}, {}
    for split, (paths, names) in found.items():
        images, ok = decoded[split]
        bad = [p for p, good in zip(paths, ok) if not good]
        if bad:
            skipped[split] = bad
        if not ok.any():
            raise SPQError(f"{Path(data_dir) / split}: none of its {len(paths)} image files "
                           f"could be read")
        labels = None
        if names is not None:
            labels = torch.tensor([index[n] for n, good in zip(names, ok) if good], dtype=torch.int64)
        loaded[split] = (images, labels)
    if skipped:
        counts = ", ".join(f"{s}/: {len(b)}" for s, b in skipped.items())
        first = next(iter(skipped.values()))[0]
        n = sum(map(len, skipped.values()))
        print(f"warning: skipped {n} file{'s' * (n != 1)} that could not be read as images "
              f"({counts}; e.g. {first})", file=sys.stderr)
    return ImageSet.from_splits(loaded, on_disk)
