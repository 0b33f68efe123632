"""The images a run uses (`ImageSet`), and a dataset's splits before decoding (`Split`),
decoded into an ImageSet by `decode_dataset`."""
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from .errors import SPQError
from .images import decode_splits, decode_stream


@dataclass
class ImageSet:
    """Training images, query images (test) and the gallery, uint8 (N, 3, H, W).

    Labels are int64 (N,) class indices or uint8 (N, C) multi-hot rows, used only for
    evaluation; None where a set has none. The gallery is the training set unless
    given. `on_disk`: the images are memory-mapped from a file (streamed), not in RAM.
    `ids`: what each image is, per set ("train", "test", "gallery"): its number in the
    pooled CIFAR-10 (0..49,999 the official training images, then the test images) or its
    path relative to the data folder; a model's training images and the queries it is
    evaluated on are compared by them.
    """
    train_images: torch.Tensor
    train_labels: Optional[torch.Tensor]
    test_images: Optional[torch.Tensor]
    test_labels: Optional[torch.Tensor]
    gallery_images: Optional[torch.Tensor] = None
    gallery_labels: Optional[torch.Tensor] = None
    on_disk: bool = False
    ids: Dict[str, list] = field(default_factory=dict)
    split: Dict[str, object] = field(default_factory=dict)   # protocol, seed, hash (see spq.datasets)

    @classmethod
    def from_splits(cls, loaded, on_disk: bool, ids: Dict[str, list]) -> "ImageSet":
        """From {"train": (images, labels), and optionally "test" and "gallery"}."""
        none = (None, None)
        return cls(*loaded["train"], *loaded.get("test", none), *loaded.get("gallery", none),
                   on_disk=on_disk, ids=ids)

    def gallery(self):
        """(images, labels) of the retrieval database: the gallery, else the training set."""
        if self.gallery_images is not None:
            return self.gallery_images, self.gallery_labels
        return self.train_images, self.train_labels

    def summary(self, name: str) -> str:
        """One line saying what the set holds, e.g. for `name` "folder dataset"."""
        parts = [f"{len(self.train_images)} training"]
        if self.test_images is not None:
            parts.append(f"{len(self.test_images)} query")
        if self.gallery_images is not None:
            parts.append(f"{len(self.gallery_images)} gallery")
        where = "memory-mapped from disk (over the memory budget)" if self.on_disk else "in memory"
        line = f"{name}: {', '.join(parts)} images, {where}"
        if self.test_labels is not None and self.test_labels.ndim == 2:
            line += f"; {self.test_labels.shape[1]} labels per image (multi-hot)"
            unlabelled = self.unlabelled_queries()
            if unlabelled:
                line += (f"; {unlabelled} queries carry no label: their AP is 0, kept in the mean")
        return line

    def unlabelled_queries(self) -> int:
        """How many multi-hot query rows carry no label at all (AP 0, kept in the mean)."""
        if self.test_labels is None or self.test_labels.ndim != 2:
            return 0
        return int((self.test_labels.sum(1) == 0).sum())

    def why_not_evaluable(self) -> Optional[str]:
        """Why retrieval mAP cannot be measured on these images, or None when it can."""
        if self.test_images is None or not len(self.test_images):
            return "there are no query images (a test/ folder, or --query_list)"
        if self.test_labels is None or self.gallery()[1] is None:
            return "mAP needs labels (class folders) for the queries and the gallery"
        return None


