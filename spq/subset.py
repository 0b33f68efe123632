"""A per-class subset of a labelled ImageSet: --train_per_class and --query_per_class."""
from typing import Optional

import torch

from .imageset import ImageSet
from .errors import SPQError


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
    test = _take(data.test_images, data.test_labels, data.ids.get("test"), query_n, "query")
    ids = {**data.ids, "train": train[2], "test": test[2]}
    return ImageSet(*train[:2], *test[:2], data.gallery_images, data.gallery_labels, on_disk=data.on_disk,
                    ids={k: v for k, v in ids.items() if v is not None})
