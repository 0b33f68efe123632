"""CIFAR-10 from the official python batches (`--dataset cifar10`), read without unpickling
anything but arrays (`safe_unpickle`), and its download.

A pickle names the functions that rebuild its objects, and `pickle.load` calls them: a
crafted file can name `os.system`. `safe_unpickle` admits only numpy arrays and dtypes (and
numpy scalars) besides the containers and values pickle builds itself (dicts, lists,
tuples, bytes, strings, numbers, None, booleans); anything else is refused with an
SPQError naming the file, before it is called.
"""
import hashlib
import io
import pickle
import shutil
import tarfile
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from ..errors import SPQError
from ..files.read import LIMITS, fetch, open_file
from ..files.write import atomic_write_bytes, ensure_folder
from .imageset import ImageSet, ImageSource

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILE = "test_batch"
ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# (module, name) of every callable the official batches (Python 2 and 3 pickles, NumPy 1
# and 2) name: array and dtype reconstruction, and bytes written by Python 3 at protocol 2.
ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class Refused(pickle.UnpicklingError):
    """The pickle names a callable outside ALLOWED."""


class _Restricted(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in ALLOWED:
            raise Refused(f"{module}.{name}")
        return super().find_class(module, name)


def safe_unpickle(path, encoding: str = "latin1"):
    """Unpickle `path` admitting only ALLOWED callables; SPQError naming the file when it
    names anything else. Other failures (a truncated file) propagate as they are."""
    with open_file(path, "cifar batch", "the CIFAR-10 batch") as f:
        try:
            return _Restricted(f, encoding=encoding).load()
        except Refused as e:
            raise SPQError(f"{Path(path)} is refused: it is a pickle that calls {e}, which a "
                           f"data file never needs (a CIFAR-10 batch holds only arrays, lists and "
                           f"strings); replace it with the official file") from None


def _read_batch(path: Path):
    """One batch file -> (uint8 (n, 3, 32, 32), int64 (n,))."""
    try:
        entry = safe_unpickle(path)
        data = entry.get("data", entry.get(b"data"))
        labels = entry.get("labels", entry.get(b"labels"))
        data = torch.as_tensor(data)
        labels = torch.as_tensor(labels, dtype=torch.int64)
    except SPQError:
        raise
    except Exception as e:  # any unreadable or foreign file is the same problem to the user
        raise SPQError(f"{path} is not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    if data.dtype != torch.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise SPQError(f"{path}: 'data' must be uint8 of shape (n, 3072), got "
                       f"{tuple(data.shape)} {data.dtype}")
    if labels.shape != (data.shape[0],):
        raise SPQError(f"{path}: {data.shape[0]} images but {labels.numel()} labels")
    return data.view(-1, 3, 32, 32), labels


def download_cifar10(data_dir: str) -> None:
    """Fetch the official archive (ARCHIVE_URL, at most the "archive" limit of the way in),
    check its md5 (ARCHIVE_MD5) before anything is written, then write it into `data_dir`
    and unpack the batches from it, each regular member by its expected name, through the
    way out (no member's own path, link or mode is followed). On failure nothing of it stays
    behind: the unpacked folder, and `data_dir` where this call created them (`data_dir`
    only if left empty), are removed."""
    root = Path(data_dir)
    made_root, made_folder = not root.exists(), not (root / FOLDER).exists()
    try:
        archive = fetch(ARCHIVE_URL, "archive", "CIFAR-10")
        if hashlib.md5(archive).hexdigest() != ARCHIVE_MD5:
            raise SPQError(f"could not download CIFAR-10 from {ARCHIVE_URL} into {data_dir}: the archive did "
                           f"not match md5 {ARCHIVE_MD5} and was not kept; try again, or fetch the archive "
                           f"by hand and unpack it there")
        ensure_folder(root / FOLDER)
        atomic_write_bytes(root / ARCHIVE_URL.rsplit("/", 1)[-1], archive)
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for name in TRAIN_FILES + [TEST_FILE]:
                member = tar.getmember(f"{FOLDER}/{name}")
                if not member.isreg() or member.size > LIMITS["cifar batch"]:
                    raise SPQError(f"the archive at {ARCHIVE_URL} holds {FOLDER}/{name} as no regular "
                                   f"file of a batch's size")
                atomic_write_bytes(root / FOLDER / name, tar.extractfile(member).read())
    except BaseException as e:
        if made_folder and (root / FOLDER).exists():
            shutil.rmtree(root / FOLDER, ignore_errors=True)
        if made_root and root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        if isinstance(e, SPQError) or not isinstance(e, Exception):
            raise
        raise SPQError(f"could not unpack CIFAR-10 from {ARCHIVE_URL} into {data_dir} "
                       f"({type(e).__name__}: {e}); try again, or fetch the archive by hand "
                       f"and unpack it there") from None


def load_cifar10(data_dir: str, num_classes: int = 10, download: bool = False) -> ImageSet:
    """Load `<data_dir>/cifar-10-batches-py`; with `download`, fetch it first if missing.

    Any correctly formatted batches folder loads (checksums are verified only at
    download). Raises SPQError naming the path when files are missing or malformed
    or a label is outside 0..num_classes-1.
    """
    folder = Path(data_dir) / FOLDER
    names = TRAIN_FILES + [TEST_FILE]
    if download and not all((folder / n).is_file() for n in names):
        download_cifar10(data_dir)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise SPQError(f"CIFAR-10 not found: {folder} lacks {', '.join(missing)}. "
                       f"Pass --if_download to fetch it, or --data_dir pointing at the folder "
                       f"that contains {FOLDER}/")
    train = [_read_batch(folder / n) for n in TRAIN_FILES]
    query_images, query_labels = _read_batch(folder / TEST_FILE)
    train_images = torch.cat([d for d, _ in train])
    train_labels = torch.cat([l for _, l in train])
    for name, labels in [("training", train_labels), ("test", query_labels)]:
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise SPQError(f"{folder}: {name} labels span {labels.min()}..{labels.max()}, "
                           f"outside 0..{num_classes - 1} (--num_cls {num_classes})")
    return ImageSet(train_images, train_labels, query_images, query_labels)


def cifar10_sources(data_dir: str, num_classes: int = 10, download: bool = False,
                   split: Optional[Dict] = None) -> Dict[str, ImageSource]:
    """CIFAR-10's training and test sets as the training images and queries (`load_cifar10`), their items numbered
    0..49,999 and 50,000..59,999; with `split` (a split.json of spq.split), its training,
    query and database sets drawn from the pooled 60,000 instead."""
    data = load_cifar10(data_dir, num_classes, download)
    classes = list(CLASSES) + [str(c) for c in range(len(CLASSES), num_classes)]
    train_n = len(data.train_images)
    if split is None:
        return {"train": ImageSource(data.train_labels, classes, pixels=data.train_images, ids=list(range(train_n))),
                "query": ImageSource(data.query_labels, classes, pixels=data.query_images,
                                     ids=list(range(train_n, train_n + len(data.query_images))))}
    images = torch.cat([data.train_images, data.query_images])                 # (60000, 3, 32, 32)
    labels = torch.cat([data.train_labels, data.query_labels])
    if len(images) != 60000:
        raise SPQError(f"{Path(data_dir) / FOLDER} holds {len(images)} images: a split of the pooled "
                       f"CIFAR-10 needs all 60,000")
    if hashlib.sha256(labels.numpy().astype(np.int64).tobytes()).hexdigest() != split["source_sha256"]:
        raise SPQError(f"{Path(data_dir) / FOLDER} is not the CIFAR-10 the split was drawn from (its labels "
                       f"differ); draw the split from this copy")

    def take(ids):
        index = torch.tensor(ids, dtype=torch.int64)
        return ImageSource(labels[index], classes, pixels=images[index], ids=list(ids))
    splits = {"train": take(split["train"]), "query": take(split["query"])}
    if split["database"] != split["train"]:
        splits["gallery"] = take(split["database"])
    return splits