@dataclass
class Split:
    """One split of a dataset before decoding: N image files, or N images already decoded
    (CIFAR-10's batches), and their labels."""
    labels: Optional[torch.Tensor]          # (N,) int64 class indices, (N, C) uint8 multi-hot, or None
    classes: Optional[List[str]]            # the name of each class index / label column
    files: Optional[List[Path]] = None      # folder, list: the image files
    pixels: Optional[torch.Tensor] = None   # cifar10: uint8 (N, 3, H, W)
    where: Optional[List[str]] = None       # list: where each file is named ("FILE, line N");
                                            # an unreadable file is then an error, else skipped
    folder: Optional[Path] = None           # folder: the split's folder, named in errors
    ids: Optional[list] = None              # what each item is (see ImageSet.ids)

    def __len__(self) -> int:
        return len(self.files) if self.files is not None else len(self.pixels)

    def unreadable(self, ok: np.ndarray, start: int = 0) -> None:
        """SPQError when a listed file could not be read, or no file at all (`ok`: the mask of
        the files read among files[start:start + len(ok)])."""
        if self.where is not None and not ok.all():
            i = start + int(np.flatnonzero(~ok)[0])
            count = f" ({int((~ok).sum())} unreadable in this list)" if len(ok) == len(self) else ""
            raise SPQError(f"{self.where[i]}: {self.files[i]} cannot be read as an image{count}")
        if len(ok) == len(self) and len(ok) and not ok.any():
            raise SPQError(f"{self.folder}: none of its {len(ok)} image files could be read")

    def batches(self, size: int, workers: int, batch: int = 256,
                resize: str = "crop") -> Iterator[Tuple[torch.Tensor, np.ndarray]]:
        """The split's images in order, uint8 (b, 3, size, size) per batch of the readable ones,
        each with the mask (n,) of the items of that batch that were read. Pixels come `batch`
        at a time, files as `spq.images` decodes them (its CHUNK)."""
        if self.pixels is not None:
            yield from ((b, np.ones(len(b), bool)) for b in self.pixels.split(batch))
            return
        start = 0
        for chunk in decode_stream(self.files, size, workers, resize):
            ok = np.array([image is not None for image in chunk])
            self.unreadable(ok, start)
            start += len(chunk)
            good = [image for image in chunk if image is not None]
            yield (torch.from_numpy(np.stack(good)) if good else
                   torch.zeros(0, 3, size, size, dtype=torch.uint8)), ok


def relative_ids(files: List[Path], root) -> List[str]:
    """Each file's path relative to `root`, normalised, with forward slashes: its id."""
    return [Path(os.path.relpath(os.path.normpath(f), os.path.normpath(root))).as_posix() for f in files]


def warn_skipped(skipped: Dict[str, List[Path]]) -> None:
    """One warning line counting the unreadable files skipped, per split ({split: files})."""
    if not skipped:
        return
    counts = ", ".join(f"{s}/: {len(b)}" for s, b in skipped.items())
    first = next(iter(skipped.values()))[0]
    n = sum(map(len, skipped.values()))
    print(f"warning: skipped {n} file{'s' * (n != 1)} that could not be read as images "
          f"({counts}; e.g. {first})", file=sys.stderr)


def decode_dataset(splits: Dict[str, Split], size: int, workers: int = 0,
                   budget_bytes: int = 1 << 62, spill_dir=None, resize: str = "crop") -> ImageSet:
    """Every split decoded at `size` by the rule `resize` into an ImageSet (pixels are taken
    as they are).

    When the files of all splits together exceed `budget_bytes` as uint8, they are
    memory-mapped from temporary files in `spill_dir` instead of held in RAM
    (`ImageSet.on_disk`). Unreadable files of a folder are skipped with one warning line
    on stderr that counts them; in a list file they are an error naming its line.
    """
    files = {name: s.files for name, s in splits.items() if s.files is not None}
    decoded, on_disk = decode_splits(files, size, workers, budget_bytes, spill_dir, resize)
    loaded, skipped, ids = {}, {}, {}
    for name, split in splits.items():
        if split.files is None:
            loaded[name], ids[name] = (split.pixels, split.labels), split.ids
            continue
        images, ok = decoded[name]
        split.unreadable(ok)
        if not ok.all():
            skipped[name] = [f for f, good in zip(split.files, ok) if not good]
        labels = None if split.labels is None else split.labels[torch.from_numpy(ok)]
        loaded[name] = (images, labels)
        ids[name] = None if split.ids is None else [i for i, good in zip(split.ids, ok) if good]
    warn_skipped(skipped)
    return ImageSet.from_splits(loaded, on_disk, {k: v for k, v in ids.items() if v is not None})
