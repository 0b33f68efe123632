"""The images a run uses (`ImageSet`: training images, queries, gallery), each set of a
dataset before decoding (`ImageSource`), decoded into an ImageSet by `decode_dataset`, and
per-class subsets of an ImageSet (--train_per_class, --query_per_class: `cap_per_class`)."""
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from ..errors import SPQError
from .images import decode_sets, decode_stream


@dataclass
class ImageSet:
    """Training images, query images and the gallery, uint8 (N, 3, H, W).

    Labels are int64 (N,) class indices or uint8 (N, C) multi-hot rows, used only for
    evaluation; None where a set has none. The gallery is the training set unless
    given. `on_disk`: the images are memory-mapped from a file (streamed), not in RAM.
    `ids`: what each image is, per set ("train", "query", "gallery"): its number in the
    pooled CIFAR-10 (0..49,999 the official training images, then the test images) or its
    path relative to the data folder; a model's training images and the queries it is
    evaluated on are compared by them.
    """
    train_images: torch.Tensor
    train_labels: Optional[torch.Tensor]
    query_images: Optional[torch.Tensor]
    query_labels: Optional[torch.Tensor]
    gallery_images: Optional[torch.Tensor] = None
    gallery_labels: Optional[torch.Tensor] = None
    on_disk: bool = False
    ids: Dict[str, list] = field(default_factory=dict)
    split_record: Dict[str, object] = field(default_factory=dict)   # protocol, seed, hash (spq.data.datasets)

    @classmethod
    def from_sets(cls, loaded, on_disk: bool, ids: Dict[str, list]) -> "ImageSet":
        """From {"train": (images, labels), and optionally "query" and "gallery"}."""
        none = (None, None)
        return cls(*loaded["train"], *loaded.get("query", none), *loaded.get("gallery", none),
                   on_disk=on_disk, ids=ids)

    def gallery(self):
        """(images, labels) of the retrieval database: the gallery, else the training set."""
        if self.gallery_images is not None:
            return self.gallery_images, self.gallery_labels
        return self.train_images, self.train_labels

    def summary(self, name: str) -> str:
        """One line saying what the set holds, e.g. for `name` "folder dataset"."""
        parts = [f"{len(self.train_images)} training"]
        if self.query_images is not None:
            parts.append(f"{len(self.query_images)} query")
        if self.gallery_images is not None:
            parts.append(f"{len(self.gallery_images)} gallery")
        where = "memory-mapped from disk (over the memory budget)" if self.on_disk else "in memory"
        line = f"{name}: {', '.join(parts)} images, {where}"
        if self.query_labels is not None and self.query_labels.ndim == 2:
            line += f"; {self.query_labels.shape[1]} labels per image (multi-hot)"
            unlabelled = self.unlabelled_queries()
            if unlabelled:
                line += (f"; {unlabelled} queries carry no label: their AP is 0, kept in the mean")
        return line

    def unlabelled_queries(self) -> int:
        """How many multi-hot query rows carry no label at all (AP 0, kept in the mean)."""
        if self.query_labels is None or self.query_labels.ndim != 2:
            return 0
        return int((self.query_labels.sum(1) == 0).sum())

    def why_not_evaluable(self) -> Optional[str]:
        """Why retrieval mAP cannot be measured on these images, or None when it can."""
        if self.query_images is None or not len(self.query_images):
            return "there are no query images (a test/ folder, or --query_list)"
        if self.query_labels is None or self.gallery()[1] is None:
            return "mAP needs labels (class folders) for the queries and the gallery"
        return None


