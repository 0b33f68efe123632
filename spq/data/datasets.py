"""The dataset kinds of --dataset, opened in one place for training and for the commands
that encode a dataset (python -m spq.index build, python -m spq.export).

    cifar10   the official python batches in DATA_DIR/cifar-10-batches-py (spq.data.cifar10)
    folder    DATA_DIR/train/ [test/ gallery/] in the ImageFolder layout (spq.data.folder)
    list      multi-label list files, paths relative to DATA_DIR (spq.data.lists)

`open_dataset` lists a dataset's sets ("train", and "query", "gallery" when present)
before any image file is decoded; training decodes them all (`load_data`), python -m
spq.index build streams one (`spq.data.imageset.ImageSource.batches`).
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

from ..errors import SPQError
from .cifar10 import FOLDER, cifar10_sources
from .folder import open_folder
from .imageset import ImageSet, ImageSource, cap_per_class, decode_dataset
from .lists import open_lists
from .splits import read_split, split_hash

KINDS = ("cifar10", "folder", "list")


@dataclass(frozen=True)
class DataOptions:
    """Which images, and how they are decoded: main_SPQ.py's data options."""
    dataset: str                     # one of KINDS
    data_dir: str
    train_list: Optional[str]        # --dataset list
    query_list: Optional[str]
    gallery_list: Optional[str]
    split_file: Optional[str]        # a split.json of python -m spq.split
    allow_outside_data_dir: bool
    if_download: bool                # CIFAR-10
    num_cls: int
    input_size: int                  # the side of the images the network sees
    resize: str                      # how files are brought to it (spq.data.images.RESIZE)
    train_per_class: int             # 0: all
    query_per_class: int
    images_in_memory_gb: float       # beyond it, decoded files are memory-mapped from disk


def open_dataset(data: DataOptions) -> Dict[str, ImageSource]:
    """The sets of the dataset the options name, before decoding."""
    split = read_dataset_split(data)
    if data.dataset == "cifar10":
        root = Path(data.data_dir)
        if (root / "train").is_dir() and not (root / FOLDER).is_dir() and not data.if_download:
            raise SPQError(f"--data_dir {root} holds train/ but no {FOLDER}/: for a folder of your "
                           f"own images pass --dataset folder (--dataset cifar10 is the default)")
        return cifar10_sources(data.data_dir, data.num_cls, data.if_download, split)
    if data.dataset == "folder":
        return open_folder(data.data_dir)
    if split is not None:      # the split's list files, beside its split.json
        folder = Path(data.split_file).parent
        sources = open_lists(data.data_dir, folder / "train.txt", folder / "query.txt", folder / "database.txt",
                             data.num_cls, data.allow_outside_data_dir)
        for name, key in (("train", "train"), ("query", "query"), ("gallery", "database")):
            if sources[name].ids != split[key]:
                raise SPQError(f"{folder / (key + '.txt')} does not list the {key} images of {data.split_file} "
                               f"(it was changed after python -m spq.split wrote them); draw the split again")
        return sources
    return open_lists(data.data_dir, data.train_list, data.query_list, data.gallery_list,
                      data.num_cls, data.allow_outside_data_dir)


def read_dataset_split(data: DataOptions) -> Optional[Dict]:
    """--split_file's split.json, checked against --dataset and --num_cls; None without it."""
    if not data.split_file:
        return None
    split = read_split(data.split_file)
    if split["dataset"] != data.dataset:
        raise SPQError(f"--split_file {data.split_file} was drawn from {split['dataset']}, not --dataset {data.dataset}")
    classes = len(split["per_class"]["query"])
    if data.dataset == "list" and classes != data.num_cls:
        raise SPQError(f"--split_file {data.split_file} has {classes} label columns: pass --num_cls {classes}")
    return split


def split_record(data: DataOptions, images: ImageSet) -> Dict[str, object]:
    """Which split a run uses: its protocol, seed and a hash of its sets. A --split_file's own,
    when its sets are used whole; else a hash of the items the run holds (the official
    CIFAR-10 split, folders, list files, per-class subsets)."""
    split = read_dataset_split(data)
    whole = not (data.train_per_class or data.query_per_class)
    if split is not None and whole:
        return {"protocol": split["protocol"], "seed": split["seed"], "hash": split["hash"]}
    protocol = {"cifar10": "cifar10-official", "folder": "folder", "list": "lists"}[data.dataset]
    if split is not None:
        protocol = split["protocol"]
    ids = {"query": images.ids.get("query", []), "train": images.ids.get("train", []),
           "database": images.ids.get("gallery", images.ids.get("train", []))}
    subset = "" if whole else " subset"
    return {"protocol": protocol + subset, "seed": None if split is None else split["seed"],
            "hash": split_hash(ids, "")}


def gallery_set(sources: Dict[str, ImageSource]) -> str:
    """The name of the retrieval database among `sources`: "gallery" if present, else "train"."""
    return "gallery" if "gallery" in sources else "train"


def load_data(data: DataOptions, workers: int, spill_dir, say: Callable = print) -> ImageSet:
    """The images of the dataset decoded once at --input_size by `workers` processes (folder
    and list images up to --images_in_memory_gb in memory, beyond it memory-mapped in
    `spill_dir`); with --train_per_class / --query_per_class, their first images of each
    class."""
    budget = int(data.images_in_memory_gb * 2 ** 30)
    images = decode_dataset(open_dataset(data), data.input_size, workers, budget, spill_dir, data.resize)
    train_n, query_n = data.train_per_class, data.query_per_class
    if train_n or query_n:
        images = cap_per_class(images, train_n, query_n)
        caps = [f"{n} {what}" for n, what in [(train_n, "training"), (query_n, "query")] if n]
        say(f"subset: at most {' and '.join(caps)} images per class")
    if data.dataset != "cifar10" or train_n or query_n:
        say(images.summary(f"{data.dataset} dataset"))
    images.split_record = split_record(data, images)
    if data.split_file:
        record = images.split_record
        say(f"split: {record['protocol']} (seed {record['seed']}, hash {record['hash'][:16]})")
    return images