@dataclass
class ImageSource:
    """One set of a dataset (its training images, queries or gallery) before decoding: N
    image files, or N images already decoded (CIFAR-10's batches), and their labels."""
    labels: Optional[torch.Tensor]          # (N,) int64 class indices, (N, C) uint8 multi-hot, or None
    classes: Optional[List[str]]            # the name of each class index / label column
    files: Optional[List[Path]] = None      # folder, list: the image files
    pixels: Optional[torch.Tensor] = None   # cifar10: uint8 (N, 3, H, W)
    where: Optional[List[str]] = None       # list: where each file is named ("FILE, line N");
                                            # an unreadable file is then an error, else skipped
    folder: Optional[Path] = None           # folder: the set's folder, named in errors
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
        """The set's images in order, uint8 (b, 3, size, size) per batch of the readable ones,
        each with the mask (n,) of the items of that batch that were read. Pixels come `batch`
        at a time, files as `spq.data.images` decodes them (its CHUNK)."""
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
    """One warning line counting the unreadable files skipped, per set ({set: files})."""
    if not skipped:
        return
    counts = ", ".join(f"{s}/: {len(b)}" for s, b in skipped.items())
    first = next(iter(skipped.values()))[0]
    n = sum(map(len, skipped.values()))
    print(f"warning: skipped {n} file{'s' * (n != 1)} that could not be read as images "
          f"({counts}; e.g. {first})", file=sys.stderr)


def decode_dataset(sources: Dict[str, ImageSource], size: int, workers: int = 0,
                   budget_bytes: int = 1 << 62, spill_dir=None, resize: str = "crop") -> ImageSet:
    """Every set decoded at `size` by the rule `resize` into an ImageSet (pixels are taken
    as they are).

    When the files of all sets together exceed `budget_bytes` as uint8, they are
    memory-mapped from temporary files in `spill_dir` instead of held in RAM
    (`ImageSet.on_disk`). Unreadable files of a folder are skipped with one warning line
    on stderr that counts them; in a list file they are an error naming its line.
    """
    files = {name: s.files for name, s in sources.items() if s.files is not None}
    decoded, on_disk = decode_sets(files, size, workers, budget_bytes, spill_dir, resize)
    loaded, skipped, ids = {}, {}, {}
    for name, source in sources.items():
        if source.files is None:
            loaded[name], ids[name] = (source.pixels, source.labels), source.ids
            continue
        images, ok = decoded[name]
        source.unreadable(ok)
        if not ok.all():
            skipped[name] = [f for f, good in zip(source.files, ok) if not good]
        labels = None if source.labels is None else source.labels[torch.from_numpy(ok)]
        loaded[name] = (images, labels)
        ids[name] = None if source.ids is None else [i for i, good in zip(source.ids, ok) if good]
    warn_skipped(skipped)
    return ImageSet.from_sets(loaded, on_disk, {k: v for k, v in ids.items() if v is not None})


# ---------------------------------------------------------------- per-class subsets

def first_per_class(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices (ascending) of the first `n` items of each class in `labels` (int64 (N,))."""
    keep = torch.zeros(labels.shape[0], dtype=torch.bool)
    for c in torch.unique(labels):
        keep[(labels == c).nonzero().flatten()[:n]] = True
    return keep.nonzero().flatten()


def _take(images: Optional[torch.Tensor], labels: Optional[torch.Tensor], ids: Optional[list],
          n: int, what: str):
    if not n or images is None:
        return images, labels, ids
    if labels is None:
        raise SPQError(f"--{what}_per_class needs class labels (CIFAR-10, or class folders under "
                       f"train/ and test/); drop it for unlabelled images")
    if labels.ndim != 1:
        raise SPQError(f"--{what}_per_class needs one class per image; multi-label lists have "
                       f"none: drop it, or shorten the list files instead")
    index = first_per_class(labels, n)
    return images[index], labels[index], None if ids is None else [ids[i] for i in index.tolist()]


def cap_per_class(data: ImageSet, train_n: int, query_n: int) -> ImageSet:
    """`data` with only the first `train_n` training images and `query_n` query images of
    each class, in their order (0: all). A separate gallery is kept whole; a gallery that
    is the training set shrinks with it."""
    if not train_n and not query_n:
        return data
    train = _take(data.train_images, data.train_labels, data.ids.get("train"), train_n, "train")
    query = _take(data.query_images, data.query_labels, data.ids.get("query"), query_n, "query")
    ids = {**data.ids, "train": train[2], "query": query[2]}
    return ImageSet(*train[:2], *query[:2], data.gallery_images, data.gallery_labels, on_disk=data.on_disk,
                    ids={k: v for k, v in ids.items() if v is not None})
